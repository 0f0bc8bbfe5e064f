// The disk of the kexec scenarios: an ESP (vfat, filled with mtools) with vmlinuz-a and vmlinuz-b
// (the Debian kernel, or for USR-B a kernel that embeds bunboot, with each slot's verity root hash
// written at offset 64, as Flatcar's build does), USR-A and USR-B holding the compiled `bunboot` CLI, an OEM partition with a grub.cfg,
// and GPT attributes that make USR-B the next slot with one try left.
import fs from "node:fs";
import path from "node:path";
import { resolveClosure } from "../../lib/initrd/elf.ts";
import { hostFs } from "../../lib/initrd/tree.ts";
import { VERITY_HASH_OFFSET } from "../../lib/kexec/plan.ts";
import { buildUsrTree, CACHE, sh, ext4, FLATCAR_USR_BYTES, gptDisk, squashfs, USR_A_UUID, USR_B_UUID, USR_TYPE, verityImage, type VerityImage } from "./images.ts";
import { DIST_INITRD, kernelImage, REPO } from "./vm.ts";

export const KEXEC_CACHE = path.join(CACHE, "kexec");
/** Modules stage 2 needs to mount the ESP (vfat) and the OEM partition (ext4); loaded in stage 1. */
export const KEXEC_DRIVERS = "rd.driver.pre=vfat,nls_cp437,nls_ascii,ext4";
/** The OEM grub.cfg: a serial console (QEMU has no screen here), an OEM id, extra parameters. */
export const OEM_ID = "qemu";
export const OEM_APPEND = `${KEXEC_DRIVERS} panic=-1`;
export const OEM_GRUB_CFG = `# Flatcar GRUB settings
set oem_id="${OEM_ID}"
set linux_console="console=ttyS0,115200n8"
set linux_append="${OEM_APPEND}"
`;
/** Where the test puts our initrd on /usr, for `bunboot kexec --initrd`. */
export const USR_INITRD = "/sysusr/usr/lib/bunboot-test/initrd.img";

// Boot 1 (USR-A) runs the kexec; boot 2 (USR-B) shows its plan without acting (the GPT as boot 1
// left it). `bunboot_test.kexec_disabled` on the command line turns kexec off first.
const KEXEC_STAGE2_INIT = `#!/bin/busybox sh
export PATH=/bin:/sbin
busybox mount -t proc proc /proc
busybox mount -t sysfs sysfs /sys
busybox mount -t devtmpfs devtmpfs /dev
busybox mount -t tmpfs tmpfs /tmp
slot=$(busybox cat /sysusr/usr/share/bunboot-test/slot 2>&1)
echo "STAGE2: pid=$$"
echo "STAGE2: slot=$slot"
echo "STAGE2: verity=$(busybox cat /sys/block/dm-0/dm/name 2>&1)"
echo "STAGE2: cmdline=$(busybox cat /proc/cmdline)"
echo "STAGE2: kernel=$(busybox uname -r)"
echo "STAGE2: modules=$(busybox cut -d' ' -f1 /proc/modules | busybox sort | busybox tr '\n' ' ')"
if [ "$slot" = USR-A ]; then
  if busybox grep -q bunboot_test.kexec_embedded /proc/cmdline; then
    # The next kernel embeds its initramfs: no --initrd.
    /sysusr/usr/bin/bunboot kexec
    echo "STAGE2: kexec_exit=$?"
  fi
  if busybox grep -q bunboot_test.kexec_disabled /proc/cmdline; then
    echo 1 > /proc/sys/kernel/kexec_load_disabled
    echo "STAGE2: kexec_load_disabled=$(busybox cat /proc/sys/kernel/kexec_load_disabled)"
    /sysusr/usr/bin/bunboot kexec --no-fallback --initrd ${USR_INITRD}
    echo "STAGE2: no_fallback_exit=$?"
  fi
  /sysusr/usr/bin/bunboot kexec --initrd ${USR_INITRD}
  echo "STAGE2: kexec_exit=$?"
else
  /sysusr/usr/bin/bunboot kexec --dry-run
  echo "STAGE2: dryrun_exit=$?"
fi
echo "STAGE2: done"
busybox poweroff -f
`;

/** `bunboot` compiled as the guest runs it from /usr (never stripped: that drops the program). */
export function compileBunboot(): string {
  fs.mkdirSync(KEXEC_CACHE, { recursive: true });
  const out = path.join(KEXEC_CACHE, "bunboot");
  sh(
    [
      path.join(REPO, "node_modules/.bin/bun"), "build", "--compile", "--target=bun-linux-x64",
      "--no-compile-autoload-dotenv", "--no-compile-autoload-bunfig",
      // ssh2's optional native addon (other commands use ssh2): it falls back to pure JS.
      "--external", "cpu-features",
      path.join(REPO, "cli/bunboot.ts"), "--outfile", out,
    ],
    "compile bunboot",
  );
  return out;
}

/** The kexec scenarios' full initrd: busybox, the shared libraries bunboot needs, the init above. */
export function buildKexecStage2(bunboot: string): string {
  const out = path.join(KEXEC_CACHE, "bootengine.img");
  const dir = path.join(KEXEC_CACHE, "stage2-root");
  fs.rmSync(dir, { recursive: true, force: true });
  for (const d of ["bin", "sbin", "proc", "sys", "dev", "run", "sysusr/usr", "tmp"]) fs.mkdirSync(path.join(dir, d), { recursive: true });
  fs.copyFileSync("/bin/busybox", path.join(dir, "bin/busybox"));
  fs.chmodSync(path.join(dir, "bin/busybox"), 0o755);
  const { libs, interpreters } = resolveClosure([bunboot], hostFs("/"));
  for (const [from, to] of [...libs.map((x) => [x.hostPath, x.initrdPath] as const), ...interpreters.map((i) => [i, i] as const)]) {
    fs.mkdirSync(path.join(dir, path.dirname(to)), { recursive: true });
    fs.copyFileSync(from, path.join(dir, to));
  }
  fs.writeFileSync(path.join(dir, "init"), KEXEC_STAGE2_INIT, { mode: 0o755 });
  return squashfs(dir, out);
}

/** A copy of kernel image `kernel` carrying `hash` at the architecture's verity offset. */
export function kernelWithHash(kernel: string, out: string, hash: string): string {
  const k = new Uint8Array(fs.readFileSync(kernel));
  k.set(new TextEncoder().encode(hash), VERITY_HASH_OFFSET.x64!);
  fs.writeFileSync(out, k);
  return out;
}

/** A vfat ESP image with the given files (path on the ESP -> host file), no loop mount. */
export function espImage(out: string, sizeMiB: number, files: Record<string, string>): string {
  fs.rmSync(out, { force: true });
  sh(["/usr/sbin/mkfs.vfat", "-n", "EFI-SYSTEM", "-C", out, String(sizeMiB * 1024)], "mkfs.vfat");
  const dirs = new Set<string>();
  for (const p of Object.keys(files)) for (let d = path.dirname(p); d !== "."; d = path.dirname(d)) dirs.add(d);
  const env = { MTOOLS_SKIP_CHECK: "1" };
  for (const d of [...dirs].sort()) sh(["/usr/bin/mmd", "-i", out, `::${d}`], "mmd", { env });
  for (const [p, host] of Object.entries(files)) sh(["/usr/bin/mcopy", "-i", out, host, `::${p}`], "mcopy", { env });
  return out;
}

export interface KexecFixtures {
  /** The pristine disk; scenarios copy it, since they let the guest write to it. */
  disk: string;
  usrA: VerityImage;
  usrB: VerityImage;
  /** The OEM partition's ext4 image (grub.cfg). */
  oem: string;
}

let cached: KexecFixtures | null = null;

export function kexecFixtures(): KexecFixtures {
  if (cached) return cached;
  fs.mkdirSync(KEXEC_CACHE, { recursive: true });
  const bunboot = compileBunboot();
  const bootengine = buildKexecStage2(bunboot);
  const usr = (slot: "a" | "b"): VerityImage => {
    const tree = buildUsrTree(`kexec-${slot}`, `USR-${slot.toUpperCase()}`, bootengine);
    fs.mkdirSync(path.join(tree, "bin"), { recursive: true });
    fs.copyFileSync(bunboot, path.join(tree, "bin/bunboot"));
    fs.chmodSync(path.join(tree, "bin/bunboot"), 0o755);
    if (slot === "a") {
      fs.mkdirSync(path.join(tree, "lib/bunboot-test"), { recursive: true });
      fs.copyFileSync(DIST_INITRD, path.join(tree, "lib/bunboot-test/initrd.img"));
    }
    const sq = squashfs(tree, path.join(KEXEC_CACHE, `usr-${slot}.squashfs`));
    return verityImage(sq, path.join(KEXEC_CACHE, `usr-${slot}.verity`));
  };
  const usrA = usr("a");
  const usrB = usr("b");
  const oemDir = path.join(KEXEC_CACHE, "oem-root");
  fs.rmSync(oemDir, { recursive: true, force: true });
  fs.mkdirSync(oemDir, { recursive: true });
  fs.writeFileSync(path.join(oemDir, "grub.cfg"), OEM_GRUB_CFG);
  const oem = ext4(oemDir, path.join(KEXEC_CACHE, "oem.ext4"), "OEM", 16);
  const disk = kexecDisk("kexec", { usrA, usrB, oem, vmlinuzB: kernelImage(), espMiB: 32 });
  cached = { disk, usrA, usrB, oem };
  return cached;
}

/**
 * The Flatcar disk of the kexec scenarios: an ESP with the two slots' kernels (each carrying its
 * slot's root hash), USR-A and USR-B, the OEM partition, and GPT attributes that make USR-B the
 * next slot with one try left. `vmlinuzB` is the kernel the update ships.
 */
export function kexecDisk(name: string, parts: { usrA: VerityImage; usrB: VerityImage; oem: string; vmlinuzB: string; espMiB: number }): string {
  const { usrA, usrB, oem, vmlinuzB, espMiB } = parts;
  const empty = path.join(KEXEC_CACHE, "empty");
  fs.writeFileSync(empty, "");
  const esp = espImage(path.join(KEXEC_CACHE, `${name}-esp.vfat`), espMiB, {
    "flatcar/vmlinuz-a": kernelWithHash(kernelImage(), path.join(KEXEC_CACHE, `${name}-vmlinuz-a`), usrA.rootHash),
    "flatcar/vmlinuz-b": kernelWithHash(vmlinuzB, path.join(KEXEC_CACHE, `${name}-vmlinuz-b`), usrB.rootHash),
    "flatcar/first_boot": empty,
  });
  const disk = gptDisk(path.join(KEXEC_CACHE, `${name}.disk`), [
    { label: "EFI-SYSTEM", type: "c12a7328-f81f-11d2-ba4b-00a0c93ec93b", sizeBytes: espMiB << 20, image: esp },
    { label: "BIOS-BOOT", type: "21686148-6449-6e6f-744e-656564454649", sizeBytes: 1 << 20 },
    { label: "USR-A", type: USR_TYPE, uuid: USR_A_UUID, sizeBytes: FLATCAR_USR_BYTES, image: usrA.path },
    { label: "USR-B", type: USR_TYPE, uuid: USR_B_UUID, sizeBytes: FLATCAR_USR_BYTES, image: usrB.path },
    { label: "OEM", type: "0fc63daf-8483-4772-8e79-3d69d8477de4", sizeBytes: 16 << 20, image: oem },
  ]);
  // USR-A: priority 1, successful (the running system). USR-B: priority 2, one try (the update).
  sh(["/usr/sbin/sgdisk", "--attributes=3:set:48", "--attributes=3:set:56", "--attributes=4:set:49", "--attributes=4:set:52", disk], "sgdisk --attributes");
  return disk;
}

/** A writable copy of a pristine disk (default: the kexec disk) for one scenario (sparse: the /usr partitions are mostly zeros). */
export function diskCopy(name: string, pristine = kexecFixtures().disk): string {
  const out = path.join(KEXEC_CACHE, `${name}.disk`);
  fs.rmSync(out, { force: true });
  sh(["/usr/bin/cp", "--sparse=always", pristine, out], "copy disk");
  return out;
}
