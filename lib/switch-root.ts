// Handing over to the full initrd: the overlay it runs on, and the switch
// root itself, modelled on busybox switch_root and systemd's switch-root.c.
import fs from "node:fs";
import path from "node:path";
import { log } from "./log.ts";
import { chroot, mount, MS, MNT_DETACH, umount, sync } from "./sys/index.ts";
import { isMountpoint, mkdirs, mountSquashfsFile } from "./mounts.ts";

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

/** Resolves `init` inside newRoot as the kernel would after chroot (absolute links are relative to newRoot). */
export function resolveInRoot(newRoot: string, init: string): string | null {
  let p = init;
  for (let hops = 0; hops < 40; hops++) {
    const full = path.join(newRoot, p);
    let st: fs.Stats;
    try {
      st = fs.lstatSync(full);
    } catch {
      return null;
    }
    if (!st.isSymbolicLink()) return st.isFile() && (st.mode & 0o111) !== 0 ? p : null;
    const target = fs.readlinkSync(full);
    p = target.startsWith("/") ? target : path.join(path.dirname(p), target);
  }
  return null;
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
      try {
        fs.unlinkSync(p);
      } catch {}
    }
  }
  return freed;
}

export interface SwitchRootOptions {
  init: string;
  args: string[];
  env: Record<string, string | undefined>;
  beforeExec?: () => void;
}

/** Boot contract step 8. Only returns by throwing, and only before anything is destroyed. */
export function switchRoot(opts: SwitchRootOptions): never {
  if (!isMountpoint(NEW_ROOT)) throw new Error(`${NEW_ROOT} is not a mount point; refusing to switch root`);
  const init = resolveInRoot(NEW_ROOT, opts.init);
  if (!init) throw new Error(`the full initrd has no executable ${opts.init} (init=); refusing to switch root`);

  // Past this point there is no way back: the shell and tools are deleted.
  // Keep /run (and the boot log in it) for stage 2; detach the rest, as
  // Flatcar's minimal init does, so stage 2 mounts them its own way.
  if (fs.existsSync(NEW_ROOT + "/run")) mount("/run", NEW_ROOT + "/run", null, MS.MOVE, null);
  for (const t of ["/dev/pts", "/sys", "/dev"]) {
    try {
      umount(t, MNT_DETACH);
    } catch {}
  }
  const rootDev = fs.statSync("/").dev;
  const freed = emptyOldRoot("/", rootDev, NEW_ROOT);
  log.info(`freed ${(freed / 1048576).toFixed(1)} MiB of the old initramfs; switching root to ${NEW_ROOT}, exec ${opts.init}`);
  opts.beforeExec?.();
  try {
    umount("/proc", MNT_DETACH);
  } catch {}
  process.chdir(NEW_ROOT);
  mount(NEW_ROOT, "/", null, MS.MOVE, null);
  chroot(".");
  process.chdir("/");
  sync();
  // execve keeps PID 1; the full initrd's init takes over.
  (process as unknown as { execve(file: string, args: string[], env: Record<string, string | undefined>): never }).execve(
    opts.init,
    [opts.init, ...opts.args],
    opts.env,
  );
  throw new Error("execve returned");
}
