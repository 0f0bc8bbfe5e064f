// Disk images for the VM scenarios, made with the real tools: sfdisk for a
// Flatcar-layout GPT, mksquashfs/mkfs.ext4 for /usr, veritysetup format for
// the hash tree at the hash offset, and a test "full initrd" (squashfs) whose
// /init prints facts about the hand-over and powers off.
import fs from "node:fs";
import path from "node:path";
import { encodeNewc, type CpioEntry } from "../../lib/initrd/cpio.ts";
import { resolveClosure } from "../../lib/initrd/elf.ts";
import { hostFs } from "../../lib/initrd/tree.ts";
import { archInputs, searchDirsFor, type Arch } from "../../lib/initrd/arch.ts";
import { REPO } from "./vm.ts";

export const CACHE = path.join(REPO, ".cache/images");

export const USR_TYPE = "5dfbf5f4-2848-4bac-aa5e-0d9a20b745a6";
export const USR_A_UUID = "7130c94a-213a-4e5a-8e26-6cce9662f132";
export const USR_B_UUID = "e03dd35c-7c2d-4a47-b3fe-27f15780a57c";
export const LINUX_FS_TYPE = "0fc63daf-8483-4772-8e79-3d69d8477de4";
/** Flatcar's USR partition: 1 GiB, verity hash tree at 1065345024. */
export const FLATCAR_USR_BYTES = 1024 * 1024 * 1024;
export const FLATCAR_HASH_OFFSET = 1065345024;

/** Runs an image tool that must succeed; its stdout. */
export function sh(argv: string[], what: string, opts: { stdin?: string; env?: Record<string, string>; cwd?: string } = {}): string {
  const r = Bun.spawnSync(argv, {
    cwd: opts.cwd,
    stdin: opts.stdin ? Buffer.from(opts.stdin) : undefined,
    stderr: "pipe",
    stdout: "pipe",
    env: opts.env ? { ...process.env, ...opts.env } : undefined,
  });
  if (r.exitCode !== 0) throw new Error(`${what}: ${argv.join(" ")} exited ${r.exitCode}: ${r.stderr.toString()}${r.stdout.toString()}`);
  return r.stdout.toString();
}

// What the stage-2 init prints; the scenarios assert on these lines.
const STAGE2_INIT = `#!/bin/busybox sh
export PATH=/bin:/sbin
busybox mount -t proc proc /proc
busybox mount -t sysfs sysfs /sys
busybox mount -t devtmpfs devtmpfs /dev
echo "STAGE2: pid=$$"
echo "STAGE2: sysusr=$(busybox awk '$5 == "/sysusr/usr" { for (i = 7; $i != "-"; i++); print $(i+2), $(i+1), $6 }' /proc/self/mountinfo)"
echo "STAGE2: root=$(busybox awk '$5 == "/" { for (i = 7; $i != "-"; i++); print $(i+1) }' /proc/self/mountinfo | busybox tail -n 1)"
echo "STAGE2: verity=$(dmsetup status usr 2>&1 | busybox tr -s ' ')"
if [ -b /dev/mapper/usr ]; then echo "STAGE2: mapper=block"; else echo "STAGE2: mapper=missing"; fi
echo "STAGE2: shmem_kib=$(busybox awk '/^Shmem:/ { print $2 }' /proc/meminfo)"
# User-space processes other than this script and its own children: a
# stage-1 process that survived the switch root would show up here.
procs=""
for p in /proc/[0-9]*; do
  c=$(busybox cat $p/comm 2>/dev/null)
  [ -n "$(busybox head -c 1 $p/cmdline 2>/dev/null)" ] || continue
  case "$c" in init|busybox|cat|head|sh) continue;; esac
  procs="$procs $c"
done
echo "STAGE2: stage1_procs=$procs"
echo "STAGE2: slot=$(busybox cat /sysusr/usr/share/bunboot-test/slot 2>&1)"
echo "STAGE2: oem=$(busybox ls /oem 2>/dev/null | busybox tr '\\n' ' ')"
echo "STAGE2: oem_fs=$(busybox awk '$5 == "/oem" { for (i = 7; $i != "-"; i++); print $(i+1) }' /proc/self/mountinfo)"
if [ -f /usr.squashfs ]; then echo "STAGE2: usr_squashfs=present"; else echo "STAGE2: usr_squashfs=absent"; fi
echo "STAGE2: bootlog=$(busybox grep -c bunboot /run/bunboot/log 2>/dev/null)"
# Loop devices still attached, by backing file: the full initrd's own stays;
# the first stage's payload image must be gone.
loops=""
for l in /sys/block/loop*/loop/backing_file; do
  [ -f "$l" ] && loops="$loops $(busybox cat $l)"
done
echo "STAGE2: loops=$loops"
echo "STAGE2: payload_mounts=$(busybox grep -c payload /proc/self/mountinfo)"
echo "STAGE2: mem_available_kib=$(busybox awk '/^MemAvailable:/ { print $2 }' /proc/meminfo)"
echo "STAGE2: cmdline=$(busybox cat /proc/cmdline)"
echo "STAGE2: verity_table=$(dmsetup table usr 2>&1 | busybox tr -s ' ')"
# The block devices under the verity mapping, and where an NBD one connects to.
slaves=""
for s in /sys/block/dm-*/slaves/*; do [ -e "$s" ] && slaves="$slaves \${s##*/}"; done
echo "STAGE2: dm_slaves=$slaves"
backends=""
for b in /sys/block/nbd*/backend; do v=$(busybox cat $b 2>/dev/null); [ -n "$v" ] && backends="$backends $v"; done
echo "STAGE2: nbd_backends=$backends"
canary=/sysusr/usr/share/bunboot-test/canary
case " $(busybox cat /proc/cmdline) " in
  *" bunboot_test.outage "*)
    # The host stops the /usr server, then presses Enter: reading a block
    # that was never read before must fail, not hang or return garbage.
    echo "STAGE2: waiting for the server to go away"
    read -r _ < /dev/console
    start=$(busybox cut -d' ' -f1 /proc/uptime)
    echo "STAGE2: after_outage=$(busybox sha256sum $canary 2>&1 | busybox head -n 1)"
    echo "STAGE2: outage_read_s=$(busybox awk -v s=$start '{ print $1 - s }' /proc/uptime)"
    ;;
  *) echo "STAGE2: canary=$(busybox sha256sum $canary 2>&1 | busybox head -n 1)" ;;
esac
echo "STAGE2: done"
busybox poweroff -f
`;

/**
 * The test full initrd (bootengine.img): busybox, dmsetup and its libraries,
 * and the init above; for arm64 (bootengine-arm64.img) all of them from the
 * arm64 sysroot on an x64 host (scripts/arm64-sysroot.sh).
 */
export function buildStage2(arch: Arch = "x64"): string {
  const suffix = arch === "x64" ? "" : `-${arch}`;
  const out = path.join(CACHE, `bootengine${suffix}.img`);
  const dir = path.join(CACHE, `stage2-root${suffix}`);
  const { sysroot } = archInputs(arch, process.arch, REPO);
  const inRoot = (p: string) => path.join(sysroot, p);
  const dmsetup = fs.existsSync(inRoot("/usr/sbin/dmsetup")) ? "/usr/sbin/dmsetup" : "/sbin/dmsetup";
  if (!fs.existsSync(inRoot("/bin/busybox")) || !fs.existsSync(inRoot(dmsetup))) throw new Error(`the ${arch} stage-2 init needs busybox and dmsetup in ${sysroot}${sysroot === "/" ? "" : " (bash scripts/arm64-sysroot.sh)"}`);
  fs.rmSync(dir, { recursive: true, force: true });
  for (const d of ["bin", "sbin", "proc", "sys", "dev", "run", "sysusr/usr", "oem", "etc", "tmp"]) fs.mkdirSync(path.join(dir, d), { recursive: true });
  fs.copyFileSync(inRoot("/bin/busybox"), path.join(dir, "bin/busybox"));
  fs.chmodSync(path.join(dir, "bin/busybox"), 0o755);
  fs.copyFileSync(inRoot(dmsetup), path.join(dir, "sbin/dmsetup"));
  fs.chmodSync(path.join(dir, "sbin/dmsetup"), 0o755);
  const { libs, interpreters } = resolveClosure([dmsetup], hostFs(sysroot), { searchDirs: searchDirsFor(arch) });
  const real = (p: string) => hostFs(sysroot).realpath(p) ?? p;
  for (const l of [...libs.map((x) => [x.hostPath, x.initrdPath] as const), ...interpreters.map((i) => [real(i), i] as const)]) {
    fs.mkdirSync(path.join(dir, path.dirname(l[1])), { recursive: true });
    fs.copyFileSync(inRoot(l[0]), path.join(dir, l[1]));
  }
  fs.writeFileSync(path.join(dir, "init"), STAGE2_INIT, { mode: 0o755 });
  fs.rmSync(out, { force: true });
  sh(["mksquashfs", dir, out, "-all-root", "-noappend", "-quiet", "-comp", "gzip"], "stage-2 squashfs");
  return out;
}

/** 256 KiB of seeded pseudo-random bytes (xorshift32): the same in every run. */
export function canaryBytes(): Buffer {
  const out = Buffer.alloc(256 * 1024);
  let x = 0x2545f491;
  for (let i = 0; i < out.length; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out.writeUInt32LE(x >>> 0, i);
  }
  return out;
}

/** A /usr tree holding the full initrd, a marker naming the slot, and the canary file. */
export function buildUsrTree(name: string, slot: string, bootengine: string): string {
  const dir = path.join(CACHE, `usr-${name}`);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(path.join(dir, "lib/flatcar"), { recursive: true });
  fs.mkdirSync(path.join(dir, "share/bunboot-test"), { recursive: true });
  fs.copyFileSync(bootengine, path.join(dir, "lib/flatcar/bootengine.img"));
  fs.writeFileSync(path.join(dir, "share/bunboot-test/slot"), slot + "\n");
  // Incompressible, so squashfs stores it as it is and a test can find (and
  // change) its bytes in the image: stage 2 hashes it.
  fs.writeFileSync(path.join(dir, "share/bunboot-test/canary"), canaryBytes());
  return dir;
}

/**
 * `mib` MiB that no compressor shrinks: each MiB is 64 KiB of random bytes
 * repeated (with its index in front), made quickly. squashfs and zstd find
 * nothing to gain in a 64 KiB window of random data.
 */
export function writeIncompressible(file: string, mib: number): void {
  const fd = fs.openSync(file, "w");
  try {
    const block = Buffer.alloc(1 << 20);
    for (let i = 0; i < mib; i++) {
      crypto.getRandomValues(block.subarray(0, 65536));
      for (let o = 65536; o < block.length; o += 65536) block.copy(block, o, 0, 65536);
      block.writeUInt32LE(i, 0);
      fs.writeSync(fd, block);
    }
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * A /usr tree (slot USR-A) with `fillerMiB` of incompressible filler, as a
 * squashfs and as a Flatcar verity partition image: for comparisons where the
 * image's size must show (RAM over NBD against HTTP into RAM).
 */
export function usrWithFiller(name: string, fillerMiB: number, bootengine: string): { squashfs: string; verity: VerityImage } {
  const tree = buildUsrTree(name, "USR-A", bootengine);
  writeIncompressible(path.join(tree, "share/bunboot-test/filler"), fillerMiB);
  const image = squashfs(tree, path.join(CACHE, `${name}.squashfs`));
  return { squashfs: image, verity: verityImage(image, path.join(CACHE, `${name}.verity`)) };
}

export function squashfs(dir: string, out: string): string {
  fs.rmSync(out, { force: true });
  sh(["mksquashfs", dir, out, "-all-root", "-noappend", "-quiet", "-comp", "gzip"], "mksquashfs");
  return out;
}

export function ext4(dir: string, out: string, label: string, sizeMiB = 64): string {
  fs.rmSync(out, { force: true });
  sh(["mkfs.ext4", "-q", "-F", "-L", label, "-U", "3f9a1c2e-5b7d-4e8f-9a0b-1c2d3e4f5a6b", "-d", dir, out, `${sizeMiB}M`], "mkfs.ext4");
  return out;
}

export interface VerityImage {
  path: string;
  rootHash: string;
  bytes: number;
}

/**
 * A Flatcar-style verity partition image: the filesystem at the start, zeros
 * up to the hash offset (sparse, so a 1 GiB image costs a few MiB), the
 * hash tree from there, covering every data block before the offset.
 */
export function verityImage(fsImage: string, out: string, hashOffset = FLATCAR_HASH_OFFSET, partitionBytes = FLATCAR_USR_BYTES): VerityImage {
  const fsBytes = fs.statSync(fsImage).size;
  if (fsBytes > hashOffset) throw new Error(`${fsImage} (${fsBytes} bytes) does not fit before the hash offset ${hashOffset}`);
  fs.rmSync(out, { force: true });
  fs.copyFileSync(fsImage, out);
  fs.truncateSync(out, partitionBytes);
  const text = sh(
    ["veritysetup", "format", "--hash=sha256", "--data-block-size=4096", "--hash-block-size=4096", `--data-blocks=${hashOffset / 4096}`, `--hash-offset=${hashOffset}`, out, out],
    "veritysetup format",
  );
  const m = text.match(/Root hash:\s+([0-9a-f]{64})/);
  if (!m) throw new Error(`veritysetup format printed no root hash:\n${text}`);
  if (fs.statSync(out).size > partitionBytes) throw new Error(`hash tree overflows the ${partitionBytes}-byte partition`);
  return { path: out, rootHash: m[1]!, bytes: partitionBytes };
}

export interface Partition {
  label: string;
  type: string;
  uuid?: string;
  sizeBytes: number;
  image?: string;
}

/** Copies src into dst at offset, skipping zero blocks so sparse stays sparse. */
function copySparse(src: string, dst: string, offset: number): void {
  const inFd = fs.openSync(src, "r");
  const outFd = fs.openSync(dst, "r+");
  const buf = Buffer.alloc(1 << 20);
  try {
    for (let pos = 0; ; ) {
      const n = fs.readSync(inFd, buf, 0, buf.length, pos);
      if (n === 0) break;
      const chunk = buf.subarray(0, n);
      if (chunk.some((b) => b !== 0)) fs.writeSync(outFd, chunk, 0, n, offset + pos);
      pos += n;
    }
  } finally {
    fs.closeSync(inFd);
    fs.closeSync(outFd);
  }
}

/** A GPT disk with the given partitions (1 MiB aligned) and their contents. */
export function gptDisk(out: string, parts: Partition[]): string {
  const MiB = 1024 * 1024;
  let start = MiB;
  const layout: Array<Partition & { start: number }> = [];
  for (const p of parts) {
    layout.push({ ...p, start });
    start += Math.ceil(p.sizeBytes / MiB) * MiB;
  }
  fs.rmSync(out, { force: true });
  fs.writeFileSync(out, "");
  fs.truncateSync(out, start + MiB);
  const script = ["label: gpt", "unit: sectors", ""]
    .concat(layout.map((p) => `start=${p.start / 512}, size=${Math.ceil(p.sizeBytes / MiB) * MiB / 512}, type=${p.type}, name="${p.label}"${p.uuid ? `, uuid=${p.uuid}` : ""}`))
    .join("\n");
  sh(["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", out], "sfdisk", { stdin: script + "\n" });
  for (const p of layout) if (p.image) copySparse(p.image, out, p.start);
  return out;
}

/** A newc cpio (uncompressed) with the given files, for appending to an initrd as boot loaders do. */
export function cpioArchive(out: string, files: Array<{ path: string; data?: Uint8Array; hostFile?: string }>): string {
  const entries: CpioEntry[] = files.map((f) => ({
    kind: "file",
    path: f.path,
    mode: 0o644,
    data: f.data ?? new Uint8Array(fs.readFileSync(f.hostFile!)),
  }));
  const parts = encodeNewc(entries);
  const fd = fs.openSync(out, "w");
  for (const p of parts) fs.writeSync(fd, p);
  fs.closeSync(fd);
  return out;
}

/** Concatenates initrd pieces, each padded to 4 bytes, as a boot loader does with several initrds. */
export function concatInitrds(out: string, pieces: string[]): string {
  const fd = fs.openSync(out, "w");
  try {
    for (const p of pieces) {
      const data = fs.readFileSync(p);
      fs.writeSync(fd, data);
      const pad = (4 - (data.length % 4)) % 4;
      if (pad) fs.writeSync(fd, Buffer.alloc(pad));
    }
  } finally {
    fs.closeSync(fd);
  }
  return out;
}

/**
 * A qcow2 overlay on a raw image, grown to the next power of two: QEMU's
 * sd-card refuses other sizes. The base stays shared and untouched (reads
 * past its end return zeros); the GPT's backup header is then not at the end
 * of the disk, which the kernel notes and accepts, as it does on a dd'd card.
 */
export function powerOfTwoOverlay(base: string, out: string): string {
  const bytes = fs.statSync(base).size;
  let size = 1;
  while (size < bytes) size *= 2;
  fs.rmSync(out, { force: true });
  sh(["/usr/bin/qemu-img", "create", "-q", "-f", "qcow2", "-b", path.resolve(base), "-F", "raw", out, String(size)], "qemu-img create (power-of-two overlay)");
  return out;
}
