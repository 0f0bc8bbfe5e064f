// A kernel that embeds bunboot's initrd (CONFIG_INITRAMFS_SOURCE), built from Debian's
// linux-source package in the order a distribution's image build uses: configure and build the
// kernel and its modules, install the modules into a staging tree, build the initrd against that
// tree with `bunboot build --layout flat --compress none`, then link the archive into the kernel.
// The unpacked source and its build directory stay in the cache: a second run recompiles nothing,
// and redoes only the configuration, usr/ and the links (both passes), and modules_install.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { CACHE, sh } from "./images.ts";
import { REPO } from "./vm.ts";

const EMBED_CACHE = path.join(CACHE, "embedded-kernel");
const FRAGMENT = path.join(import.meta.dir, "embedded-kernel.config");

/**
 * Named entries of the disk profile that this small kernel does not have at all (no USB, NVMe,
 * SCSI, Xen, HID, virtio console, btrfs or erofs): a distribution embedding the initrd lists its
 * own the same way with --omit-modules, instead of a build that stops on modules its kernel was
 * built without.
 */
const NOT_IN_THIS_KERNEL = ["xen_blkfront", "nvme", "sd_mod", "sr_mod", "virtio_console", "hid_generic", "usbhid", "btrfs", "erofs"];

export interface EmbeddedKernel {
  /** The bzImage with the archive built in. */
  bzImage: string;
  /** Its `uname -r`. */
  release: string;
}

/** The newest Debian kernel source tarball (package linux-source-X.Y; scripts/deps.sh installs it). */
function kernelSourceTarball(): string {
  const found = fs
    .readdirSync("/usr/src")
    .filter((f) => /^linux-source-[0-9.]+\.tar\.xz$/.test(f))
    .sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
  if (found.length === 0) throw new Error("no /usr/src/linux-source-*.tar.xz: install linux-source (scripts/deps.sh does)");
  return path.join("/usr/src", found.at(-1)!);
}

/**
 * The tarball unpacked once into the cache (a stamp file marks a complete unpack of this exact
 * tarball), with its build directory. A new tarball starts both afresh: tar keeps the archive's
 * file times, older than the objects of the last build, so make would keep stale objects.
 */
function kernelSource(): { src: string; obj: string } {
  const tarball = kernelSourceTarball();
  const name = path.basename(tarball, ".tar.xz");
  const src = path.join(EMBED_CACHE, name);
  const obj = path.join(EMBED_CACHE, "build");
  const stamp = path.join(EMBED_CACHE, "unpacked");
  const version = `${tarball} ${fs.statSync(tarball).size} ${fs.statSync(tarball).mtimeMs}`;
  if (fs.existsSync(stamp) && fs.readFileSync(stamp, "utf8") === version && fs.existsSync(src)) return { src, obj };
  fs.rmSync(EMBED_CACHE, { recursive: true, force: true });
  fs.mkdirSync(EMBED_CACHE, { recursive: true });
  sh(["/usr/bin/tar", "-xf", tarball, "-C", EMBED_CACHE], `unpack ${tarball}`);
  if (!fs.existsSync(path.join(src, "Makefile"))) throw new Error(`${tarball} did not unpack into ${src}`);
  fs.writeFileSync(stamp, version);
  return { src, obj };
}

function make(src: string, obj: string, targets: string[], extra: string[] = []): string {
  return sh(["/usr/bin/make", "-s", "-C", src, `O=${obj}`, "ARCH=x86_64", `-j${os.availableParallelism()}`, ...extra, ...targets], `make ${targets.join(" ")}`);
}

/** .config from tinyconfig plus the fragment (and `extra` lines), checked: every CONFIG_ line must survive olddefconfig. */
function configure(src: string, obj: string, extra: string[]): void {
  make(src, obj, ["tinyconfig"]);
  const fragment = path.join(obj, "bunboot.config");
  const wanted = [...fs.readFileSync(FRAGMENT, "utf8").split("\n").filter((l) => l.startsWith("CONFIG_")), ...extra];
  fs.writeFileSync(fragment, wanted.join("\n") + "\n");
  // merge_config.sh makes its scratch files in the current directory.
  sh([path.join(src, "scripts/kconfig/merge_config.sh"), "-m", "-O", obj, path.join(obj, ".config"), fragment], "merge_config.sh", { cwd: obj });
  make(src, obj, ["olddefconfig"]);
  const config = new Set(fs.readFileSync(path.join(obj, ".config"), "utf8").split("\n"));
  const lost = wanted.filter((l) => !config.has(l));
  if (lost.length > 0) throw new Error(`kernel config: ${lost.join(", ")} did not survive olddefconfig (a dependency is missing from ${FRAGMENT})`);
}

/**
 * Builds (or relinks) the kernel with bunboot embedded. `initBinary` is the compiled init to put
 * in the archive (dist/bunboot-init: the same init the other scenarios boot).
 */
export function embeddedKernel(initBinary: string): EmbeddedKernel {
  const { src, obj } = kernelSource();
  fs.mkdirSync(obj, { recursive: true });
  const cpio = path.join(EMBED_CACHE, "bunboot-initramfs.cpio");
  const staging = path.join(EMBED_CACHE, "staging");

  // Pass 1: the kernel and its modules, with the kernel's own default initramfs.
  configure(src, obj, ['CONFIG_INITRAMFS_SOURCE=""']);
  make(src, obj, ["bzImage", "modules"]);
  const release = make(src, obj, ["kernelrelease"]).trim();
  fs.rmSync(staging, { recursive: true, force: true });
  make(src, obj, ["modules_install"], [`INSTALL_MOD_PATH=${staging}`, "DEPMOD=/sbin/depmod"]);
  const modulesRoot = path.join(staging, "lib/modules");

  // The archive, built against the staged modules of exactly this kernel.
  sh(
    [
      path.join(REPO, "node_modules/.bin/bun"), path.join(REPO, "build.ts"), "--no-config",
      "--init-binary", initBinary,
      "--modules-root", modulesRoot, "--kernel-version", release,
      "--profile", "disk", "--omit-modules", NOT_IN_THIS_KERNEL.join(","),
      "--layout", "flat", "--compress", "none", "--microcode", "none",
      "--out", cpio,
    ],
    "bunboot build (embedded archive)",
  );

  // Pass 2: the same kernel with the archive linked in (only usr/ and the link are redone).
  configure(src, obj, [`CONFIG_INITRAMFS_SOURCE="${cpio}"`, "CONFIG_INITRAMFS_COMPRESSION_NONE=y"]);
  make(src, obj, ["bzImage"]);
  const bzImage = path.join(EMBED_CACHE, "bzImage");
  fs.copyFileSync(path.join(obj, "arch/x86/boot/bzImage"), bzImage);
  return { bzImage, release };
}
