#!/usr/bin/env bun
// The benchmark: bunboot against a busybox reference init (bench/reference-init.sh)
// built by the same builder with the same modules and tools. One command
// (`npm run bench`) builds both initrds, measures sizes, boots the verity
// scenario alternately (ours, reference, ours, ...) under QEMU, bisects the
// smallest RAM that boots, prints the table and appends it to BENCHMARKS.md,
// then checks the budgets (bench/budgets.ts). Figures come from kernel log
// timestamps in the guest, so host load slows both inits alike, but it is
// recorded (loadavg) because TCG timings are noisy.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import parseArgs from "yargs-parser";
import { compileInit } from "../lib/initrd/compile.ts";
import { decodeNewc, encodeNewc, type CpioEntry } from "../lib/initrd/cpio.ts";
import { buildInitrd, compressorArgv, type Compression } from "../lib/initrd/initrd.ts";
import { DEFAULT_MODULES } from "../lib/initrd/modules.ts";
import { FLATCAR_VERITY_HASH_OFFSET } from "../lib/config.ts";
import { buildStage2, CACHE as IMAGES, FLATCAR_USR_BYTES, gptDisk, squashfs, USR_A_UUID, USR_TYPE, verityImage } from "../qemu-tests/harness/images.ts";
import { kernelImage, REPO, Vm } from "../qemu-tests/harness/vm.ts";
import { checkBudgets, type Results } from "./budgets.ts";
import { median, parseBoot, phases, stage1S, type BootTimes } from "../lib/bootlog.ts";
import { renderTimeline } from "../lib/timeline-svg.ts";

const HELP = `usage: npm run bench [-- options]
  --boots N        timed boots of each init, interleaved (default 5)
  --compress C     compression of the booted initrds: zstd|xz|gzip (default zstd)
  --quick          skip xz/gzip sizes, the unpack comparison and the RAM bisection (a smoke run)
  --no-append      print only, do not append to BENCHMARKS.md
`;

const OUT = path.join(REPO, ".cache/bench");
const LEVEL: Record<Exclude<Compression, "none">, number> = { zstd: 19, xz: 6, gzip: 9 };
const BOOT_TIMEOUT_MS = 240_000;

function say(line: string): void {
  console.error(`bench: ${line}`);
}

function sh(argv: string[]): string {
  const r = Bun.spawnSync(argv, { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`${argv.join(" ")} exited ${r.exitCode}: ${r.stderr.toString()}`);
  return r.stdout.toString();
}

async function compress(input: string, kind: Exclude<Compression, "none">, level = LEVEL[kind]): Promise<{ file: string; bytes: number; seconds: number }> {
  const out = `${input}.${kind}${level === LEVEL[kind] ? "" : level}`;
  const t0 = performance.now();
  const proc = Bun.spawn(compressorArgv(kind, level)!, { stdin: Bun.file(input), stdout: Bun.file(out), stderr: "pipe" });
  if ((await proc.exited) !== 0) throw new Error(`${kind} of ${input} failed`);
  return { file: out, bytes: fs.statSync(out).size, seconds: (performance.now() - t0) / 1000 };
}

async function compressBytes(data: Uint8Array[], kind: Exclude<Compression, "none">, level: number): Promise<number> {
  const proc = Bun.spawn(compressorArgv(kind, level)!, { stdin: "pipe", stdout: "pipe", stderr: "ignore" });
  const size = new Response(proc.stdout).arrayBuffer().then((b) => b.byteLength);
  for (const p of data) {
    proc.stdin.write(p);
    await proc.stdin.flush();
  }
  await proc.stdin.end();
  await proc.exited;
  return size;
}

// --- the disk: the verity scenario's Flatcar layout, built here so the
// benchmark never rewrites the images the test suite is using.
interface Disk {
  path: string;
  rootHash: string;
  append: string;
}
export function buildDisk(stage2?: string, name = "flatcar"): Disk {
  fs.mkdirSync(OUT, { recursive: true });
  const bootengine = stage2 ?? (fs.existsSync(path.join(IMAGES, "bootengine.img")) ? path.join(IMAGES, "bootengine.img") : buildStage2());
  const usr = path.join(OUT, `usr-${name}`);
  fs.rmSync(usr, { recursive: true, force: true });
  fs.mkdirSync(path.join(usr, "lib/flatcar"), { recursive: true });
  fs.mkdirSync(path.join(usr, "share/bunboot-test"), { recursive: true });
  fs.copyFileSync(bootengine, path.join(usr, "lib/flatcar/bootengine.img"));
  fs.writeFileSync(path.join(usr, "share/bunboot-test/slot"), "USR-A\n");
  const v = verityImage(squashfs(usr, path.join(OUT, `usr-${name}.squashfs`)), path.join(OUT, `usr-${name}.verity`));
  const disk = gptDisk(path.join(OUT, `${name}.disk`), [
    { label: "EFI-SYSTEM", type: "c12a7328-f81f-11d2-ba4b-00a0c93ec93b", sizeBytes: 1 << 20 },
    { label: "BIOS-BOOT", type: "21686148-6449-6e6f-744e-656564454649", sizeBytes: 1 << 20 },
    { label: "USR-A", type: USR_TYPE, uuid: USR_A_UUID, sizeBytes: FLATCAR_USR_BYTES, image: v.path },
    { label: "USR-B", type: USR_TYPE, uuid: "e03dd35c-7c2d-4a47-b3fe-27f15780a57c", sizeBytes: FLATCAR_USR_BYTES },
  ]);
  // The command line of qemu-tests/boot.test.ts scenario 1 (Flatcar's default).
  const append = `mount.usr=/dev/mapper/usr verity.usr=PARTUUID=${USR_A_UUID} rootflags=rw mount.usrflags=ro consoleblank=0 root=LABEL=ROOT verity.usrhash=${v.rootHash}`;
  return { path: disk, rootHash: v.rootHash, append };
}

interface BootRun {
  ok: boolean;
  times: BootTimes | null;
  log: string;
  wallS: number;
}

export async function boot(name: string, initrd: string, disk: Disk, memoryMiB = 1024, timeoutMs = BOOT_TIMEOUT_MS): Promise<BootRun> {
  const t0 = performance.now();
  const vm = new Vm({ name: `bench-${name}`, initrd, disks: [disk.path], append: disk.append, memoryMiB });
  let ok = false;
  try {
    await vm.expect("STAGE2: done", timeoutMs);
    ok = true;
    await vm.waitExit(30_000).catch(() => {});
  } catch {
    ok = false;
  } finally {
    vm.kill();
  }
  return { ok, times: ok ? parseBoot(vm.console) : null, log: vm.logFile, wallS: (performance.now() - t0) / 1000 };
}

/** Smallest -m (MiB, step 16) that boots, between lo (fails or untested) and hi (boots). */
async function bisectMemory(name: string, initrd: string, disk: Disk, lo: number, hi: number): Promise<{ minMiB: number; tries: Array<[number, boolean]> }> {
  const tries: Array<[number, boolean]> = [];
  const hiRun = await boot(`${name}-mem${hi}`, initrd, disk, hi);
  tries.push([hi, hiRun.ok]);
  if (!hiRun.ok) return { minMiB: NaN, tries };
  while (hi - lo > 16) {
    const mid = Math.round((lo + hi) / 2 / 16) * 16;
    // A boot short of RAM may hang (OOM kills) instead of panicking: a
    // normal boot takes ~20 s of wall time, so 90 s means "does not boot".
    const r = await boot(`${name}-mem${mid}`, initrd, disk, mid, 90_000);
    tries.push([mid, r.ok]);
    say(`  ${name}: -m ${mid} ${r.ok ? "boots" : "fails"}`);
    if (r.ok) hi = mid;
    else lo = mid;
  }
  return { minMiB: hi, tries };
}

function component(p: string): string {
  const q = p.replace(/^\//, "");
  if (q === "bin/bunboot-init") return "bun init";
  if (q.startsWith("lib/modules/")) return "modules";
  if (q.startsWith("lib/firmware/")) return "firmware";
  if (["bin/busybox", "bin/kmod", "sbin/veritysetup", "sbin/dmsetup"].includes(q)) return "tools";
  if (/^(lib|lib64|usr\/lib)\/.*\.so/.test(q) || q.startsWith("lib64/")) return "libraries";
  return "skeleton";
}

/** Per component: uncompressed bytes, and bytes when that component alone is compressed (zstd -3, fast). */
async function breakdown(cpio: string): Promise<Array<{ name: string; bytes: number; zstd3: number }>> {
  const { entries } = decodeNewc(new Uint8Array(fs.readFileSync(cpio)));
  const groups = new Map<string, CpioEntry[]>();
  for (const e of entries) {
    const c = component(e.path);
    groups.set(c, [...(groups.get(c) ?? []), e]);
  }
  const out = [];
  for (const [name, es] of groups) {
    const bytes = es.reduce((n, e) => n + (e.kind === "file" ? e.data.length : 0), 0);
    out.push({ name, bytes, zstd3: await compressBytes(encodeNewc(es), "zstd", 3) });
  }
  return out.sort((a, b) => b.bytes - a.bytes);
}

/** The biggest module directories (uncompressed), to show what the module set costs. */
function moduleDirs(cpio: string, top = 8): Array<[string, number]> {
  const { entries } = decodeNewc(new Uint8Array(fs.readFileSync(cpio)));
  const dirs = new Map<string, number>();
  for (const e of entries) {
    const m = e.path.replace(/^\//, "").match(/^lib\/modules\/[^/]+\/kernel\/((?:[^/]+\/){1,3})/);
    if (!m || e.kind !== "file") continue;
    dirs.set(m[1]!, (dirs.get(m[1]!) ?? 0) + e.data.length);
  }
  return [...dirs].sort((a, b) => b[1] - a[1]).slice(0, top);
}

const MiB = (n: number) => (n / 1048576).toFixed(1);
const s3 = (n: number) => n.toFixed(3);
function spread(xs: number[]): string {
  return `${s3(Math.min(...xs))}–${s3(Math.max(...xs))}`;
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2), { boolean: ["quick", "help", "append"], string: ["compress"], default: { append: true, boots: 5 } });
  if (args.help) {
    console.log(HELP);
    return 0;
  }
  const boots = Number(args.boots);
  const bootKind = (args.compress ?? "zstd") as Exclude<Compression, "none">;
  if (!(bootKind in LEVEL) || !Number.isInteger(boots) || boots < 1) {
    console.error(HELP);
    return 2;
  }
  const started = new Date();
  const tStart = performance.now();
  const loadBefore = fs.readFileSync("/proc/loadavg", "utf8").trim();
  fs.mkdirSync(OUT, { recursive: true });

  // --- builds: ours (freshly compiled), the reference, a bare Bun hello-world.
  say("compiling the init and a Bun hello-world with the same flags");
  const initBin = await compileInit(path.join(OUT, "bunboot-init"));
  const helloSrc = path.join(OUT, "hello.ts");
  fs.writeFileSync(helloSrc, 'console.log("hello");\n');
  sh([process.execPath, "build", "--compile", "--no-compile-autoload-dotenv", "--no-compile-autoload-bunfig", "--minify", "--bytecode", `--outfile=${path.join(OUT, "hello")}`, helloSrc]);
  const common = {
    compress: "none" as const,
    modulesRoot: "/lib/modules",
    firmwareRoot: "/lib/firmware",
    modules: DEFAULT_MODULES,
    sysroot: "/",
    busybox: "/bin/busybox",
    verityHashOffset: FLATCAR_VERITY_HASH_OFFSET,
    log: () => {},
  };
  say("assembling both initrds (uncompressed cpio first, then each compression)");
  const ours = await buildInitrd({ ...common, initBinary: initBin, out: path.join(OUT, "ours.cpio") });
  const ref = await buildInitrd({ ...common, referenceInit: path.join(import.meta.dir, "reference-init.sh"), out: path.join(OUT, "ref.cpio") });

  const kinds: Array<Exclude<Compression, "none">> = args.quick ? [bootKind] : ["zstd", "xz", "gzip"];
  const sizes: Record<string, Record<string, { bytes: number; seconds: number }>> = { ours: {}, ref: {}, hello: {} };
  const files: Record<string, Record<string, string>> = { ours: {}, ref: {}, hello: {} };
  for (const kind of kinds) {
    for (const [who, input] of [["ours", ours.out], ["ref", ref.out], ["hello", path.join(OUT, "hello")]] as const) {
      say(`${kind} -${LEVEL[kind]} of ${who}`);
      const r = await compress(input, kind);
      sizes[who]![kind] = r;
      files[who]![kind] = r.file;
    }
  }
  const parts = await breakdown(ours.out);
  const modDirs = moduleDirs(ours.out);

  say("building the verity disk");
  const disk = buildDisk();

  // --- timed boots, interleaved so load changes hit both alike.
  const runs: Record<"ours" | "ref", BootRun[]> = { ours: [], ref: [] };
  for (let i = 1; i <= boots; i++) {
    for (const who of ["ours", "ref"] as const) {
      const r = await boot(`${who}-${i}`, files[who]![bootKind]!, disk);
      say(`boot ${who} ${i}/${boots}: ${r.ok && r.times ? `stage 1 ${s3(stage1S(r.times))} s` : `FAILED (see ${r.log})`} (${r.wallS.toFixed(0)} s wall)`);
      runs[who].push(r);
    }
  }
  const good = (who: "ours" | "ref") => runs[who].filter((r) => r.times).map((r) => r.times!);
  if (good("ours").length === 0 || good("ref").length === 0) {
    say("no successful boot of one of the inits; nothing to report");
    return 1;
  }

  // --- unpack cost of the other compressions (one boot each, ours only).
  const unpackOther: Record<string, number | null> = {};
  if (!args.quick) {
    for (const kind of kinds.filter((k) => k !== bootKind)) {
      const r = await boot(`ours-${kind}`, files.ours![kind]!, disk);
      unpackOther[kind] = r.times?.unpackS ?? null;
      say(`boot ours (${kind}): unpack ${r.times?.unpackS?.toFixed(3) ?? "?"} s`);
    }
  }

  // --- memory: the smallest -m that boots.
  let memOurs: { minMiB: number; tries: Array<[number, boolean]> } | null = null;
  let memRef: { minMiB: number; tries: Array<[number, boolean]> } | null = null;
  if (!args.quick) {
    say("bisecting the smallest RAM that boots");
    memOurs = await bisectMemory("ours", files.ours![bootKind]!, disk, 128, 512);
    memRef = await bisectMemory("ref", files.ref![bootKind]!, disk, 32, 256);
  }
  const loadAfter = fs.readFileSync("/proc/loadavg", "utf8").trim();

  // --- figures
  const o = good("ours"), f = good("ref");
  const st1 = { ours: o.map(stage1S), ref: f.map(stage1S) };
  const k2s = { ours: o.map((b) => b.switchRootS), ref: f.map((b) => b.switchRootS) };
  const unp = { ours: o.map((b) => b.unpackS ?? NaN), ref: f.map((b) => b.unpackS ?? NaN) };
  // Boots run in pairs (ours, then the reference right after), so each
  // pair saw about the same host load; the median of the pairs' ratios is
  // what the budget uses. The ratio of the medians is shown too: with other
  // VMs starting and stopping on the machine it mixes loaded and quiet boots.
  const pairRatios: number[] = [];
  for (let i = 0; i < boots; i++) {
    const a = runs.ours[i]?.times, b = runs.ref[i]?.times;
    if (a && b) pairRatios.push(stage1S(a) / stage1S(b));
  }
  const ratio = median(pairRatios);
  const ratioOfMedians = median(st1.ours) / median(st1.ref);
  const stepNames = [...new Set([...o, ...f].flatMap((b) => phases(b).map((p) => p.name)))];
  const stepMed = (bs: BootTimes[], name: string) => {
    const xs = bs.map((b) => phases(b).find((p) => p.name === name)).filter(Boolean).map((p) => (p!.endS - p!.startS) * 1000);
    return xs.length ? median(xs).toFixed(0) : "–";
  };
  const rss = (bs: BootTimes[]) => median(bs.map((b) => b.peakRssKiB ?? NaN));
  const bootSize = sizes.ours![bootKind]!.bytes;
  const helloSize = sizes.hello![bootKind]!.bytes;

  // The timeline of the median boot of each, for BENCHMARKS.md.
  const medianBoot = (bs: BootTimes[]) => [...bs].sort((a, b) => stage1S(a) - stage1S(b))[Math.floor((bs.length - 1) / 2)]!;
  // One file per run (date and time), so older entries in BENCHMARKS.md keep their picture.
  const svgName = `bench/timeline-${started.toISOString().slice(0, 16).replace(/:/g, "")}.svg`;
  fs.writeFileSync(path.join(REPO, svgName), renderTimeline([
    { label: "bunboot", boot: medianBoot(o) },
    { label: "busybox reference", boot: medianBoot(f) },
  ]));

  const L: string[] = [];
  const machine = `${os.cpus()[0]?.model ?? "?"} ×${os.cpus().length}, ${MiB(os.totalmem())} MiB, ${os.release()}; guest: QEMU TCG -cpu max -smp 2, ${path.basename(kernelImage())}`;
  L.push(`## ${started.toISOString().replace(/\.\d+Z$/, "Z")}`);
  L.push("");
  L.push(`- command: \`npm run bench${process.argv.length > 2 ? " -- " + process.argv.slice(2).join(" ") : ""}\` (took ${((performance.now() - tStart) / 60000).toFixed(1)} min)`);
  L.push(`- machine: ${machine}`);
  L.push(`- load (/proc/loadavg) before: \`${loadBefore}\`, after: \`${loadAfter}\``);
  L.push(`- ${boots} boots each of the verity scenario, interleaved ours/reference, initrds ${bootKind} -${LEVEL[bootKind]}, 1024 MiB; logs in .cache/vm-logs/bench-*.log`);
  L.push("");
  L.push("### Time (kernel log timestamps, s: median, min–max)");
  L.push("");
  L.push("| | bunboot | busybox reference | ratio |");
  L.push("|---|---|---|---|");
  L.push(`| stage 1: \`Run /init\` → last line before switch root | ${s3(median(st1.ours))} (${spread(st1.ours)}) | ${s3(median(st1.ref))} (${spread(st1.ref)}) | ${ratioOfMedians.toFixed(2)} |`);
  L.push(`| stage 1, ratio per interleaved pair (median, min–max) | ${st1.ours.map(s3).join(", ")} | ${st1.ref.map(s3).join(", ")} | **${ratio.toFixed(2)}** (${Math.min(...pairRatios).toFixed(2)}–${Math.max(...pairRatios).toFixed(2)}) |`);
  L.push(`| stage 1 without \`startup\` (the inits' own steps) | ${s3(median(o.map((b) => b.switchRootS - b.firstLineS)))} | ${s3(median(f.map((b) => b.switchRootS - b.firstLineS)))} | ${(median(o.map((b) => b.switchRootS - b.firstLineS)) / median(f.map((b) => b.switchRootS - b.firstLineS))).toFixed(2)} |`);
  L.push(`| kernel start → switch root (stage 2 starts) | ${s3(median(k2s.ours))} (${spread(k2s.ours)}) | ${s3(median(k2s.ref))} (${spread(k2s.ref)}) | ${(median(k2s.ours) / median(k2s.ref)).toFixed(2)} |`);
  L.push(`| kernel unpacking the initrd | ${s3(median(unp.ours))} (${spread(unp.ours)}) | ${s3(median(unp.ref))} (${spread(unp.ref)}) | ${(median(unp.ours) / median(unp.ref)).toFixed(2)} |`);
  L.push("");
  L.push("Per step (ms, median; `startup` is `Run /init` → the init's first own line: shim + Bun start for ours, the shell for the reference; the reference's `switch-root` ends before busybox `switch_root` empties its smaller initramfs, ours after emptying 170+ MiB):");
  L.push("");
  L.push(`| step | ${stepNames.join(" | ")} |`);
  L.push(`|---|${stepNames.map(() => "---").join("|")}|`);
  L.push(`| bunboot | ${stepNames.map((n) => stepMed(o, n)).join(" | ")} |`);
  L.push(`| reference | ${stepNames.map((n) => stepMed(f, n)).join(" | ")} |`);
  L.push("");
  L.push(`Timeline of the median boots: [${path.basename(svgName)}](${svgName})`);
  L.push("");
  L.push("### Size (bytes of the initrd file)");
  L.push("");
  L.push(`| | ${kinds.map((k) => `${k} -${LEVEL[k]}`).join(" | ")} | uncompressed |`);
  L.push(`|---|${kinds.map(() => "---").join("|")}|---|`);
  L.push(`| bunboot initrd | ${kinds.map((k) => `${MiB(sizes.ours![k]!.bytes)} MiB`).join(" | ")} | ${MiB(ours.uncompressed)} MiB |`);
  L.push(`| busybox reference initrd | ${kinds.map((k) => `${MiB(sizes.ref![k]!.bytes)} MiB`).join(" | ")} | ${MiB(ref.uncompressed)} MiB |`);
  L.push(`| bare Bun hello-world executable | ${kinds.map((k) => `${MiB(sizes.hello![k]!.bytes)} MiB`).join(" | ")} | ${MiB(fs.statSync(path.join(OUT, "hello")).size)} MiB |`);
  L.push(`| **bunboot / hello-world** | ${kinds.map((k) => `**${(sizes.ours![k]!.bytes / sizes.hello![k]!.bytes).toFixed(2)}**`).join(" | ")} | ${(ours.uncompressed / fs.statSync(path.join(OUT, "hello")).size).toFixed(2)} |`);
  L.push(`| compression time of bunboot's initrd (host) | ${kinds.map((k) => `${sizes.ours![k]!.seconds.toFixed(0)} s`).join(" | ")} | |`);
  if (!args.quick) {
    L.push(`| kernel unpack time, bunboot (guest) | ${kinds.map((k) => (k === bootKind ? `${s3(median(unp.ours))} s` : `${unpackOther[k]?.toFixed(3) ?? "?"} s (1 boot)`)).join(" | ")} | |`);
  }
  L.push("");
  L.push("bunboot's initrd per component (uncompressed; and each component alone at zstd -3, for proportions):");
  L.push("");
  L.push("| component | uncompressed | alone, zstd -3 |");
  L.push("|---|---|---|");
  for (const p of parts) L.push(`| ${p.name} | ${MiB(p.bytes)} MiB | ${MiB(p.zstd3)} MiB |`);
  L.push("");
  L.push(`Biggest module directories (uncompressed): ${modDirs.map(([d, n]) => `\`${d}\` ${MiB(n)} MiB`).join(", ")}.`);
  L.push("");
  L.push("### Memory");
  L.push("");
  L.push("| | bunboot | busybox reference |");
  L.push("|---|---|---|");
  L.push(`| peak RSS of PID 1 (VmHWM before the switch root) | ${MiB(rss(o) * 1024)} MiB | ${MiB(rss(f) * 1024)} MiB |`);
  if (memOurs && memRef) {
    L.push(`| smallest \`-m\` that boots (16 MiB steps) | ${memOurs.minMiB} MiB | ${memRef.minMiB} MiB |`);
    L.push(`| bisection (MiB: boots?) | ${memOurs.tries.map(([m, ok]) => `${m}:${ok ? "y" : "n"}`).join(" ")} | ${memRef.tries.map(([m, ok]) => `${m}:${ok ? "y" : "n"}`).join(" ")} |`);
  }
  L.push("");

  const results: Results = {
    stage1Ratio: ratio,
    sizeRatio: bootSize / helloSize,
    bootCompression: bootKind,
    boots512: memOurs ? memOurs.tries.some(([m, ok]) => m <= 512 && ok) : null,
    minMemoryMiB: memOurs?.minMiB ?? null,
  };
  const budget = checkBudgets(results);
  L.push("### Budgets");
  L.push("");
  for (const b of budget.lines) L.push(`- ${b}`);
  L.push("");

  const text = L.join("\n");
  console.log(text);
  fs.writeFileSync(path.join(OUT, "results.json"), JSON.stringify({ ...results, date: started.toISOString() }, null, 2) + "\n");
  if (args.append) {
    const file = path.join(REPO, "BENCHMARKS.md");
    if (!fs.existsSync(file)) fs.writeFileSync(file, "# Benchmarks\n\nAppended by `npm run bench` (bench/run.ts); newest last. See bench/README.md for what is measured.\n\n");
    fs.appendFileSync(file, text + "\n");
    say(`appended to ${file}`);
  }
  return budget.ok ? 0 : 3;
}

if (import.meta.main) process.exit(await main());
