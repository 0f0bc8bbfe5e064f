// Handing over to the full initrd: the overlay it runs on, and the switch
// root itself, modelled on busybox switch_root and systemd's switch-root.c.
import fs from "node:fs";
import path from "node:path";
import { peakRssText, switchingRootText } from "./bootlog.ts";
import { PAYLOAD_MOUNT } from "./initrd/payload.ts";
import { bestEffort, log } from "./log.ts";
import { chroot, execveKeepFds, memfdWithData, mount, MS, MNT_DETACH, reboot, RB, umount, sync } from "./sys/index.ts";
import { isMountpoint, mkdirs, mountSquashfsFile } from "./mounts.ts";
import { messageOf } from "./errors.ts";

export const SYSUSR = "/sysusr/usr";
export const NEW_ROOT = "/realinit";
export const BOOTENGINE = "/lib/flatcar/bootengine.img";

/** Boot contract step 6: full initrd (squashfs on /usr) under a writable overlay at /realinit. */
export function mountFullInitrd(): void {
  const image = SYSUSR + BOOTENGINE;
  if (!fs.existsSync(image)) {
    throw new Error(`the full initrd ${BOOTENGINE} is missing from /usr (looked for ${image}): this /usr image was not built for a minimal initrd`);
  }
  mountSquashfsFile(image, "/underlay");
  mkdirs("/work");
  mount("tmpfs", "/work", "tmpfs", MS.NOSUID | MS.NODEV, "mode=0755");
  mkdirs("/work/upper", "/work/work", NEW_ROOT);
  mount("overlay", NEW_ROOT, "overlay", 0, "lowerdir=/underlay,upperdir=/work/upper,workdir=/work/work");
  // Move, not remount: verity and /usr are set up once and reused by stage 2.
  mkdirs(NEW_ROOT + SYSUSR);
  mount(SYSUSR, NEW_ROOT + SYSUSR, null, MS.MOVE, null);
  log.info(`full initrd mounted on ${NEW_ROOT} (overlay over ${BOOTENGINE}), /usr moved to ${NEW_ROOT}${SYSUSR}`);
}

/** Boot contract step 7 (PXE): OEM content and the /usr image for stage 2. */
export function handOverPxe(usrImage: string): void {
  const oem = NEW_ROOT + "/oem";
  mkdirs(oem);
  mount("tmpfs", oem, "tmpfs", MS.NOSUID | MS.NODEV, "mode=0755");
  const from = ["/oem", "/usr/share/oem"].find((d) => fs.existsSync(d) && fs.readdirSync(d).length > 0);
  if (from) {
    fs.cpSync(from, oem, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
    log.info(`copied OEM content from ${from} to /oem`);
  }
  // A bind mount instead of Flatcar's mv: the image lives on the old root's
  // tmpfs and a copy to the overlay's tmpfs would hold it twice in RAM. The
  // loop device and this mount keep it alive after the old root is emptied.
  const target = NEW_ROOT + "/usr.squashfs";
  fs.writeFileSync(target, "");
  mount(usrImage, target, null, MS.BIND, null);
  mount("none", target, null, MS.BIND | MS.REMOUNT | MS.RDONLY, null);
}

/** The kernel's limit on symlinks followed in one path walk (MAXSYMLINKS). */
const MAX_SYMLINKS = 40;

/**
 * Resolves `init` inside newRoot as the kernel's path walk will after chroot,
 * one component at a time: lstat() on a whole path would let the host follow
 * a directory link such as /sbin -> /usr/sbin to the host's /usr/sbin, a
 * relative target is relative to the directory the link really is in (not
 * to the path as written), and ".." at the new root stays there. Returns the
 * resolved path inside newRoot if it is an executable regular file, else null
 * (missing, not executable, or more than MAX_SYMLINKS links).
 */
export function resolveInRoot(newRoot: string, init: string): string | null {
  // Resolved components (none is a symlink), and the rest still to walk as a
  // stack (next component last), so a link's target goes in front of the rest.
  const done: string[] = [];
  const todo = init.split("/").reverse();
  let links = 0;
  let isDir = true; // newRoot itself
  while (todo.length > 0) {
    const name = todo.pop()!;
    if (!isDir) return null; // "file/x" or "file/": ENOTDIR
    if (name === "" || name === ".") continue;
    if (name === "..") {
      done.pop();
      continue;
    }
    const full = path.join(newRoot, ...done, name);
    let st: fs.Stats;
    try {
      st = fs.lstatSync(full);
    } catch {
      return null;
    }
    if (st.isSymbolicLink()) {
      if (++links > MAX_SYMLINKS) return null;
      const target = fs.readlinkSync(full);
      if (target.startsWith("/")) done.length = 0;
      todo.push(...target.split("/").reverse());
      continue;
    }
    done.push(name);
    isDir = st.isDirectory();
  }
  if (isDir) return null;
  // No component of this path is a symlink, so lstat sees the file itself.
  const st = fs.lstatSync(path.join(newRoot, ...done));
  return st.isFile() && (st.mode & 0o111) !== 0 ? "/" + done.join("/") : null;
}

/**
 * Deletes the old root's files to free the RAM they hold, never crossing a
 * mount point: the new root, /usr and anything else mounted must survive.
 */
function emptyOldRoot(dir: string, rootDev: number, skip: string): number {
  let freed = 0;
  for (const name of fs.readdirSync(dir)) {
    const p = dir === "/" ? `/${name}` : `${dir}/${name}`;
    if (p === skip) continue;
    let st: fs.Stats;
    try {
      st = fs.lstatSync(p);
    } catch {
      continue;
    }
    if (st.dev !== rootDev) continue;
    if (st.isDirectory()) {
      freed += emptyOldRoot(p, rootDev, skip);
      try {
        fs.rmdirSync(p);
      } catch {
        // holds a mount point further down: keep the directory
      }
    } else {
      freed += st.size;
      bestEffort(`removing ${p}`, () => fs.unlinkSync(p));
    }
  }
  return freed;
}

export interface SwitchRootOptions {
  init: string;
  args: string[];
  env: Record<string, string | undefined>;
  /** Called once the checks passed and nothing can turn back. */
  onCommit?: () => void;
  /**
   * When the first stage started (CLOCK_REALTIME and CLOCK_MONOTONIC, µs).
   * Handed to a systemd stage 2 as its initrd timestamp, so systemd-analyze
   * counts the first stage as part of the initrd time.
   */
  initrdTimestamp?: { realtimeUsec: bigint; monotonicUsec: bigint };
}

/** Whether the resolved init is systemd (dracut's /init is a link to it). */
export function isSystemd(resolvedInit: string): boolean {
  return path.posix.basename(resolvedInit) === "systemd";
}

/**
 * systemd's serialization format (manager section, ended by an empty line)
 * with only our start time: systemd's own start in the initrd would count as
 * "initrd" otherwise, and the first stage would vanish into "kernel".
 */
export function systemdSerialization(ts: { realtimeUsec: bigint; monotonicUsec: bigint }): string {
  return `initrd-timestamp=${ts.realtimeUsec} ${ts.monotonicUsec}\n\n`;
}

/**
 * The argv after the init's name. For systemd: --switched-root --system
 * --deserialize <fd> (a memfd with the serialization above), as systemd
 * passes to itself on switch-root; any other init gets `args` unchanged. A
 * memfd that cannot be made costs only the timestamp, never the boot.
 */
function initArgs(resolvedInit: string, opts: SwitchRootOptions): string[] {
  if (!isSystemd(resolvedInit) || !opts.initrdTimestamp) return opts.args;
  try {
    const fd = memfdWithData("bunboot-serialization", new TextEncoder().encode(systemdSerialization(opts.initrdTimestamp)));
    return ["--switched-root", "--system", "--deserialize", String(fd), ...opts.args];
  } catch (e) {
    log.warn(`cannot hand the first-stage timestamp to systemd: ${messageOf(e)}`);
    return opts.args;
  }
}

/** The init's peak resident memory (VmHWM): the RAM a machine needs for the first stage; "" if unknown. */
function peakRss(): string {
  try {
    return fs.readFileSync("/proc/self/status", "utf8").match(/^VmHWM:\s*(.*)$/m)?.[1]?.trim() ?? "";
  } catch {
    return "";
  }
}

/** Boot contract step 8. Only returns by throwing, and only before anything is destroyed. */
export function switchRoot(opts: SwitchRootOptions): never {
  if (!isMountpoint(NEW_ROOT)) throw new Error(`${NEW_ROOT} is not a mount point; refusing to switch root`);
  const init = resolveInRoot(NEW_ROOT, opts.init);
  if (!init) throw new Error(`the full initrd has no executable ${opts.init} (init=); refusing to switch root`);

  opts.onCommit?.();
  try {
    // Past this point there is no way back: the shell and tools are deleted.
    // Keep /run (and the boot log in it) for stage 2; detach the rest, as
    // Flatcar's minimal init does, so stage 2 mounts them its own way.
    fs.mkdirSync(NEW_ROOT + "/run", { recursive: true, mode: 0o755 });
    mount("/run", NEW_ROOT + "/run", null, MS.MOVE, null);
    // The payload image (lib/initrd/payload.ts) is detached, not unmounted:
    // this process still runs from it. Its loop device (autoclear) and the
    // image file, deleted below with the old root, are freed by the exec.
    for (const t of ["/dev/pts", "/sys", "/dev", PAYLOAD_MOUNT]) bestEffort(`detaching ${t}`, () => umount(t, MNT_DETACH));
    // Read before the old root goes: the figure covers the whole first stage.
    const rss = peakRss();
    const rootDev = fs.statSync("/").dev;
    const freed = emptyOldRoot("/", rootDev, NEW_ROOT);
    if (rss) log.info(peakRssText(rss));
    const args = initArgs(init, opts);
    log.info(switchingRootText(freed, NEW_ROOT, [opts.init, ...args].join(" ")));
    bestEffort("detaching /proc", () => umount("/proc", MNT_DETACH));
    process.chdir(NEW_ROOT);
    mount(NEW_ROOT, "/", null, MS.MOVE, null);
    chroot(".");
    process.chdir("/");
    sync();
    // execve keeps PID 1; the full initrd's init takes over. Bun's execve
    // closes fds above 2, so systemd's serialization memfd needs libc's.
    if (args !== opts.args) execveKeepFds(opts.init, [opts.init, ...args], opts.env);
    (process as unknown as { execve(file: string, args: string[], env: Record<string, string | undefined>): never }).execve(
      opts.init,
      [opts.init, ...args],
      opts.env,
    );
    throw new Error("execve returned");
  } catch (e) {
    // The old root (shell included) is gone: no emergency shell and no
    // retry is possible any more. Say what happened and reboot.
    log.err(`switch root failed after the old initramfs was emptied: ${messageOf(e)}; rebooting in 10 seconds`);
    Bun.sleepSync(10_000);
    sync();
    for (;;) {
      bestEffort("reboot", () => reboot(RB.AUTOBOOT));
      Bun.sleepSync(1000);
    }
  }
}
