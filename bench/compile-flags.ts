#!/usr/bin/env bun
// What Bun's --bytecode buys at boot: the init compiled with --minify alone
// and with --minify --bytecode, each in a payload-layout initrd (the default
// layout's page-in costs included), booted alternately in the verity
// scenario. Prints the executable and initrd sizes (zstd -19) and the
// `startup` phase (`Run /init` -> the init's first own line) and stage 1 per
// variant from kernel log timestamps.
//   bun bench/compile-flags.ts [--boots N]
import fs from "node:fs";
import path from "node:path";
import parseArgs from "yargs-parser";
import { compileInit } from "../lib/initrd/compile.ts";
import { buildInitrd } from "../lib/initrd/initrd.ts";
import { DEFAULT_MODULES } from "../lib/initrd/modules.ts";
import { FLATCAR_VERITY_HASH_OFFSET } from "../lib/config.ts";
import { median, stage1S } from "../lib/bootlog.ts";
import { REPO } from "../qemu-tests/harness/vm.ts";
import { boot, buildDisk } from "./run.ts";

const OUT = path.join(REPO, ".cache/bench/compile-flags");
const MiB = (n: number) => (n / 1048576).toFixed(1);

async function zstd19(file: string): Promise<number> {
  const proc = Bun.spawn(["zstd", "-19", "-T0", "-q", "-c", file], { stdout: "pipe" });
  const n = (await new Response(proc.stdout).arrayBuffer()).byteLength;
  await proc.exited;
  return n;
}

const args = parseArgs(process.argv.slice(2), { default: { boots: 3 } });
const boots = Number(args.boots);
fs.mkdirSync(OUT, { recursive: true });
const variants = [
  { name: "minify", bytecode: false },
  { name: "minify+bytecode", bytecode: true },
];
const built: Record<string, { exe: number; exeZstd: number; initrd: string; initrdZstd: number }> = {};
for (const v of variants) {
  const exe = await compileInit(path.join(OUT, `init-${v.name}`), "bun-linux-x64", { bytecode: v.bytecode });
  const initrd = path.join(OUT, `initrd-${v.name}.img`);
  await buildInitrd({
    initBinary: exe, out: initrd, compress: "zstd", compressLevel: 19, modulesRoot: "/lib/modules", firmwareRoot: "/lib/firmware",
    modules: DEFAULT_MODULES, sysroot: "/", busybox: "/bin/busybox", verityHashOffset: FLATCAR_VERITY_HASH_OFFSET, layout: "payload", log: () => {},
  });
  built[v.name] = { exe: fs.statSync(exe).size, exeZstd: await zstd19(exe), initrd, initrdZstd: fs.statSync(initrd).size };
}
const disk = buildDisk(undefined, "compile-flags");
const startup: Record<string, number[]> = {}, stage1: Record<string, number[]> = {};
for (let i = 1; i <= boots; i++) {
  for (const v of variants) {
    const r = await boot(`flags-${v.name}-${i}`, built[v.name]!.initrd, disk);
    if (!r.ok || !r.times) throw new Error(`boot ${v.name} ${i} failed: see ${r.log}`);
    (startup[v.name] ??= []).push(r.times.firstLineS - r.times.runInitS);
    (stage1[v.name] ??= []).push(stage1S(r.times));
    console.error(`compile-flags: ${v.name} ${i}/${boots}: startup ${(r.times.firstLineS - r.times.runInitS).toFixed(3)} s`);
  }
}
console.log(`| compile flags | executable | executable, zstd -19 | initrd (payload), file | startup (median of ${boots}) | stage 1 (median) |`);
console.log("|---|---|---|---|---|---|");
for (const v of variants) {
  const b = built[v.name]!;
  console.log(`| ${v.name} | ${MiB(b.exe)} MiB | ${MiB(b.exeZstd)} MiB | ${MiB(b.initrdZstd)} MiB | ${median(startup[v.name]!).toFixed(3)} s (${startup[v.name]!.map((x) => x.toFixed(2)).join(", ")}) | ${median(stage1[v.name]!).toFixed(3)} s |`);
}
