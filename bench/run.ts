#!/usr/bin/env bun
// The benchmark: bunboot against a busybox reference init (bench/reference-init.sh)
// built by the same builder with the same modules and tools. One command
// (`npm run bench`) builds our initrd in both layouts and the reference, measures sizes, boots
// the verity scenario alternately (flat, payload, reference, flat, ...) under QEMU, bisects the
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
import { buildInitrd, compressorArgv, DEFAULT_LAYOUT, type Compression } from "../lib/initrd/initrd.ts";
import { DEFAULT_MODULES, DEFAULT_PROFILE } from "../lib/initrd/modules.ts";
import { FLATCAR_VERITY_HASH_OFFSET } from "../lib/config.ts";
import { buildStage2, CACHE as IMAGES, FLATCAR_USR_BYTES, gptDisk, squashfs, USR_A_UUID, USR_TYPE, verityImage } from "../qemu-tests/harness/images.ts";
import { kernelImage, REPO, stage2Facts, Vm } from "../qemu-tests/harness/vm.ts";
import { checkBudgets, SLOT, type Results } from "./budgets.ts";
import { median, parseBoot, phases, stage1S, type BootTimes } from "../lib/bootlog.ts";
import { renderTimeline } from "../lib/timeline-svg.ts";

const HELP = `usage: npm run bench [-- options]
  --boots N        timed boots of each initrd (flat, payload, reference), interleaved (default 5)
  --compress C     compression of the booted initrds: zstd|xz|gzip (default zstd)
  --quick          skip xz/gzip sizes, the unpack comparison and the RAM bisection (a smoke run)
  --no-bisect      everything but the RAM bisection
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

/** The three initrds booted: both layouts of ours, and the busybox reference. */
type Who = "flat" | "payload" | "ref";
const WHO: readonly Who[] = ["flat", "payload", "ref"];
const LABEL: Record<Who, string> = { flat: "bunboot, flat", payload: "bunboot, payload", ref: "busybox reference" };
/** Two slots of a 12 MiB kernel (Debian's is 7.9 MiB) and the initrd, 4 MiB spare each, in Flatcar's 128 MiB ESP: BUDGETS.initrdMiB. */
const { espMiB: ESP_MIB, kernelMiB: KERNEL_MIB, spareMiB: SPARE_MIB } = SLOT;

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2), { boolean: ["quick", "help", "append", "bisect"], string: ["compress"], default: { append: true, bisect: true, boots: 5 } });
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
  // A run that ends early must not leave the last run's figures for bench/budgets.ts to report.
  fs.rmSync(path.join(OUT, "results.json"), { force: true });

  // --- builds: ours (freshly compiled) in both layouts, the reference, a bare Bun hello-world.
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
  say("assembling the initrds (uncompressed cpio first, then each compression)");
  const ours = await buildInitrd({ ...common, layout: "flat", initBinary: initBin, out: path.join(OUT, "ours.cpio") });
  const ref = await buildInitrd({ ...common, referenceInit: path.join(import.meta.dir, "reference-init.sh"), out: path.join(OUT, "ref.cpio") });

  const kinds: Array<Exclude<Compression, "none">> = args.quick ? [bootKind] : ["zstd", "xz", "gzip"];
  const sizes: Record<string, Record<string, { bytes: number; seconds: number }>> = { flat: {}, payload: {}, ref: {}, hello: {} };
  const files: Record<string, Record<string, string>> = { flat: {}, payload: {}, ref: {}, hello: {} };
  for (const kind of kinds) {
    for (const [who, input] of [["flat", ours.out], ["ref", ref.out], ["hello", path.join(OUT, "hello")]] as const) {
      say(`${kind} -${LEVEL[kind]} of ${who}`);
      const r = await compress(input, kind);
      sizes[who]![kind] = r;
      files[who]![kind] = r.file;
    }
  }
  // The payload layout compresses only its small outer archive; the squashfs
  // (zstd blocks) is the same whatever that compression is.
  say(`payload layout, outer archive ${bootKind} -${LEVEL[bootKind]}`);
  const tPayload = performance.now();
  const payloadFile = path.join(OUT, `payload.${bootKind}`);
  const payload = await buildInitrd({ ...common, layout: "payload", initBinary: initBin, out: payloadFile, compress: bootKind, compressLevel: LEVEL[bootKind] });
  sizes.payload![bootKind] = { bytes: payload.compressed, seconds: (performance.now() - tPayload) / 1000 };
  files.payload![bootKind] = payloadFile;
  const payloadImage = payload.breakdown.get("payload image") ?? 0;
  const parts = await breakdown(ours.out);
  const modDirs = moduleDirs(ours.out);

  say("building the verity disk");
  const disk = buildDisk();

  // --- timed boots, interleaved (flat, payload, reference, flat, ...) so load changes hit all alike.
  const runs: Record<Who, BootRun[]> = { flat: [], payload: [], ref: [] };
  const memAvail: Record<Who, number[]> = { flat: [], payload: [], ref: [] };
  for (let i = 1; i <= boots; i++) {
    for (const who of WHO) {
      const r = await boot(`${who}-${i}`, files[who]![bootKind]!, disk);
      say(`boot ${who} ${i}/${boots}: ${r.ok && r.times ? `stage 1 ${s3(stage1S(r.times))} s, kernel start → stage 2 ${s3(r.times.switchRootS)} s` : `FAILED (see ${r.log})`} (${r.wallS.toFixed(0)} s wall)`);
      runs[who].push(r);
      const kib = Number(stage2Facts(fs.readFileSync(r.log, "utf8")).mem_available_kib);
      if (r.ok && Number.isFinite(kib)) memAvail[who].push(kib);
    }
  }
  const good = (who: Who) => runs[who].filter((r) => r.times).map((r) => r.times!);
  if (WHO.some((w) => good(w).length === 0)) {
    say(`no successful boot of ${WHO.filter((w) => good(w).length === 0).join(", ")}; nothing to report`);
    return 1;
  }

  // --- unpack cost of the other compressions (one boot each, flat only).
  const unpackOther: Record<string, number | null> = {};
  if (!args.quick) {
    for (const kind of kinds.filter((k) => k !== bootKind)) {
      const r = await boot(`flat-${kind}`, files.flat![kind]!, disk);
      unpackOther[kind] = r.times?.unpackS ?? null;
      say(`boot flat (${kind}): unpack ${r.times?.unpackS?.toFixed(3) ?? "?"} s`);
    }
  }

  // --- memory: the smallest -m that boots.
  const mem: Partial<Record<Who, { minMiB: number; tries: Array<[number, boolean]> }>> = {};
  if (!args.quick && args.bisect) {
    say("bisecting the smallest RAM that boots");
    mem.payload = await bisectMemory("payload", files.payload![bootKind]!, disk, 64, 512);
    mem.flat = await bisectMemory("flat", files.flat![bootKind]!, disk, 128, 512);
    mem.ref = await bisectMemory("ref", files.ref![bootKind]!, disk, 32, 256);
  }
  const loadAfter = fs.readFileSync("/proc/loadavg", "utf8").trim();

  // --- figures
  const t = Object.fromEntries(WHO.map((w) => [w, good(w)])) as Record<Who, BootTimes[]>;
  const col = (f: (b: BootTimes) => number) => Object.fromEntries(WHO.map((w) => [w, t[w].map(f)])) as Record<Who, number[]>;
  const st1 = col(stage1S);
  const k2s = col((b) => b.switchRootS);
  const unp = col((b) => b.unpackS ?? NaN);
  const own = col((b) => b.switchRootS - b.firstLineS);
  const startup = col((b) => b.firstLineS - b.runInitS);
  // Boots run in triples (flat, payload, reference back to back), so each
  // triple saw about the same host load; the median of the per-triple ratios
  // is what the budgets use. The ratio of the medians is shown too: with
  // other VMs starting and stopping it mixes loaded and quiet boots.
  const pairRatios = (who: Who, f: (b: BootTimes) => number) => {
    const out: number[] = [];
    for (let i = 0; i < boots; i++) {
      const a = runs[who][i]?.times, b = runs.ref[i]?.times;
      if (a && b) out.push(f(a) / f(b));
    }
    return out;
  };
  const ratioLine = (who: Who, f: (b: BootTimes) => number) => {
    const xs = pairRatios(who, f);
    return { median: median(xs), text: `**${median(xs).toFixed(2)}** (${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)})` };
  };
  const stepNames = [...new Set(WHO.flatMap((w) => t[w].flatMap((b) => phases(b).map((p) => p.name))))];
  const stepMed = (bs: BootTimes[], name: string) => {
    const xs = bs.map((b) => phases(b).find((p) => p.name === name)).filter(Boolean).map((p) => (p!.endS - p!.startS) * 1000);
    return xs.length ? median(xs).toFixed(0) : "–";
  };
  const rss = (bs: BootTimes[]) => median(bs.map((b) => b.peakRssKiB ?? NaN));
  const helloSize = sizes.hello![bootKind]!.bytes;
  const fileSize = (who: "flat" | "payload") => sizes[who]![bootKind]!.bytes;

  // The timeline of the median boot of each, for BENCHMARKS.md.
  const medianBoot = (bs: BootTimes[]) => [...bs].sort((a, b) => a.switchRootS - b.switchRootS)[Math.floor((bs.length - 1) / 2)]!;
  // One file per run (date and time), so older entries in BENCHMARKS.md keep their picture.
  const svgName = `bench/timeline-${started.toISOString().slice(0, 16).replace(/:/g, "")}.svg`;
  fs.writeFileSync(path.join(REPO, svgName), renderTimeline(WHO.map((w) => ({ label: LABEL[w], boot: medianBoot(t[w]) }))));

  const L: string[] = [];
  const machine = `${os.cpus()[0]?.model ?? "?"} ×${os.cpus().length}, ${MiB(os.totalmem())} MiB, ${os.release()}; guest: QEMU TCG -cpu max -smp 2, ${path.basename(kernelImage())}`;
  const row = (name: string, f: (w: Who) => string) => L.push(`| ${name} | ${WHO.map(f).join(" | ")} |`);
  const medSpread = (xs: Record<Who, number[]>) => (w: Who) => `${s3(median(xs[w]))} (${spread(xs[w])})`;
  L.push(`## ${started.toISOString().replace(/\.\d+Z$/, "Z")}`);
  L.push("");
  L.push(`- command: \`npm run bench${process.argv.length > 2 ? " -- " + process.argv.slice(2).join(" ") : ""}\` (took ${((performance.now() - tStart) / 60000).toFixed(1)} min)`);
  L.push(`- machine: ${machine}`);
  L.push(`- load (/proc/loadavg) before: \`${loadBefore}\`, after: \`${loadAfter}\``);
  L.push(`- ${boots} boots each of the verity scenario, interleaved flat/payload/reference, initrds ${bootKind} -${LEVEL[bootKind]} (payload: outer archive), module profile ${DEFAULT_PROFILE}, 1024 MiB; default layout: **${DEFAULT_LAYOUT}**; logs in .cache/vm-logs/bench-*.log`);
  L.push("");
  L.push("### Time (kernel log timestamps, s: median, min–max)");
  L.push("");
  L.push(`| | ${WHO.map((w) => LABEL[w]).join(" | ")} |`);
  L.push(`|---|${WHO.map(() => "---").join("|")}|`);
  row("kernel start → switch root (stage 2 starts)", medSpread(k2s));
  row("of which the kernel unpacking the initrd", medSpread(unp));
  row("stage 1: `Run /init` → last line before switch root", medSpread(st1));
  row("`startup`: `Run /init` → the init's first own line", medSpread(startup));
  row("stage 1 without `startup` (the inits' own steps)", (w) => s3(median(own[w])));
  L.push("");
  L.push("Ratios to the reference, median of the per-triple ratios (min–max):");
  L.push("");
  L.push("| | flat | payload |");
  L.push("|---|---|---|");
  L.push(`| kernel start → stage 2 | ${ratioLine("flat", (b) => b.switchRootS).text} | ${ratioLine("payload", (b) => b.switchRootS).text} |`);
  L.push(`| stage 1 | ${ratioLine("flat", stage1S).text} | ${ratioLine("payload", stage1S).text} |`);
  L.push(`| kernel unpacking the initrd | ${ratioLine("flat", (b) => b.unpackS ?? NaN).text} | ${ratioLine("payload", (b) => b.unpackS ?? NaN).text} |`);
  L.push("");
  L.push("Per step (ms, median; `startup` is `Run /init` → the init's first own line: shim (+ mounting the payload) + Bun start for ours, the shell for the reference; the reference's `switch-root` ends before busybox `switch_root` empties its smaller initramfs):");
  L.push("");
  L.push(`| step | ${stepNames.join(" | ")} |`);
  L.push(`|---|${stepNames.map(() => "---").join("|")}|`);
  for (const w of WHO) L.push(`| ${LABEL[w]} | ${stepNames.map((n) => stepMed(t[w], n)).join(" | ")} |`);
  L.push("");
  L.push(`Timeline of the median boots: [${path.basename(svgName)}](${svgName})`);
  L.push("");
  L.push("### Size (bytes of the initrd file)");
  L.push("");
  L.push(`| | ${kinds.map((k) => `${k} -${LEVEL[k]}`).join(" | ")} | uncompressed |`);
  L.push(`|---|${kinds.map(() => "---").join("|")}|---|`);
  L.push(`| bunboot initrd, flat | ${kinds.map((k) => `${MiB(sizes.flat![k]!.bytes)} MiB`).join(" | ")} | ${MiB(ours.uncompressed)} MiB |`);
  L.push(`| bunboot initrd, payload (outer archive compressed, ${MiB(payloadImage)} MiB squashfs stored) | ${kinds.map((k) => (sizes.payload![k] ? `${MiB(sizes.payload![k]!.bytes)} MiB` : "–")).join(" | ")} | ${MiB(payload.uncompressed)} MiB |`);
  L.push(`| busybox reference initrd | ${kinds.map((k) => `${MiB(sizes.ref![k]!.bytes)} MiB`).join(" | ")} | ${MiB(ref.uncompressed)} MiB |`);
  L.push(`| bare Bun hello-world executable | ${kinds.map((k) => `${MiB(sizes.hello![k]!.bytes)} MiB`).join(" | ")} | ${MiB(fs.statSync(path.join(OUT, "hello")).size)} MiB |`);
  L.push(`| **bunboot flat / hello-world** | ${kinds.map((k) => `**${(sizes.flat![k]!.bytes / sizes.hello![k]!.bytes).toFixed(2)}**`).join(" | ")} | ${(ours.uncompressed / fs.statSync(path.join(OUT, "hello")).size).toFixed(2)} |`);
  L.push(`| **bunboot payload / hello-world** | ${kinds.map((k) => (sizes.payload![k] ? `**${(sizes.payload![k]!.bytes / sizes.hello![k]!.bytes).toFixed(2)}**` : "–")).join(" | ")} | |`);
  L.push(`| build/compression time (host) | ${kinds.map((k) => `flat ${sizes.flat![k]!.seconds.toFixed(0)} s${sizes.payload![k] ? `, payload ${sizes.payload![k]!.seconds.toFixed(0)} s` : ""}`).join(" | ")} | |`);
  if (!args.quick) {
    L.push(`| kernel unpack time, flat (guest) | ${kinds.map((k) => (k === bootKind ? `${s3(median(unp.flat))} s` : `${unpackOther[k]?.toFixed(3) ?? "?"} s (1 boot)`)).join(" | ")} | |`);
  }
  L.push("");
  for (const who of ["flat", "payload"] as const) {
    const mib = fileSize(who) / 1048576;
    const need = 2 * (KERNEL_MIB + mib + SPARE_MIB);
    L.push(`Slot arithmetic, ${who}: 2 × (${KERNEL_MIB} MiB kernel + ${mib.toFixed(1)} MiB initrd + ${SPARE_MIB} MiB spare) = ${need.toFixed(1)} MiB of a ${ESP_MIB} MiB ESP: ${need <= ESP_MIB ? "fits" : `does NOT fit (${(need - ESP_MIB).toFixed(1)} MiB over)`}${bootKind === "zstd" ? "" : ` (at ${bootKind} -${LEVEL[bootKind]})`}.`);
    L.push("");
  }
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
  L.push(`| | ${WHO.map((w) => LABEL[w]).join(" | ")} |`);
  L.push(`|---|${WHO.map(() => "---").join("|")}|`);
  row("peak RSS of PID 1 (VmHWM before the switch root)", (w) => `${MiB(rss(t[w]) * 1024)} MiB`);
  row("MemAvailable in stage 2 (1024 MiB guest, median)", (w) => (memAvail[w].length ? `${MiB(median(memAvail[w]) * 1024)} MiB` : "–"));
  if (mem.flat && mem.payload && mem.ref) {
    row("smallest `-m` that boots (16 MiB steps)", (w) => `${mem[w]!.minMiB} MiB`);
    row("bisection (MiB: boots?)", (w) => mem[w]!.tries.map(([m, ok]) => `${m}:${ok ? "y" : "n"}`).join(" "));
  }
  L.push("");

  const d = DEFAULT_LAYOUT;
  const results: Results = {
    defaultLayout: d,
    bootCompression: bootKind,
    bootLevel: LEVEL[bootKind],
    boots,
    triples: Math.min(pairRatios("flat", stage1S).length, pairRatios("payload", stage1S).length),
    failedBoots: Object.fromEntries(WHO.map((w) => [w, runs[w].filter((r) => !r.times).length])),
    kernelToStage2Ratio: ratioLine(d, (b) => b.switchRootS).median,
    stage1Ratio: ratioLine(d, stage1S).median,
    memoryRatio: mem[d] && mem.ref ? mem[d]!.minMiB / mem.ref.minMiB : null,
    minMemoryMiB: mem[d]?.minMiB ?? null,
    refMinMemoryMiB: mem.ref?.minMiB ?? null,
    initrdMiB: bootKind === "zstd" ? fileSize(d) / 1048576 : null,
    helloRatio: fileSize(d) / helloSize,
    layouts: Object.fromEntries((["flat", "payload"] as const).map((w) => [w, {
      kernelToStage2Ratio: ratioLine(w, (b) => b.switchRootS).median,
      stage1Ratio: ratioLine(w, stage1S).median,
      memoryRatio: mem[w] && mem.ref ? mem[w]!.minMiB / mem.ref.minMiB : null,
      initrdMiB: bootKind === "zstd" ? fileSize(w) / 1048576 : null,
      helloRatio: fileSize(w) / helloSize,
    }])),
  };
  const budget = checkBudgets(results);
  L.push(`### Budgets (the default layout, ${d}; the other layout's figures for comparison)`);
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
  return budget.exitCode;
}

if (import.meta.main) process.exit(await main());
