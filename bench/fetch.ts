// Fetch benchmark: download + verify + write of a /usr image from a loopback
// HTTP server with the init's engine (`bunboot fetch`), side by side with
// `curl -s URL | sha256sum` in the same run, and peak RSS for a small and a
// large image (it must not grow with the image).
// Usage: bun bench/fetch.ts [--sizes 128,512,1024] [--runs 3] [--append]
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import parseArgs from "yargs-parser";

const REPO = path.resolve(import.meta.dir, "..");
const args = parseArgs(process.argv.slice(2), { string: ["sizes", "runs"], boolean: ["append"] });
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

interface Row {
  mib: number;
  oursMiBs: number;
  curlMiBs: number;
  ratio: number;
  oursRssMiB: number;
}
const rows: Row[] = [];
for (const mib of sizes) {
  const image = path.join(dir, `image-${mib}`);
  // Random data: compressible data would flatter nothing here, but keep it honest.
  const fd = fs.openSync(image, "w");
  const block = Buffer.alloc(1 << 20);
  for (let i = 0; i < mib; i++) {
    crypto.getRandomValues(block.subarray(0, 65536));
    for (let o = 65536; o < block.length; o += 65536) block.copy(block, o, 0, 65536);
    block.writeUInt32LE(i, 0);
    fs.writeSync(fd, block);
  }
  fs.closeSync(fd);
  const hashes = path.join(dir, `image-${mib}.hashes`);
  const h = Bun.spawnSync([BUN, path.join(REPO, "cli/bunboot.ts"), "stream-hash", image], { env: { ...process.env, BUN_BE_BUN: "1" } });
  fs.writeFileSync(hashes, h.stdout);
  const server = Bun.spawn([BUN, path.join(REPO, "bench/fetch-server.ts"), image], { stdout: "pipe", env: { ...process.env, BUN_BE_BUN: "1" } });
  const reader = server.stdout.getReader();
  const url = new TextDecoder().decode((await reader.read()).value).trim();
  const ours: number[] = [];
  const curl: number[] = [];
  let rss = 0;
  const out = path.join(dir, "out");
  for (let r = 0; r < runs; r++) {
    // Interleaved, so both see the same machine load.
    const o = await timed([BUN, path.join(REPO, "cli/bunboot.ts"), "fetch", url, "--hashes", hashes, "-o", out, "--quiet"], { BUN_BE_BUN: "1" });
    ours.push(o.seconds);
    rss = Math.max(rss, o.maxRssKiB);
    fs.rmSync(out, { force: true });
    const c = await timed(["bash", "-c", 'curl -s "$0" | sha256sum > /dev/null', url]);
    curl.push(c.seconds);
  }
  server.kill();
  fs.rmSync(image, { force: true });
  const oursMiBs = mib / median(ours);
  const curlMiBs = mib / median(curl);
  rows.push({ mib, oursMiBs, curlMiBs, ratio: oursMiBs / curlMiBs, oursRssMiB: rss / 1024 });
  console.error(`fetch bench: ${mib} MiB done`);
}
fs.rmSync(dir, { recursive: true, force: true });

const load = fs.readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
const lines = [
  `### Fetch: download + verify + write (${new Date().toISOString().slice(0, 16)}Z, ${os.cpus().length} cores, load ${load})`,
  "",
  `Command: \`node_modules/.bin/bun bench/fetch.ts --sizes ${sizes.join(",")} --runs ${runs}\` (median of ${runs}; HTTP on 127.0.0.1 from a separate process; output on tmpfs; stream-hash list with 2 MiB chunks)`,
  "",
  "| image | bunboot fetch (MiB/s) | curl \\| sha256sum (MiB/s) | ratio | bunboot peak RSS (MiB) |",
  "|---|---|---|---|---|",
  ...rows.map((r) => `| ${r.mib} MiB | ${r.oursMiBs.toFixed(0)} | ${r.curlMiBs.toFixed(0)} | ${r.ratio.toFixed(2)} | ${r.oursRssMiB.toFixed(0)} |`),
  "",
];
console.log(lines.join("\n"));
if (args.append) fs.appendFileSync(path.join(REPO, "BENCHMARKS.md"), lines.join("\n") + "\n");
