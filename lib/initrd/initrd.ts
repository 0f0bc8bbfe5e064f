// Assembling the minimal initrd: the compiled init, the shim that starts it,
// the few host tools it calls, their libraries, kernel modules with fresh
// depmod indexes, static device nodes, and a config file; written as a
// deterministic newc cpio and compressed with the system's compressor.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createHash } from "node:crypto";
import { encodeNewc, type CpioEntry } from "./cpio.ts";
import { elfSection } from "./elf-section.ts";
import { DIRECTORY_OMISSIONS, modinfoValues, parseBuiltin, parseModulesDep, selectModules } from "./modules.ts";
import { microcodeFor, type MicrocodeSource } from "./microcode.ts";
import { BuildError, InitrdTree } from "./tree.ts";
import { ARGON2ID_HASH, FLATCAR_VERITY_HASH_OFFSET, type InitrdConfig } from "../config.ts";
import { UDHCPC_SCRIPT_TEXT } from "../net/up.ts";
import { EARLY_COLDPLUG_ENV } from "../early-coldplug.ts";
import { BASE_MODULES } from "../kmod.ts";
import { PAYLOAD_IMAGE, PAYLOAD_MOUNT, bootModuleOrder, splitPayload } from "./payload.ts";
import { BUSYBOX, CONFIG_PATH, EMERGENCY_PASSWORD_HASH, INIT_PATH, SFTP_HOST_KEY, SFTP_KEY, SHIM_PATH, UDHCPC_SCRIPT, USR_HASHES } from "../paths.ts";
import { parseStreamHashList } from "../streamhash.ts";
import { messageOf } from "../errors.ts";
import { ARCH_SPECS, searchDirsFor, type Arch } from "./arch.ts";

export type Compression = "zstd" | "xz" | "gzip" | "none";
export const COMPRESSIONS: readonly Compression[] = ["zstd", "xz", "gzip", "none"];

export type Layout = "flat" | "payload";
export const LAYOUTS: readonly Layout[] = ["flat", "payload"];
/**
 * The layout the builder writes unless told otherwise. In the benchmark
 * (bench/run.ts boots both; BENCHMARKS.md, 2026-12-03) payload reaches
 * stage 2 1.9 s sooner and boots in 208 MiB instead of 320, since the kernel
 * no longer unpacks and holds ~165 MiB; flat is 4.2 MiB smaller at zstd -19,
 * as one zstd stream compresses better than 1 MiB squashfs blocks.
 */
export const DEFAULT_LAYOUT: Layout = "payload";

export interface BuildOptions {
  /** The compiled init; not used (and not needed) with referenceInit. */
  initBinary?: string;
  /**
   * A shell script to run as /init instead of the Bun init (no Bun
   * executable, no shim); everything else is the same, plus veritysetup
   * and dmsetup, which the script runs. For the benchmark's busybox
   * reference, so both initrds differ only in the init and what it runs.
   */
  referenceInit?: string;
  out: string;
  compress: Compression;
  compressLevel?: number;
  kernelVersion?: string;
  modulesRoot: string;
  firmwareRoot: string;
  modules: readonly string[];
  /** The module profile `modules` came from, recorded in config.json so the init can name it. */
  profile?: string;
  /** Modules left out when a directory entry of `modules` would select them (default DIRECTORY_OMISSIONS). */
  omitModules?: readonly string[];
  sysroot: string;
  busybox: string;
  verityHashOffset: number;
  /** Stream-hash list of the remote /usr image: the trust root for rd.usr.url=. */
  usrHashes?: string;
  /** SSH private key for sftp:// /usr images, and the pinned server key fingerprint. */
  sftpKey?: string;
  sftpHostKey?: string;
  /** argon2id hash of the password asked before any shell (a locked-down console). */
  emergencyPasswordHash?: string;
  /**
   * The time every entry carries (seconds since 1970; default 0): the
   * SOURCE_DATE_EPOCH of the build, so that two builds of the same inputs
   * are the same bytes.
   */
  sourceDateEpoch?: number;
  /** CPU microcode for an early archive in front of the initrd (default none). */
  microcode?: MicrocodeSource;
  /** Host files added as they are (mode kept), at absolute paths of the initrd. */
  extraFiles?: ReadonlyArray<{ source: string; dest: string }>;
  /**
   * flat: one compressed archive the kernel unpacks whole. payload: the init,
   * tools, libraries, modules and firmware in a squashfs image (lib/initrd/payload.ts)
   * that the kernel only copies and the shim mounts; pages are decompressed on demand.
   */
  layout?: Layout;
  /** squashfs block size of the payload image (bytes, power of two, 4 KiB .. 1 MiB). */
  payloadBlockSize?: number;
  /**
   * Compression of the payload image (default: `compress`). For an archive linked into the kernel
   * the archive stays uncompressed (`compress` none) while the image keeps its own compression,
   * so the kernel image carries the squashfs as it is instead of the whole init unpacked.
   */
  payloadCompress?: Compression;
  /**
   * The target architecture (lib/initrd/arch.ts): every binary must be of it,
   * libraries are looked up in its multiarch directories, and config.json
   * records it. Default: x64.
   */
  arch?: Arch;
  log?: (line: string) => void;
}


/**
 * CPU features the Bun runtime executes without checking: the x86-64-v2 set
 * (Nehalem and newer). Measured under QEMU: the default build boots with
 * -cpu Nehalem and -cpu SandyBridge (no AVX2) and dies of an invalid opcode
 * with -cpu qemu64, which lacks these. The baseline build needs the same set.
 */
export const X86_64_CPU_FLAGS = ["cx16", "lahf_lm", "popcnt", "sse4_1", "sse4_2", "ssse3"];

// The shim exists because a compiled Bun program aborts before any
// JavaScript runs when /proc is missing (it reads /proc/self/exe). exec
// keeps PID 1, so the Bun program is still the init.
//
// It also checks the CPU first: a runtime that dies of an invalid opcode as
// PID 1 panics the kernel ("Attempted to kill init!") before it could say
// why. On such a CPU, or when the payload image cannot be mounted, the shim
// says what is wrong and follows rd.emergency= and rd.shell= itself, and it
// never exits. A password-protected initrd gets no shell here: busybox
// cannot check an argon2id hash.
//
// With the payload layout it loads the modules a squashfs on a loop device
// needs and mounts the image read-only before the exec; the init detaches
// it at the switch root, so the loop device and the image go with the exec.
//
// The kernel hands unknown command-line words to init as environment
// variables, so nothing the script relies on (IFS, PATH) is taken from there.
export function shimScript(payload?: { modules: string[] }): string {
  const mountPayload = payload
    ? `${payload.modules.map((m) => `$B insmod ${m} 2>/dev/null || $B grep -q "^${path.posix.basename(m, ".ko").replace(/-/g, "_")} " /proc/modules || give_up "cannot load ${m}, needed to mount the payload image"`).join("\n")}
$B mount -t squashfs -o ro,loop ${PAYLOAD_IMAGE} ${PAYLOAD_MOUNT} || give_up "cannot mount the payload image ${PAYLOAD_IMAGE} (squashfs over a loop device) at ${PAYLOAD_MOUNT}"
`
    : "";
  return `#!${BUSYBOX} sh
IFS=' 	
'
PATH=/sbin:/bin
B=${BUSYBOX}

${OPEN_CONSOLE}say() { echo "bunboot: $*" >/dev/console; echo "<3>bunboot: $*" >/dev/kmsg 2>/dev/null; }
power() {
  say "$1 now"
  $B sync
  $B "$1" -f
  while :; do $B sleep 3600; done
}
shell_forever() {
  while :; do
    $B setsid $B cttyhack $B sh -l
    say "the boot cannot continue: the shell starts again (reboot -f to restart)"
  done
}
# The busybox fallback when the Bun init cannot start: says why, then
# follows rd.emergency=, rd.emergency.timeout= and rd.shell= like the init.
give_up() {
  open_console
  $B mount -t sysfs -o nosuid,nodev,noexec sysfs /sys 2>/dev/null
  $B mount -t devtmpfs -o nosuid devtmpfs /dev 2>/dev/null
  say "$1; the boot cannot continue"
  set -f
  action=prompt shell=1 timeout=60
  for word in $($B cat /proc/cmdline); do
    case "$word" in
      rd.emergency=*) action=\${word#*=} ;;
      rd.emergency.timeout=*) timeout=\${word#*=} ;;
      rd.shell=0|rd.shell=no|rd.shell=off|rd.shell=false) shell=0 ;;
      rd.shell|rd.shell=1|rd.shell=yes|rd.shell=on|rd.shell=true) shell=1 ;;
    esac
  done
  case "$timeout" in ''|*[!0-9]*) timeout=60 ;; esac
  if [ "$shell" = 1 ] && [ -e ${EMERGENCY_PASSWORD_HASH} ]; then
    say "the emergency shell is password-protected and the password cannot be checked without the Bun runtime: no shell"
    shell=0
  fi
  case "$action" in
    reboot|poweroff|halt) power "$action" ;;
  esac
  if [ "$shell" = 0 ]; then
    if [ "$timeout" = 0 ]; then
      say "rd.shell=0: no emergency shell; no automatic reboot (rd.emergency.timeout=0)"
      while :; do $B sleep 3600; done
    fi
    say "rd.shell=0: no emergency shell; rebooting in $timeout seconds"
    $B sleep "$timeout"
    power reboot
  fi
  [ "$action" = shell ] && shell_forever
  if [ "$timeout" = 0 ]; then
    echo "Press Enter for emergency shell (rd.emergency.timeout=0: no automatic reboot)." >/dev/console
    read -r line </dev/console && shell_forever
  else
    echo "Press Enter for emergency shell or wait $timeout seconds for reboot." >/dev/console
    read -r -t "$timeout" line </dev/console && shell_forever
  fi
  power reboot
}

$B mount -t proc -o nosuid,nodev,noexec proc /proc || echo "bunboot shim: cannot mount /proc" >/dev/console
missing=
if [ "$($B uname -m)" = x86_64 ]; then
  flags=" $($B grep -m1 '^flags' /proc/cpuinfo | $B cut -d: -f2) "
  for f in ${X86_64_CPU_FLAGS.join(" ")}; do
    case "$flags" in *" $f "*) ;; *) missing="$missing $f" ;; esac
  done
fi
[ -z "$missing" ] || give_up "this CPU lacks$missing, which the Bun runtime needs (x86-64-v2: Nehalem or newer; no Bun build runs on this CPU)"
${mountPayload}open_console
${EARLY_COLDPLUG}exec ${INIT_PATH} "$@"
`;
}

/**
 * The drivers of a console the kernel cannot have at start: virtio_console
 * (hvc0), a module in distribution kernels, behind virtio-pci (x86, arm64
 * -M virt's PCI devices) or virtio-mmio (arm64 -M virt's MMIO devices).
 */
export const LATE_CONSOLE_MODULES = ["virtio_pci", "virtio_mmio", "virtio_console"];
/** How long the shim waits for /dev/console after loading them, in tenths of a second. */
export const LATE_CONSOLE_WAIT_TENTHS = 50;

// console=hvc0 names a virtio console, and its drivers are modules: when
// the kernel starts /init there is no such console yet, so it says "unable
// to open an initial console" and PID 1 starts with descriptors 0-2 closed.
// Left so (measured in QEMU), the Bun runtime puts /dev/null on 0-2, the
// init finds no /dev/console to open, its own console lines and the
// "Press Enter" prompt go nowhere (hvc0 shows only the kernel's echo of
// /dev/kmsg once coldplug loads the driver), and the prompt reads /dev/null
// until it times out. So the shim loads the drivers, waits for /dev/console
// to open (the port shows up a moment after the driver binds), and makes it
// the init's 0-2, which the emergency shell inherits; cttyhack then finds
// the real tty (hvc0) in /sys/class/tty/console/active. If it never opens,
// /dev/null holds 0-2, as the runtime would have done.
// The kernel's lines from before the driver loaded never reach hvc0 (they
// are in dmesg); docs/consoles.md.
// give_up runs it too, so the shim's own failures reach hvc0; before the
// payload is mounted there is no modprobe yet, and only a console the kernel
// already has can open. A driver named in rd.driver.blacklist= is not loaded
// (kmod's -b covers modprobe.blacklist= itself); rd.break=pre-udev does not
// hold it back, since that breakpoint's shell needs the console.
// `command exec`: a redirection that fails on a plain exec ends the shell,
// and this shell is PID 1.
const OPEN_CONSOLE = `open_console() {
  [ -e /proc/self/fd/0 ] && return 0
  if [ -x /sbin/modprobe ] && ! console_blacklisted; then
    /sbin/modprobe -b -a -q -- ${LATE_CONSOLE_MODULES.join(" ")} </dev/null >/dev/null 2>&1
  fi
  n=0
  until $B true </dev/console 2>/dev/null; do
    n=$((n + 1))
    [ $n -gt ${LATE_CONSOLE_WAIT_TENTHS} ] && break
    $B sleep 0.1
  done
  if [ $n -le ${LATE_CONSOLE_WAIT_TENTHS} ] && command exec 0<>/dev/console 1>&0 2>&0; then
    echo "<5>bunboot: the kernel had no console at start; /dev/console opened after loading ${LATE_CONSOLE_MODULES.join(" ")} ($n tenths of a second)" >/dev/kmsg
  else
    command exec 0</dev/null 1>/dev/null 2>&1
    echo "<3>bunboot: no console to open even after loading ${LATE_CONSOLE_MODULES.join(" ")}: the boot goes on without one" >/dev/kmsg
  fi
}
console_blacklisted() {
  set -f
  for word in $($B cat /proc/cmdline); do
    case "$word" in
    *rd.driver.blacklist=*)
      for m in $(echo "\${word#*rd.driver.blacklist=}" | $B tr ',"' '  '); do
        case " ${LATE_CONSOLE_MODULES.flatMap((m) => [m, m.replace(/_/g, "-")]).join(" ")} " in *" $m "*) set +f; return 0 ;; esac
      done
      ;;
    esac
  done
  set +f
  return 1
}
`;

// Loading the drivers of the devices the kernel already found starts here,
// beside the Bun runtime's start (seconds under emulation, mostly page faults
// into the payload image), so that disks are probed while Bun starts; the
// init's own coldplug then finds most modules loaded, and any it did not
// cover it loads as before. Measured in the verity scenario (3 alternating
// boots, payload layout): wait-usr 1652 -> 421 ms, stage 1 6.27 -> 4.93 s.
// The base modules (dm-verity, squashfs, overlay, ...) follow in the same
// job: the init's verity step otherwise waited ~600 ms for their modprobe.
//
// kmod honours modprobe.blacklist= and the kernel module_blacklist= by
// themselves, but rd.driver.blacklist= only takes effect once the init has
// written it to modprobe.d, and rd.driver.pre= must load first: with either,
// or with a stop before device handling (rd.earlyshell, rd.break=pre-udev),
// nothing is loaded early. The patterns are deliberately loose (anywhere in
// the line, any separator or quoting the kernel accepts): a false match only
// costs the head start. The job's PID goes to the init in
// EARLY_COLDPLUG_ENV (first cleared: the kernel passes unknown command-line
// words to init as environment variables), and the init waits for it before
// the switch root (lib/early-coldplug.ts).
const EARLY_COLDPLUG = `unset ${EARLY_COLDPLUG_ENV}
case "$($B cat /proc/cmdline)" in
*rd.driver.blacklist* | *rd.driver.pre* | *rd.earlyshell* | *rd.break*pre-udev*) ;;
*)
  $B mount -t sysfs -o nosuid,nodev,noexec sysfs /sys 2>/dev/null
  { $B find /sys/devices -name modalias -exec $B cat {} + 2>/dev/null | $B sort -u | $B tr '\\n' '\\0' | $B xargs -0 -r /sbin/modprobe -b -a -q -- 2>/dev/null
    /sbin/modprobe -b -a -q -- ${BASE_MODULES.join(" ")} 2>/dev/null; } </dev/null &
  ${EARLY_COLDPLUG_ENV}=$!
  export ${EARLY_COLDPLUG_ENV}
  ;;
esac
`;

/** The shim of the flat layout. */
export const SHIM = shimScript();

// Host locations of the tools; the initrd path drops a leading /usr.
const TOOLS: Array<[string[], string]> = [[["/usr/bin/kmod", "/bin/kmod"], "/bin/kmod"]];
// Only the benchmark's busybox reference init runs these, as Flatcar's
// minimal init does. Ours opens dm-verity with device-mapper ioctls
// (lib/usr-verity.ts), so its initrd carries neither them nor the ~2.6 MiB
// of libraries only they need (libcryptsetup, libdevmapper, libargon2, ...).
const REFERENCE_TOOLS: Array<[string[], string]> = [
  [["/usr/sbin/veritysetup", "/sbin/veritysetup"], "/sbin/veritysetup"],
  [["/usr/sbin/dmsetup", "/sbin/dmsetup"], "/sbin/dmsetup"],
];
const KMOD_LINKS = ["modprobe", "insmod", "rmmod", "lsmod", "modinfo"];

export function newestKernel(modulesRoot: string): string {
  let versions: string[] = [];
  try {
    versions = fs.readdirSync(modulesRoot).filter((v) => fs.existsSync(path.join(modulesRoot, v, "modules.dep")));
  } catch {
    // A missing or unreadable modules root is reported just below, by name.
  }
  if (versions.length === 0) throw new BuildError(`no kernel modules in ${modulesRoot} (install linux-image-amd64 or pass --modules-root)`);
  return versions.sort((a, b) => a.localeCompare(b, undefined, { numeric: true })).at(-1)!;
}

function firstExisting(tree: InitrdTree, candidates: string[]): string {
  for (const c of candidates) if (tree.host.realpath(c)) return c;
  throw new BuildError(`none of ${candidates.join(", ")} exists${tree.sysroot !== "/" ? ` in ${tree.sysroot}` : ""}: install the package that provides it (kmod, cryptsetup-bin, dmsetup)`);
}

function decompressModule(file: string): Uint8Array {
  const tool = file.endsWith(".xz") ? ["xz", "-dc"] : file.endsWith(".zst") ? ["zstd", "-dcq"] : file.endsWith(".gz") ? ["gzip", "-dc"] : null;
  if (!tool) return new Uint8Array(fs.readFileSync(file));
  const r = Bun.spawnSync([...tool, file]);
  if (r.exitCode !== 0) throw new BuildError(`decompressing ${file} failed: ${r.stderr.toString()}`);
  return new Uint8Array(r.stdout);
}

function addModules(tree: InitrdTree, opts: BuildOptions, kver: string, log: (l: string) => void): { count: number; firmware: number; baseModules: string[] } {
  const src = path.join(opts.modulesRoot, kver);
  const read = (f: string) => (fs.existsSync(path.join(src, f)) ? fs.readFileSync(path.join(src, f), "utf8") : "");
  const index = parseModulesDep(read("modules.dep"), read("modules.softdep"), read("modules.alias"));
  const builtin = parseBuiltin(read("modules.builtin"));
  const selected = selectModules(index, opts.modules, builtin, opts.omitModules ?? DIRECTORY_OMISSIONS);

  // depmod needs the modules on disk, so stage them in a scratch tree.
  const stage = fs.mkdtempSync(path.join(os.tmpdir(), "bunboot-modules-"));
  try {
    const dst = path.join(stage, "lib/modules", kver);
    const firmware = new Set<string>();
    const relPaths: string[] = [];
    for (const name of selected) {
      const rel = index.paths.get(name)!;
      const data = decompressModule(path.join(src, rel));
      const outRel = rel.replace(/\.(xz|zst|gz)$/, "");
      relPaths.push(outRel);
      fs.mkdirSync(path.dirname(path.join(dst, outRel)), { recursive: true });
      fs.writeFileSync(path.join(dst, outRel), data);
      const info = elfSection(data, ".modinfo");
      if (info) for (const fw of modinfoValues(info, "firmware")) firmware.add(fw);
    }
    for (const f of ["modules.builtin", "modules.builtin.modinfo"]) {
      if (fs.existsSync(path.join(src, f))) fs.copyFileSync(path.join(src, f), path.join(dst, f));
    }
    // modules.order decides which of two modules claiming an alias wins; keep the kernel's order.
    const order = read("modules.order").split("\n").map((l) => l.replace(/\.(xz|zst|gz)$/, ""));
    const keep = new Set(relPaths);
    fs.writeFileSync(path.join(dst, "modules.order"), order.filter((l) => keep.has(l)).join("\n") + "\n");
    const depmod = Bun.spawnSync(["/sbin/depmod", "-b", stage, kver]);
    if (depmod.exitCode !== 0) throw new BuildError(`depmod failed: ${depmod.stderr.toString()}`);
    for (const f of walk(dst)) {
      const rel = path.relative(stage, f);
      tree.file("/" + rel, new Uint8Array(fs.readFileSync(f)), 0o644, "modules");
    }
    let fwCount = 0;
    for (const fw of [...firmware].sort()) {
      for (const ext of ["", ".zst", ".xz"]) {
        const p = path.join(opts.firmwareRoot, fw + ext);
        if (fs.existsSync(p)) {
          tree.file(`/lib/firmware/${fw}${ext}`, new Uint8Array(fs.readFileSync(p)), 0o644, "firmware");
          fwCount++;
          break;
        }
      }
    }
    log(`modules: ${selected.length} for ${kver} (${firmware.size} firmware files declared, ${fwCount} present and included)`);
    // The base modules this kernel has: an omitted one it lacks (sd_mod in a kernel without SCSI) is not asked for at boot.
    const baseModules = BASE_MODULES.filter((m) => selected.includes(m) || builtin.has(m));
    return { count: selected.length, firmware: fwCount, baseModules };
  } finally {
    fs.rmSync(stage, { recursive: true, force: true });
  }
}

function* walk(dir: string): Generator<string> {
  for (const e of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) yield* walk(p);
    else yield p;
  }
}

function addSkeleton(tree: InitrdTree): void {
  // The directories of the boot contract; /usr stays empty (the real /usr
  // is mounted at /sysusr/usr).
  for (const d of ["/bin", "/sbin", "/dev", "/etc", "/lib", "/proc", "/sys", "/run", "/tmp", "/usr", "/sysusr/usr", "/underlay", "/work", "/realinit", "/oem", "/root"]) {
    tree.dir(d);
  }
  tree.dir("/tmp", 0o1777);
  // The kernel opens /dev/console for init's stdio before anything mounts
  // devtmpfs; without these nodes early output is lost.
  tree.node("/dev/console", "chardev", 0o600, 5, 1);
  tree.node("/dev/null", "chardev", 0o666, 1, 3);
  tree.node("/dev/zero", "chardev", 0o666, 1, 5);
  tree.node("/dev/tty", "chardev", 0o666, 5, 0);
  tree.node("/dev/random", "chardev", 0o666, 1, 8);
  tree.node("/dev/urandom", "chardev", 0o666, 1, 9);
  tree.node("/dev/kmsg", "chardev", 0o644, 1, 11);
  tree.file("/etc/passwd", new TextEncoder().encode("root:x:0:0:root:/root:/bin/sh\n"), 0o644, "skeleton");
  tree.file("/etc/group", new TextEncoder().encode("root:x:0:\ntty:x:5:\n"), 0o644, "skeleton");
  tree.file("/etc/initrd-release", new TextEncoder().encode('NAME="bunboot minimal initrd"\nID=bunboot\n'), 0o644, "skeleton");
}

/**
 * How to run the target's static busybox on this machine: directly when the
 * architectures match, else through Debian's qemu-user (a static binary
 * needs no sysroot there).
 */
export function busyboxListArgv(busyboxHostPath: string, arch: Arch, hostArch: string): string[] {
  if (arch === hostArch) return [busyboxHostPath, "--list-full"];
  return [ARCH_SPECS[arch].qemuUser, busyboxHostPath, "--list-full"];
}

function addBusybox(tree: InitrdTree, busybox: string, arch: Arch): void {
  tree.hostBinary(busybox, BUSYBOX, "tools");
  const argv = busyboxListArgv(path.join(tree.sysroot, busybox), arch, process.arch);
  if (!fs.existsSync(argv[0]!)) throw new BuildError(`listing the applets of the ${arch} busybox needs ${argv[0]} (Debian's qemu-user; scripts/deps.sh installs it)`);
  const r = Bun.spawnSync(argv, { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new BuildError(`${argv.join(" ")} failed (${r.exitCode}): is ${busybox} busybox for ${arch}? ${r.stderr.toString()}`);
  const kmodNames = new Set(KMOD_LINKS.concat(["depmod"]));
  for (const applet of r.stdout.toString().split("\n").filter(Boolean)) {
    // kmod's tools win over busybox's applets of the same name.
    if (kmodNames.has(path.basename(applet))) continue;
    const p = "/" + applet.replace(/^usr\//, "");
    if (p === BUSYBOX || p === SHIM_PATH || p.startsWith("/linuxrc")) continue;
    tree.symlink(p, BUSYBOX, "tools");
  }
}

/**
 * Host files added last, each at a path nothing else in the initrd has: an
 * extra file over the init, a module or the stream-hash list would replace
 * it unchecked, so a clash is an error naming both.
 */
function addExtraFiles(tree: InitrdTree, files: ReadonlyArray<{ source: string; dest: string }>): void {
  for (const f of files) {
    const existing = tree.entries.get(f.dest);
    // config.json comes after them, and so does the payload layout's /init.
    const owner = existing?.component ?? (f.dest === CONFIG_PATH ? "the build's config" : f.dest === SHIM_PATH ? "the shim" : null);
    if (owner) throw new BuildError(`extra file ${f.source}: ${f.dest} is already in the initrd (${owner}); choose another dest`);
    let data: Uint8Array, mode: number;
    try {
      data = new Uint8Array(fs.readFileSync(f.source));
      mode = fs.statSync(f.source).mode & 0o777;
    } catch (e) {
      throw new BuildError(`extra file ${f.source}: ${(e as Error).message}`);
    }
    tree.file(f.dest, data, mode, "extra files");
  }
}

function addRemoteUsr(tree: InitrdTree, opts: BuildOptions): void {
  tree.file(UDHCPC_SCRIPT, new TextEncoder().encode(UDHCPC_SCRIPT_TEXT), 0o755, "skeleton");
  if (opts.usrHashes) {
    let text: string;
    try {
      text = fs.readFileSync(opts.usrHashes, "utf8");
    } catch {
      throw new BuildError(`--usr-hashes ${opts.usrHashes}: cannot read the file`);
    }
    // A malformed list would only be found at boot, on every machine: check it now.
    try {
      parseStreamHashList(text, `--usr-hashes ${opts.usrHashes}`);
    } catch (e) {
      throw new BuildError(messageOf(e));
    }
    tree.file(USR_HASHES, new TextEncoder().encode(text), 0o644, "skeleton");
  }
  if (opts.sftpKey) {
    let key: Uint8Array;
    try {
      key = new Uint8Array(fs.readFileSync(opts.sftpKey));
    } catch {
      throw new BuildError(`--sftp-key ${opts.sftpKey}: cannot read the file`);
    }
    if (!new TextDecoder().decode(key.subarray(0, 64)).includes("PRIVATE KEY")) throw new BuildError(`--sftp-key ${opts.sftpKey}: not a PEM/OpenSSH private key`);
    tree.file(SFTP_KEY, key, 0o600, "skeleton");
  }
  if (opts.sftpHostKey) {
    if (!/^SHA256:[A-Za-z0-9+/]{43}$/.test(opts.sftpHostKey)) throw new BuildError(`--sftp-host-key expects a fingerprint as ssh-keygen -lf prints it (SHA256:<43 base64 chars>), got ${opts.sftpHostKey}`);
    tree.file(SFTP_HOST_KEY, new TextEncoder().encode(opts.sftpHostKey + "\n"), 0o644, "skeleton");
  }
}

function addEmergencyPassword(tree: InitrdTree, hash: string | undefined): void {
  if (hash === undefined) return;
  // Checked with the init's own pattern: a hash it could not read would lock
  // every console of the fleet.
  if (!ARGON2ID_HASH.test(hash)) {
    throw new BuildError(`--emergency-password-hash expects an argon2id hash as Bun.password.hash writes it ($argon2id$v=19$m=…,t=…,p=…$salt$hash), got ${JSON.stringify(hash.slice(0, 24))}…`);
  }
  tree.file(EMERGENCY_PASSWORD_HASH, new TextEncoder().encode(hash + "\n"), 0o600, "skeleton");
}

export interface BuildResult {
  out: string;
  kernelVersion: string;
  buildId: string;
  breakdown: Map<string, number>;
  uncompressed: number;
  compressed: number;
}

export async function buildInitrd(opts: BuildOptions): Promise<BuildResult> {
  const log = opts.log ?? ((l: string) => console.log(l));
  const kver = opts.kernelVersion ?? newestKernel(opts.modulesRoot);
  if (!fs.existsSync(path.join(opts.modulesRoot, kver, "modules.dep"))) {
    throw new BuildError(`--kernel-version ${kver}: no ${path.join(opts.modulesRoot, kver, "modules.dep")}; installed: ${safeList(opts.modulesRoot)}`);
  }
  const arch = opts.arch ?? "x64";
  const tree = new InitrdTree(opts.sysroot, undefined, { searchDirs: searchDirsFor(arch), machine: ARCH_SPECS[arch].elfMachine });
  addSkeleton(tree);
  addRemoteUsr(tree, opts);
  addEmergencyPassword(tree, opts.emergencyPasswordHash);

  let initSize = 0;
  if (opts.referenceInit) {
    tree.file(SHIM_PATH, new Uint8Array(fs.readFileSync(opts.referenceInit)), 0o755, "init script");
  } else {
    if (!opts.initBinary) throw new BuildError("no init: pass the compiled init (initBinary) or a reference init script");
    tree.builtBinary(opts.initBinary, INIT_PATH, "bun init");
    initSize = fs.statSync(opts.initBinary).size;
    tree.file(SHIM_PATH, new TextEncoder().encode(SHIM), 0o755, "skeleton");
  }
  addBusybox(tree, opts.busybox, arch);
  for (const [candidates, dest] of opts.referenceInit ? [...TOOLS, ...REFERENCE_TOOLS] : TOOLS) tree.hostBinary(firstExisting(tree, candidates), dest, "tools");
  for (const l of KMOD_LINKS) tree.symlink(`/sbin/${l}`, "/bin/kmod", "tools");
  // The compiled init is a glibc program too: its libraries join the closure.
  tree.addLibraries();
  const { baseModules } = addModules(tree, opts, kver, log);
  // Last but for config.json, and before the build id, which they count in.
  addExtraFiles(tree, opts.extraFiles ?? []);

  const buildId = createHash("sha256")
    .update(
      Buffer.concat(
        encodeNewc(tree.list())
          .filter((p) => p.length < 1 << 20)
          .map((p) => Buffer.from(p)),
      ),
    )
    .update(String(initSize))
    .digest("hex")
    .slice(0, 16);
  const config: InitrdConfig = { verityHashOffset: opts.verityHashOffset, buildId, kernelVersion: kver, ...(opts.profile ? { profile: opts.profile } : {}), arch, baseModules };
  tree.file(CONFIG_PATH, new TextEncoder().encode(JSON.stringify(config, null, 2) + "\n"), 0o644, "skeleton");

  fs.mkdirSync(path.dirname(opts.out), { recursive: true });
  // The early microcode archive goes first and uncompressed: the kernel's early loader reads only that.
  const kernelConfigPath = path.join(opts.sysroot, "boot", `config-${kver}`);
  const ucode = microcodeFor(opts.microcode ?? { kind: "none" }, { arch, kernelConfig: fs.existsSync(kernelConfigPath) ? fs.readFileSync(kernelConfigPath, "utf8") : null });
  if (opts.microcode) log(ucode.note);
  const early = ucode.entries.length > 0 ? encodeNewc(ucode.entries, { mtime: opts.sourceDateEpoch }) : [];
  if ((opts.layout ?? DEFAULT_LAYOUT) === "payload" && !opts.referenceInit) {
    const modulesDep = tree.entries.get(`/lib/modules/${kver}/modules.dep`);
    const order = bootModuleOrder(modulesDep?.kind === "file" ? new TextDecoder().decode(modulesDep.data) : "", ["loop", "squashfs"]);
    const split = splitPayload([...tree.entries.values()], order.map((rel) => `/lib/modules/${kver}/${rel}`));
    tree.file(SHIM_PATH, new TextEncoder().encode(shimScript({ modules: split.bootModules })), 0o755, "skeleton");
    const shim = tree.entries.get(SHIM_PATH)!;
    const outer = split.outer.map((e) => (e.path === SHIM_PATH ? shim : e));
    const image = makeSquashfs(split.payload, opts);
    const parts = encodeNewc(outer, { mtime: opts.sourceDateEpoch });
    const uncompressed = parts.reduce((n, p) => n + p.length, 0) + image.length;
    await compressTo(parts, opts.out, opts.compress, opts.compressLevel, early);
    // The kernel takes an uncompressed archive after a compressed one only at
    // a 4-byte boundary (zero bytes between archives are skipped).
    const fd = fs.openSync(opts.out, "a");
    try {
      const size = fs.fstatSync(fd).size;
      fs.writeSync(fd, new Uint8Array((4 - (size % 4)) % 4));
      for (const part of encodeNewc([{ kind: "file", path: PAYLOAD_IMAGE, mode: 0o444, data: image }], { mtime: opts.sourceDateEpoch })) fs.writeSync(fd, part);
    } finally {
      fs.closeSync(fd);
    }
    const breakdown = tree.breakdown();
    breakdown.set("payload image", image.length);
    log(`payload layout: ${(image.length / 1048576).toFixed(1)} MiB squashfs (${split.payload.length} entries), ${outer.length} entries in the compressed archive, shim loads ${split.bootModules.map((m) => path.posix.basename(m)).join(", ") || "no modules"}`);
    return { out: opts.out, kernelVersion: kver, buildId, breakdown, uncompressed, compressed: fs.statSync(opts.out).size };
  }
  const parts = encodeNewc(tree.list(), { mtime: opts.sourceDateEpoch });
  const uncompressed = parts.reduce((n, p) => n + p.length, 0);
  await compressTo(parts, opts.out, opts.compress, opts.compressLevel, early);
  const compressed = fs.statSync(opts.out).size;
  return { out: opts.out, kernelVersion: kver, buildId, breakdown: tree.breakdown(), uncompressed, compressed };
}

/** The payload image: the entries written to a scratch tree, then mksquashfs with fixed owners and times. */
function makeSquashfs(entries: CpioEntry[], opts: BuildOptions): Uint8Array {
  const stage = fs.mkdtempSync(path.join(os.tmpdir(), "bunboot-payload-"));
  try {
    const root = path.join(stage, "root");
    fs.mkdirSync(root);
    for (const e of [...entries].sort((a, b) => a.path.localeCompare(b.path))) {
      const p = path.join(root, e.path);
      fs.mkdirSync(path.dirname(p), { recursive: true });
      if (e.kind === "dir") fs.mkdirSync(p, { recursive: true, mode: e.mode ?? 0o755 });
      else if (e.kind === "file") fs.writeFileSync(p, e.data, { mode: e.mode ?? 0o644 });
      else if (e.kind === "symlink") fs.symlinkSync(e.target, p);
      else throw new BuildError(`internal: a ${e.kind} node cannot go into the payload image (${e.path})`);
    }
    const out = path.join(stage, "payload.img");
    const bs = opts.payloadBlockSize ?? 1 << 20;
    if (!Number.isInteger(Math.log2(bs)) || bs < 4096 || bs > 1 << 20) throw new BuildError(`--payload-block-size must be a power of two from 4096 to 1048576, got ${bs}`);
    const compress = opts.payloadCompress ?? opts.compress;
    // --compress-level is the archive's; it serves the image only when both use one compressor.
    const level = compress === opts.compress ? opts.compressLevel : undefined;
    const comp =
      compress === "none"
        ? ["-noI", "-noD", "-noF", "-noX"]
        : compress === "xz"
          ? ["-comp", "xz"]
          : ["-comp", compress, "-Xcompression-level", String(level ?? (compress === "zstd" ? 19 : 9))];
    const argv = ["mksquashfs", root, out, "-noappend", "-quiet", "-no-progress", "-all-root", "-no-xattrs", "-mkfs-time", String(opts.sourceDateEpoch ?? 0), "-all-time", String(opts.sourceDateEpoch ?? 0), "-b", String(bs), ...comp];
    // mksquashfs 4.5+ reads SOURCE_DATE_EPOCH itself and refuses it beside
    // the explicit times: the times are ours, given above.
    const { SOURCE_DATE_EPOCH: _epoch, ...env } = process.env;
    const r = Bun.spawnSync(argv, { stderr: "pipe", stdout: "pipe", env });
    if (r.exitCode !== 0) throw new BuildError(`${argv.join(" ")} failed (${r.exitCode}): ${r.stderr.toString()}${r.stdout.toString()} (mksquashfs comes with squashfs-tools)`);
    return new Uint8Array(fs.readFileSync(out));
  } finally {
    fs.rmSync(stage, { recursive: true, force: true });
  }
}

function safeList(dir: string): string {
  try {
    return fs.readdirSync(dir).join(", ") || "none";
  } catch {
    return "none";
  }
}

export function compressorArgv(kind: Compression, level?: number): string[] | null {
  switch (kind) {
    case "zstd":
      return ["zstd", "-q", "-c", "-T0", `-${level ?? 19}`];
    case "xz":
      // The kernel's xz decoder only knows CRC32 checks.
      return ["xz", "-q", "-c", "-T0", "--check=crc32", `-${level ?? 6}`];
    case "gzip":
      return ["gzip", "-c", "-n", `-${level ?? 9}`];
    case "none":
      return null;
  }
}

/**
 * Writes `prefix` as it is (an uncompressed archive the kernel must find at
 * the start, such as early microcode), then `parts` through the compressor.
 */
export async function compressTo(parts: Uint8Array[], out: string, kind: Compression, level?: number, prefix: Uint8Array[] = []): Promise<void> {
  const argv = compressorArgv(kind, level);
  if (!argv) {
    const fd = fs.openSync(out, "w");
    try {
      for (const p of [...prefix, ...parts]) fs.writeSync(fd, p);
    } finally {
      fs.closeSync(fd);
    }
    return;
  }
  // An fd opened with O_TRUNC: Bun.file() as stdout does not truncate, and a
  // smaller image over a larger one kept the old tail, which the kernel
  // then read as a corrupt second archive. The compressor writes from the
  // fd's offset, after the prefix.
  const outFd = fs.openSync(out, "w");
  for (const p of prefix) fs.writeSync(outFd, p);
  const proc = Bun.spawn(argv, { stdin: "pipe", stdout: outFd, stderr: "pipe" });
  for (const p of parts) {
    proc.stdin.write(p);
    await proc.stdin.flush();
  }
  await proc.stdin.end();
  const code = await proc.exited;
  fs.closeSync(outFd);
  if (code !== 0) throw new BuildError(`${argv.join(" ")} failed (${code}): ${await new Response(proc.stderr).text()}`);
}

export { FLATCAR_VERITY_HASH_OFFSET };
