// The mounts of the first stage: the early API filesystems (a table, applied
// by one loop), /usr, and the full initrd's overlay.
import fs from "node:fs";
import { bestEffort, log } from "./log.ts";
import { parseMountinfo, readMountinfo } from "./mountinfo.ts";
import { attachLoop, mount, MS, MNT_DETACH, SysError, umount } from "./sys/index.ts";
import { readAt } from "./devices/blockdevs.ts";
import { probeFilesystem, PROBE_BYTES } from "./devices/superblock.ts";
import type { MountOptions } from "./mountopts.ts";
import { BootError, messageOf } from "./errors.ts";

interface EarlyMount {
  target: string;
  fstype: string;
  source: string;
  flags: number;
  data: string | null;
  mode: number;
}

// Boot contract step 1. /proc is usually mounted already by the shim (Bun
// cannot start without it); mounting it again is skipped.
export const EARLY_MOUNTS: EarlyMount[] = [
  { target: "/proc", fstype: "proc", source: "proc", flags: MS.NOSUID | MS.NODEV | MS.NOEXEC, data: null, mode: 0o555 },
  { target: "/sys", fstype: "sysfs", source: "sysfs", flags: MS.NOSUID | MS.NODEV | MS.NOEXEC, data: null, mode: 0o555 },
  { target: "/dev", fstype: "devtmpfs", source: "devtmpfs", flags: MS.NOSUID, data: "mode=0755", mode: 0o755 },
  { target: "/dev/pts", fstype: "devpts", source: "devpts", flags: MS.NOSUID | MS.NOEXEC, data: "gid=5,mode=620,ptmxmode=000", mode: 0o755 },
  { target: "/run", fstype: "tmpfs", source: "tmpfs", flags: MS.NOSUID | MS.NODEV, data: "mode=0755", mode: 0o755 },
];

export function isMountpoint(path: string): boolean {
  return readMountinfo().some((m) => m.mountPoint === path);
}

export function mountEarly(): void {
  for (const m of EARLY_MOUNTS) {
    fs.mkdirSync(m.target, { recursive: true, mode: m.mode });
    if (m.target !== "/proc" && isMountpoint(m.target)) continue;
    if (m.target === "/proc" && fs.existsSync("/proc/self")) continue;
    mount(m.source, m.target, m.fstype, m.flags, m.data);
  }
}

export function mkdirs(...paths: string[]): void {
  for (const p of paths) fs.mkdirSync(p, { recursive: true, mode: 0o755 });
}

/** The filesystem type to pass to mount(2): "auto" becomes what the superblock says. */
export function resolveFsType(device: string, fsType: string): string {
  if (fsType !== "auto") return fsType;
  let head: Uint8Array;
  try {
    head = readAt(device, 0, PROBE_BYTES);
  } catch (e) {
    // A device that fails reads (a network block device whose server went away, a dying disk).
    throw new BootError(`cannot read the start of ${device} to find its filesystem type: ${messageOf(e)}`, { cause: e });
  }
  const id = probeFilesystem(head);
  if (!id || id.type === "DM_verity_hash") {
    throw new Error(`mount.usrfstype=auto: no known filesystem on ${device}; set mount.usrfstype= (ext4, btrfs, squashfs, erofs, xfs)`);
  }
  return id.type;
}

export function mountUsrDevice(device: string, target: string, fsType: string, opts: MountOptions): string {
  const type = resolveFsType(device, fsType);
  let data = opts.data;
  // A read-only btrfs must not replay its log: the device is read-only
  // (verity) and the replay would fail the mount (Flatcar does the same).
  if (type === "btrfs" && opts.readOnly && !/(^|,)rescue=/.test(data)) data = data ? `${data},rescue=nologreplay` : "rescue=nologreplay";
  mkdirs(target);
  try {
    mount(device, target, type, opts.flags, data || null);
  } catch (e) {
    if (e instanceof SysError && e.code === "EINVAL" && data) {
      throw new BootError(
        `mounting ${device} (${type}) on ${target} failed: the kernel rejected the options "${data}" from mount.usrflags= (${e.message}); the kernel log above names the option`,
        { param: "mount.usrflags", cause: e },
      );
    }
    throw e;
  }
  log.info(`mounted ${device} (${type}${opts.readOnly ? ", read-only" : ""}) on ${target}`);
  return type;
}

/** Loop-mounts a squashfs image file read-only. */
export function mountSquashfsFile(image: string, target: string): string {
  const fd = fs.openSync(image, "r");
  let loop: { dev: string; fd: number };
  try {
    loop = attachLoop(fd, image, (p) => fs.openSync(p, "r"));
  } finally {
    // The loop device holds its own reference to the file.
    fs.closeSync(fd);
  }
  try {
    mkdirs(target);
    mount(loop.dev, target, "squashfs", MS.RDONLY, null);
  } finally {
    // Now the mount holds the device; closing our fd arms autoclear.
    fs.closeSync(loop.fd);
  }
  log.info(`mounted ${image} (squashfs via ${loop.dev}) on ${target}`);
  return loop.dev;
}

/** Unmounts whatever is mounted at or below the given paths (deepest first); for retries. */
export function unmountBelow(prefixes: string[]): void {
  const targets = readMountinfo()
    .map((m) => m.mountPoint)
    .filter((t) => prefixes.some((p) => t === p || t.startsWith(p + "/")))
    .sort((a, b) => b.length - a.length);
  for (const t of targets) {
    try {
      umount(t, MNT_DETACH);
      log.debug(`unmounted ${t} left by the previous attempt`);
    } catch (e) {
      log.warn(`could not unmount ${t}: ${messageOf(e)}`);
    }
  }
}

export function mountSourceOf(target: string): string | null {
  const mountinfo = bestEffort("reading /proc/self/mountinfo", () => fs.readFileSync("/proc/self/mountinfo", "utf8")) ?? "";
  return parseMountinfo(mountinfo).find((m) => m.mountPoint === target)?.source ?? null;
}
