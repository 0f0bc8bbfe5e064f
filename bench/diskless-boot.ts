// The diskless part of the fetch benchmark: the same /usr image booted over
// HTTP into RAM (rd.usr.url=, verified by a stream-hash list) and block by
// block over NBD (verity.usr=nbd://, from Debian's nbd-server), interleaved
// in one run. It reports the time to stage 2 (kernel log timestamp of the
// switch root), the time of the step that gets /usr (fetch-usr, or
// attach-usr + verity), and MemAvailable in stage 2. The image is the test
// /usr tree plus an incompressible filler, so its size is what a real /usr
// weighs in RAM.
import fs from "node:fs";
import path from "node:path";
import { parseBoot, median } from "../lib/bootlog.ts";
import { startTestServer } from "../lib/testing/testserver.ts";
import { buildStage2, CACHE, usrWithFiller } from "../qemu-tests/harness/images.ts";
import { guestUrl, initrdWithHashListText, streamHashListOf, userNic } from "../qemu-tests/harness/remote-usr.ts";
import { GUEST_HOST, startNbdServer } from "../qemu-tests/harness/servers.ts";
import { stage2Facts, Vm } from "../qemu-tests/harness/vm.ts";

const BOOT_TIMEOUT_MS = 300_000;

interface Run {
  stage2S: number;
  usrStepS: number;
  memAvailableMiB: number;
}

async function bootOnce(name: string, initrd: string | undefined, append: string, usrSteps: string[]): Promise<Run> {
  const vm = new Vm({ name: `bench-${name}`, initrd, extraArgs: userNic(), append, memoryMiB: 1024 });
  try {
    await vm.expect("STAGE2: done", BOOT_TIMEOUT_MS);
    await vm.waitExit(30_000).catch(() => {});
  } finally {
    vm.kill();
  }
  const times = parseBoot(vm.console);
  if (!times) throw new Error(`${name}: the boot log does not reach the switch root (see ${vm.logFile})`);
  const facts = stage2Facts(vm.console);
  const usrStepS = times.steps.filter((s) => usrSteps.includes(s.name)).reduce((n, s) => n + s.ms / 1000, 0);
  return { stage2S: times.switchRootS, usrStepS, memAvailableMiB: Number(facts.mem_available_kib) / 1024 };
}

export async function benchDisklessBoot(opts: { usrMiB: number; boots: number }): Promise<string[]> {
  const dir = path.join(CACHE, "bench-diskless");
  fs.mkdirSync(dir, { recursive: true });
  const { squashfs: image, verity } = usrWithFiller("bench-diskless", opts.usrMiB, buildStage2());
  const initrd = initrdWithHashListText("bench-diskless-hashlist", streamHashListOf(fs.readFileSync(image)));
  const http = await startTestServer({ "/usr.squashfs": { path: image } });
  const nbd = await startNbdServer(path.join(dir, "nbd-server"), { usr: verity.path });
  const runs: { http: Run[]; nbd: Run[] } = { http: [], nbd: [] };
  try {
    for (let i = 0; i < opts.boots; i++) {
      // Interleaved and one at a time, so both see the same machine.
      runs.http.push(await bootOnce(`http-${i}`, initrd, `rd.usr.url=${guestUrl(http, "/usr.squashfs")}`, ["fetch-usr"]));
      runs.nbd.push(await bootOnce(`nbd-${i}`, undefined, `verity.usr=nbd://${GUEST_HOST}:${nbd.port}/usr verity.usrhash=${verity.rootHash}`, ["attach-usr", "verity"]));
      console.error(`diskless bench: boot ${i + 1} of ${opts.boots} done`);
    }
  } finally {
    nbd.stop();
    await http.stop();
  }
  const bytes = fs.statSync(image).size;
  const row = (name: string, rs: Run[], step: string) =>
    `| ${name} | ${median(rs.map((r) => r.stage2S)).toFixed(2)} | ${median(rs.map((r) => r.usrStepS)).toFixed(2)} (${step}) | ${median(rs.map((r) => r.memAvailableMiB)).toFixed(0)} |`;
  const ram = median(runs.nbd.map((r) => r.memAvailableMiB)) - median(runs.http.map((r) => r.memAvailableMiB));
  return [
    `Diskless boot, the same /usr image (${(bytes / 1048576).toFixed(1)} MiB squashfs: the test /usr and ${opts.usrMiB} MiB of incompressible filler) over HTTP into RAM and over NBD, interleaved, ${opts.boots} boots each, QEMU TCG with 1024 MiB, median:`,
    "",
    "| /usr from | kernel start → switch root (s) | getting /usr (s) | MemAvailable in stage 2 (MiB) |",
    "|---|---|---|---|",
    row("`rd.usr.url=http://…` (fetched into RAM, stream-hash list)", runs.http, "fetch-usr"),
    row("`verity.usr=nbd://…` (block by block, dm-verity)", runs.nbd, "attach-usr + verity"),
    "",
    `NBD leaves ${ram.toFixed(0)} MiB more RAM available in stage 2. Stage 2 here reads little of /usr; every block it reads later comes over the network once and then from the page cache.`,
    "",
  ];
}
