// Fetch benchmark: download + verify + write of a /usr image from a loopback
// HTTP server with the init's engine (`bunboot fetch`), side by side in the
// same run, interleaved, with three references from the same server:
//   curl | openssl dgst -sha256   the goal's reference: a download and a
//                                 SHA-256 at OpenSSL's speed (SHA-NI where
//                                 the CPU has it), which our engine must
//                                 reach within FETCH_GOAL;
//   curl | sha256sum              the earlier reference, kept for comparison
//                                 (coreutils' SHA-256 is several times slower
//                                 than OpenSSL's, so it flattered us);
//   curl -o /dev/null             the ceiling: the download alone.
// And peak RSS for a small and a large image (it must not grow with the image).
// Then the same /usr image booted in QEMU over HTTP into RAM and over NBD
// block by block: time to stage 2 and RAM left (bench/diskless-boot.ts).
// Exit 3 when the goal is missed at any size (as bench/budgets.ts does).
// Usage: bun bench/fetch.ts [--sizes 128,512,1024] [--runs 3] [--boots 3] [--usr-mib 256] [--no-boot] [--append]
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import parseArgs from "yargs-parser";
import { benchDisklessBoot } from "./diskless-boot.ts";
import { writeIncompressible } from "../qemu-tests/harness/images.ts";

const REPO = path.resolve(import.meta.dir, "..");
const args = parseArgs(process.argv.slice(2), { string: ["sizes", "runs", "boots", "usr-mib"], boolean: ["append", "boot"], default: { boot: true } });
const sizes = String(args.sizes ?? "128,512,1024").split(",").map(Number);
const runs = Number(args.runs ?? 3);
// tmpfs, like the initramfs the init writes to.
const dir = fs.mkdtempSync(path.join(fs.existsSync("/dev/shm") ? "/dev/shm" : os.tmpdir(), "bunboot-bench-"));
const BUN = process.execPath;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function timed(argv: string[], env?: Record<string, string>): Promise<{ seconds: number; maxRssKiB: number }> {
  const t0 = performance.now();
  const proc = Bun.spawn(argv, { stdout: "ignore", stderr: "pipe", env: { ...process.env, ...env } });
  const [err, code] = await Promise.all([new Response(proc.stderr).text(), proc.exited]);
  const seconds = (performance.now() - t0) / 1000;
  if (code !== 0) throw new Error(`${argv.join(" ")} failed (${code}): ${err}`);
  const usage = proc.resourceUsage();
  return { seconds, maxRssKiB: Math.round(Number(usage?.maxRSS ?? 0) / 1024) };
}

/** Our fetch must reach this fraction of `curl | openssl dgst -sha256`'s throughput. */
const FETCH_GOAL = 0.9;

const CURL = "/usr/bin/curl";
const REFERENCES = {
  openssl: `${CURL} -s "$0" | /usr/bin/openssl dgst -sha256 > /dev/null`,
  sha256sum: `${CURL} -s "$0" | /usr/bin/sha256sum > /dev/null`,
  ceiling: `${CURL} -s -o /dev/null "$0"`,
} as const;
type Reference = keyof typeof REFERENCES;

interface Row {
  mib: number;
  oursMiBs: number;
  refMiBs: Record<Reference, number>;
  /** ours / curl | openssl */
  ratio: number;
  oursRssMiB: number;
}
const rows: Row[] = [];
for (const mib of sizes) {
  const image = path.join(dir, `image-${mib}`);
  // Random data: compressible data would flatter nothing here, but keep it honest.
  writeIncompressible(image, mib);
  const hashes = path.join(dir, `image-${mib}.hashes`);
  const h = Bun.spawnSync([BUN, path.join(REPO, "cli/bunboot.ts"), "stream-hash", image], { env: { ...process.env, BUN_BE_BUN: "1" } });
  fs.writeFileSync(hashes, h.stdout);
  const server = Bun.spawn([BUN, path.join(REPO, "bench/fetch-server.ts"), image], { stdout: "pipe", env: { ...process.env, BUN_BE_BUN: "1" } });
  const reader = server.stdout.getReader();
  const url = new TextDecoder().decode((await reader.read()).value).trim();
  const ours: number[] = [];
  const ref: Record<Reference, number[]> = { openssl: [], sha256sum: [], ceiling: [] };
  let rss = 0;
  const out = path.join(dir, "out");
  for (let r = 0; r < runs; r++) {
    // Interleaved, so both see the same machine load.
    const o = await timed([BUN, path.join(REPO, "cli/bunboot.ts"), "fetch", url, "--hashes", hashes, "-o", out, "--quiet"], { BUN_BE_BUN: "1" });
    ours.push(o.seconds);
    rss = Math.max(rss, o.maxRssKiB);
    fs.rmSync(out, { force: true });
    for (const [name, pipeline] of Object.entries(REFERENCES) as Array<[Reference, string]>) {
      // The URL goes in as $0, never into the script text.
      ref[name].push((await timed(["/bin/bash", "-o", "pipefail", "-c", pipeline, url])).seconds);
    }
  }
  server.kill();
  fs.rmSync(image, { force: true });
  const oursMiBs = mib / median(ours);
  const refMiBs = { openssl: mib / median(ref.openssl), sha256sum: mib / median(ref.sha256sum), ceiling: mib / median(ref.ceiling) };
  rows.push({ mib, oursMiBs, refMiBs, ratio: oursMiBs / refMiBs.openssl, oursRssMiB: rss / 1024 });
  console.error(`fetch bench: ${mib} MiB done`);
}
fs.rmSync(dir, { recursive: true, force: true });

const load = fs.readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
const lines = [
  `### Fetch: download + verify + write (${new Date().toISOString().slice(0, 16)}Z, ${os.cpus().length} cores, load ${load})`,
  "",
  `Command: \`node_modules/.bin/bun bench/fetch.ts --sizes ${sizes.join(",")} --runs ${runs}${args.boot ? ` --boots ${args.boots ?? 3} --usr-mib ${args.usrMib ?? 256}` : " --no-boot"}\` (median of ${runs}; HTTP on 127.0.0.1 from a separate process; output on tmpfs; stream-hash list with 2 MiB chunks)`,
  "",
  `| image | bunboot fetch (MiB/s) | curl \\| openssl dgst -sha256 (MiB/s) | ratio (goal >= ${FETCH_GOAL}) | curl \\| sha256sum (MiB/s) | curl -o /dev/null, the ceiling (MiB/s) | bunboot peak RSS (MiB) |`,
  "|---|---|---|---|---|---|---|",
  ...rows.map(
    (r) =>
      `| ${r.mib} MiB | ${r.oursMiBs.toFixed(0)} | ${r.refMiBs.openssl.toFixed(0)} | ${r.ratio.toFixed(2)} ${r.ratio >= FETCH_GOAL ? "met" : "**missed**"} | ${r.refMiBs.sha256sum.toFixed(0)} | ${r.refMiBs.ceiling.toFixed(0)} | ${r.oursRssMiB.toFixed(0)} |`,
  ),
  "",
];
if (args.boot) lines.push(...(await benchDisklessBoot({ usrMiB: Number(args.usrMib ?? 256), boots: Number(args.boots ?? 3) })));
console.log(lines.join("\n"));
if (args.append) fs.appendFileSync(path.join(REPO, "BENCHMARKS.md"), lines.join("\n") + "\n");
const missed = rows.filter((r) => r.ratio < FETCH_GOAL);
if (missed.length > 0) {
  console.error(`fetch goal missed: ${missed.map((r) => `${r.mib} MiB at ${r.ratio.toFixed(2)}x`).join(", ")} of curl | openssl dgst -sha256 (goal ${FETCH_GOAL}x)`);
  process.exit(3);
}
