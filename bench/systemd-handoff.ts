#!/usr/bin/env bun
// Checks that systemd-analyze counts bunboot's first stage: boots the verity
// scenario with a stage 2 whose /init is the host's real systemd (a link to
// /usr/lib/systemd/systemd, as in a dracut initrd) and a unit that prints
// `systemd-analyze time` and systemd's initrd timestamp, then powers off.
// bunboot must exec systemd with --switched-root --system --deserialize <fd>
// and a memfd holding initrd-timestamp=<our start>.
//   bun bench/systemd-handoff.ts [--initrd FILE]    (default dist/initrd.img)
import fs from "node:fs";
import path from "node:path";
import parseArgs from "yargs-parser";
import { resolveClosure } from "../lib/initrd/elf.ts";
import { hostFs } from "../lib/initrd/tree.ts";
import { REPO, Vm } from "../qemu-tests/harness/vm.ts";
import { parseBoot } from "../lib/bootlog.ts";
import { buildDisk } from "./run.ts";
import { messageOf } from "../lib/errors.ts";

const OUT = path.join(REPO, ".cache/bench");

const REPORT = `#!/bin/sh
# Waits until systemd counts the boot as finished, then prints its figures.
exec >/dev/console 2>&1
for i in $(seq 1 120); do
  if t=$(/usr/bin/systemd-analyze time 2>/dev/null); then break; fi
  sleep 0.5
done
echo "SYSTEMD: argv=$(tr '\\0' ' ' </proc/1/cmdline)"
echo "SYSTEMD: analyze=$t" | head -n 1
/usr/bin/systemctl show -p InitRDTimestampMonotonic -p UserspaceTimestampMonotonic | sed 's/^/SYSTEMD: /'
echo "SYSTEMD: done"
/usr/bin/systemctl poweroff --force --force
`;

/** A merged-/usr stage-2 root with the host's systemd, systemctl, systemd-analyze and busybox. */
function buildSystemdStage2(): string {
  const root = path.join(OUT, "systemd-root");
  fs.rmSync(root, { recursive: true, force: true });
  for (const d of ["usr/bin", "usr/sbin", "usr/lib/systemd", "usr/lib64", "etc/systemd/system", "proc", "sys", "dev", "run", "tmp", "sysusr/usr", "var", "root"]) {
    fs.mkdirSync(path.join(root, d), { recursive: true });
  }
  for (const l of ["bin", "sbin", "lib", "lib64"]) fs.symlinkSync(`usr/${l}`, path.join(root, l));
  const bins = ["/usr/lib/systemd/systemd", "/usr/bin/systemctl", "/usr/bin/systemd-analyze"];
  const copy = (host: string, to = host) => {
    fs.mkdirSync(path.dirname(path.join(root, to)), { recursive: true });
    fs.copyFileSync(host, path.join(root, to));
    fs.chmodSync(path.join(root, to), 0o755);
  };
  for (const b of bins) copy(b);
  copy("/bin/busybox", "/usr/bin/busybox");
  for (const a of ["sh", "seq", "sleep", "tr", "sed", "head", "cat"]) fs.symlinkSync("busybox", path.join(root, "usr/bin", a));
  // Libraries under /usr (merged /usr: /lib is a link to usr/lib), so both
  // RUNPATHs such as /usr/lib/x86_64-linux-gnu/systemd and /lib paths resolve.
  const { libs, interpreters } = resolveClosure(bins, hostFs("/"));
  for (const lib of libs) copy(fs.realpathSync(lib.hostPath), lib.initrdPath.startsWith("/usr/") ? lib.initrdPath : "/usr" + lib.initrdPath);
  for (const i of interpreters) copy(fs.realpathSync(i), i.startsWith("/usr/") ? i : "/usr" + i);
  fs.symlinkSync("usr/lib/systemd/systemd", path.join(root, "init"));
  fs.writeFileSync(path.join(root, "etc/os-release"), 'NAME="bunboot systemd hand-off check"\nID=bunboot-check\n');
  fs.writeFileSync(path.join(root, "etc/machine-id"), "");
  fs.writeFileSync(path.join(root, "etc/systemd/system/default.target"), "[Unit]\nDescription=hand-off check\nWants=report.service\n");
  fs.writeFileSync(
    path.join(root, "etc/systemd/system/report.service"),
    "[Unit]\nDescription=print systemd-analyze time\nDefaultDependencies=no\n[Service]\nType=simple\nExecStart=/usr/bin/report\n",
  );
  fs.writeFileSync(path.join(root, "usr/bin/report"), REPORT, { mode: 0o755 });
  const img = path.join(OUT, "bootengine-systemd.img");
  fs.rmSync(img, { force: true });
  const r = Bun.spawnSync(["mksquashfs", root, img, "-all-root", "-noappend", "-quiet", "-comp", "gzip"], { stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`mksquashfs: ${r.stderr.toString()}`);
  return img;
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2), { string: ["initrd"] });
  const initrd = path.resolve(args.initrd ?? path.join(REPO, "dist/initrd.img"));
  const disk = buildDisk(buildSystemdStage2(), "systemd");
  const vm = new Vm({ name: "bench-systemd-handoff", initrd, disks: [disk.path], append: disk.append });
  try {
    await vm.expect("SYSTEMD: done", 300_000);
  } catch (e) {
    console.error(messageOf(e));
    return 1;
  } finally {
    vm.kill();
  }
  const out = vm.console;
  const lines = out.split("\n").filter((l) => l.startsWith("SYSTEMD: "));
  for (const l of lines) console.log(l);
  const boot = parseBoot(out);
  const initrdMono = Number(out.match(/SYSTEMD: InitRDTimestampMonotonic=(\d+)/)?.[1] ?? NaN) / 1e6;
  const ok = /--switched-root --system --deserialize \d+/.test(out) && /\(initrd\)/.test(out) && boot !== null && initrdMono < boot.firstLineS;
  console.log(
    `initrd timestamp ${initrdMono.toFixed(3)} s; kernel ran /init at ${boot?.runInitS.toFixed(3)} s, bunboot's first line at ${boot?.firstLineS.toFixed(3)} s: ${ok ? "systemd counts the first stage" : "NOT counted"}`,
  );
  return ok ? 0 : 1;
}

if (import.meta.main) process.exit(await main());
