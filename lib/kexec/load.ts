// The effectful half of `bunboot kexec`: find the disk, read the GPT, the ESP and the OEM
// partition, then load the kernel with kexec_file_load, write the tries counter and reboot into
// it. The decisions are in plan.ts and gpt-copies.ts.
import { readFdAt } from "../devices/blockdevs.ts";
import fs from "node:fs";
import path from "node:path";
import { splitCmdline } from "../cmdline.ts";
import { parseDeviceRef, type DeviceRef } from "../devices/ref.ts";
import { isNetworkUsrUrl, isNfsExportRef } from "../netusr/ref.ts";
import { listBlockDevices, readAt, type BlockDevice } from "../devices/blockdevs.ts";
import { FLATCAR_USR_TYPE_GUID } from "../devices/gpt.ts";
import { matchDevices, refNeedsFsProbe } from "../devices/match.ts";
import { probeFilesystem, PROBE_BYTES } from "../devices/superblock.ts";
import { run } from "../spawn.ts";
import * as sys from "../sys/index.ts";
import { planAttributeWrites, readGptDisk, type DiskWrite, type GptDisk } from "./gpt-copies.ts";
import {
  assembleCmdline,
  chooseSlot,
  ESP_TYPE_GUID,
  formatSlot,
  kernelPathForSlot,
  parseGrubCfg,
  slotState,
  verityHashFromKernel,
  verityHashReadLength,
  kernelFormatProblem,
  type GrubVars,
  type Platform,
} from "./plan.ts";
import { messageOf } from "../errors.ts";
import { readMountinfo } from "../mountinfo.ts";
import { readSysValue } from "../fsutil.ts";

export class KexecError extends Error {
  override name = "KexecError";
}

export interface KexecOptions {
  /** Whole disk (block device or image file) holding the GPT; default: the disk of the booted /usr. */
  disk?: string;
  /** Directories where the ESP / OEM partition are already mounted (skip finding and mounting). */
  espDir?: string;
  oemDir?: string;
  initrd?: string;
  dryRun: boolean;
  fallback: boolean;
  loadOnly: boolean;
}

export interface KexecPlan {
  disk: string;
  gpt: GptDisk;
  slotLine: string;
  slotName: string;
  kernelOnEsp: string;
  kernelFile: string;
  initrd: string | null;
  cmdline: string;
  gptChange: string;
  writes: DiskWrite[];
  warnings: string[];
}

const say = (s: string) => console.log(`bunboot kexec: ${s}`);

// ---------------------------------------------------------------------------------------------
// Finding the disk

/** The device the running system booted /usr from, as named on /proc/cmdline. */
function bootedUsrRef(): DeviceRef {
  const text = readSysValue("/proc/cmdline");
  if (text === null) throw new KexecError("cannot read /proc/cmdline (is /proc mounted?); pass --disk");
  let ref: DeviceRef | null = null;
  for (const w of splitCmdline(text)) {
    if ((w.key === "verity.usr" || w.key === "mount.usr" || w.key === "usr") && w.value) {
      if (w.value === "/dev/mapper/usr") continue; // the verity mapping, not the partition
      // A diskless /usr has no partition table whose slots a kexec could switch.
      if (isNetworkUsrUrl(w.value) || (w.key !== "verity.usr" && isNfsExportRef(w.value))) {
        throw new KexecError(`/usr comes from the network (${w.key}=${w.value}), not from a disk with A/B slots; pass --disk to name one`);
      }
      ref = parseDeviceRef(w.key, w.value);
      if (w.key === "verity.usr") break;
    }
  }
  if (!ref) throw new KexecError("/proc/cmdline names no /usr partition (verity.usr= or mount.usr=); pass --disk");
  return ref;
}

interface DiskInfo {
  dev: string;
  /** Partition devices by partition number, when the disk is a block device. */
  partitions: Map<number, BlockDevice>;
  sectorSize: number;
  bytes: number;
}

function diskInfo(dev: string, devices: BlockDevice[] | null): DiskInfo {
  let st: fs.Stats;
  try {
    st = fs.statSync(dev);
  } catch (e) {
    throw new KexecError(`--disk ${dev}: ${messageOf(e)}`);
  }
  if (st.isFile()) return { dev, partitions: new Map(), sectorSize: 512, bytes: st.size };
  if (!st.isBlockDevice()) throw new KexecError(`--disk ${dev} is neither a block device nor an image file`);
  const name = path.basename(fs.realpathSync(dev));
  const sectorSize = Number(readSysValue(`/sys/class/block/${name}/queue/logical_block_size`) ?? "512") || 512;
  const bytes = Number(readSysValue(`/sys/class/block/${name}/size`) ?? "0") * 512;
  const partitions = new Map<number, BlockDevice>();
  for (const d of devices ?? listBlockDevices({ probeFs: false })) {
    if (d.isPartition && d.disk === name && d.partNumber !== undefined) partitions.set(d.partNumber, d);
  }
  return { dev, partitions, sectorSize, bytes };
}

function findDisk(opts: KexecOptions): DiskInfo {
  if (opts.disk) return diskInfo(opts.disk, null);
  const ref = bootedUsrRef();
  const devices = listBlockDevices({ probeFs: refNeedsFsProbe(ref) });
  const hits = matchDevices(ref, devices).filter((d) => d.isPartition && d.disk);
  if (hits.length !== 1) {
    throw new KexecError(`the booted /usr partition from /proc/cmdline ${hits.length === 0 ? "is not present" : `matches ${hits.length} partitions`}; pass --disk`);
  }
  return diskInfo(`/dev/${hits[0]!.disk}`, devices);
}

// ---------------------------------------------------------------------------------------------
// Reading files from the ESP and the OEM partition

/** Mount points of the running system, by "major:minor". */
function mountPoints(): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of readMountinfo()) {
    if (!out.has(m.majorMinor)) out.set(m.majorMinor, m.mountPoint);
  }
  return out;
}

interface Mounted {
  dir: string;
  release(): void;
}

/** The partition's files: where it is already mounted, or a temporary read-only mount. */
function mountPartition(part: BlockDevice, what: string): Mounted {
  const majMin = readSysValue(`/sys/class/block/${part.name}/dev`);
  const existing = majMin ? mountPoints().get(majMin) : undefined;
  if (existing) return { dir: existing, release() {} };
  const fsType = probeFilesystem(readAt(part.devPath, 0, PROBE_BYTES))?.type;
  if (!fsType) throw new KexecError(`${what} ${part.devPath} holds no filesystem we recognise`);
  const base = fs.existsSync("/run") ? "/run" : "/tmp";
  const dir = fs.mkdtempSync(path.join(base, `bunboot-kexec-${what.toLowerCase()}-`));
  try {
    sys.mount(part.devPath, dir, fsType, sys.MS.RDONLY | sys.MS.NOSUID | sys.MS.NODEV | sys.MS.NOEXEC, null);
  } catch (e) {
    fs.rmdirSync(dir);
    throw new KexecError(`cannot mount the ${what} ${part.devPath} (${fsType}) read-only: ${messageOf(e)}`);
  }
  return {
    dir,
    release() {
      try {
        sys.umount(dir);
        fs.rmdirSync(dir);
      } catch {
        // Cleanup after the load or before a reboot: a mount still busy stays
        // (read-only, under /run or /tmp), and the kexec or reboot goes on.
      }
    },
  };
}

function partitionDevice(disk: DiskInfo, index: number, what: string, flag: string): BlockDevice {
  const d = disk.partitions.get(index);
  if (!d) throw new KexecError(`the ${what} is partition ${index} of ${disk.dev}, but no device node for it was found; pass ${flag} with the directory where it is mounted`);
  return d;
}

function platform(): Platform {
  return fs.existsSync("/sys/firmware/efi") ? "efi" : "pc";
}

// ---------------------------------------------------------------------------------------------

/** Builds the plan; `hold` receives mounts that must stay until the kernel is loaded. */
export function makePlan(opts: KexecOptions, hold: Mounted[]): KexecPlan {
  const disk = findDisk(opts);
  if (disk.bytes <= 0) throw new KexecError(`cannot tell the size of ${disk.dev}`);
  const fd = fs.openSync(disk.dev, "r");
  let gpt: GptDisk;
  try {
    gpt = readGptDisk((offset, length) => readFdAt(fd, offset, length), disk.bytes, disk.sectorSize);
  } catch (e) {
    throw new KexecError(`${disk.dev}: ${messageOf(e)}`);
  } finally {
    fs.closeSync(fd);
  }
  const warnings = [...gpt.warnings];
  const choice = chooseSlot(gpt.good.entries);
  const slot = slotState(choice.entry);

  // The ESP: the first partition of the EFI system type, as GRUB's $root.
  let espDir = opts.espDir;
  if (!espDir) {
    const esp = gpt.good.entries.find((e) => e.typeGuid === ESP_TYPE_GUID);
    if (!esp) throw new KexecError(`${disk.dev} has no EFI system partition (type ${ESP_TYPE_GUID}); pass --esp`);
    const m = mountPartition(partitionDevice(disk, esp.index, "ESP", "--esp"), "ESP");
    hold.push(m);
    espDir = m.dir;
  }
  const kernelOnEsp = kernelPathForSlot(slot.partUuid);
  const kernelFile = path.join(espDir, kernelOnEsp);
  if (!fs.existsSync(kernelFile)) throw new KexecError(`the kernel for ${slot.name} is missing: ${kernelFile}`);
  const head = readAt(kernelFile, 0, verityHashReadLength(process.arch));
  // Said in the plan (and by --dry-run); the load itself then fails with ENOEXEC and falls back
  // to a firmware reboot like any other refused image.
  const formatProblem = kernelFormatProblem(head, process.arch);
  if (formatProblem) warnings.push(`${kernelFile}: ${formatProblem}`);
  const verityHash = verityHashFromKernel(head, process.arch);
  if (!verityHash) warnings.push(`${kernelFile} carries no verity hash; the command line gets no verity.usrhash= (as with GRUB)`);
  const firstBoot = fs.existsSync(path.join(espDir, "flatcar/first_boot")) || fs.existsSync(path.join(espDir, "coreos/first_boot"));

  // The OEM partition (label OEM) may carry a grub.cfg with oem_id, linux_append, linux_console.
  let oemVars: GrubVars = {};
  let oemDir = opts.oemDir;
  if (!oemDir) {
    const oem = gpt.good.entries.find((e) => e.name === "OEM");
    if (oem) {
      const m = mountPartition(partitionDevice(disk, oem.index, "OEM partition", "--oem"), "OEM");
      hold.push(m);
      oemDir = m.dir;
    }
  }
  if (oemDir) {
    const cfg = path.join(oemDir, "grub.cfg");
    if (fs.existsSync(cfg)) {
      const r = parseGrubCfg(fs.readFileSync(cfg, "utf8"), {}, cfg);
      oemVars = r.vars;
      warnings.push(...r.warnings);
    }
  }

  if (opts.initrd !== undefined && !fs.existsSync(opts.initrd)) throw new KexecError(`--initrd ${opts.initrd}: no such file`);
  const cmdline = assembleCmdline({ usrPartUuid: slot.partUuid, oem: oemVars, firstBoot, verityHash, platform: platform(), arch: process.arch });
  const writes = choice.newAttributes === null ? [] : planAttributeWrites(gpt, slot.index, choice.newAttributes);
  const gptChange =
    choice.newAttributes === null
      ? "none (the slot is marked successful and has no tries to count down)"
      : `${slot.name} tries ${slot.tries} -> ${slot.tries - 1}, written to the backup GPT, then the primary`;
  return {
    disk: disk.dev,
    gpt,
    slotLine: formatSlot(slot),
    slotName: slot.name,
    kernelOnEsp,
    kernelFile,
    initrd: opts.initrd ?? null,
    cmdline,
    gptChange,
    writes,
    warnings,
  };
}

export function printPlan(p: KexecPlan, dryRun: boolean): void {
  const lines = [
    `plan${dryRun ? " (dry run: nothing is written or loaded)" : ""}:`,
    `  disk:       ${p.disk} (${p.gpt.sectorSize}-byte sectors, primary GPT ${p.gpt.primary ? "valid" : "CORRUPT"}, backup GPT ${p.gpt.backup ? "valid" : "CORRUPT"})`,
    ...p.gpt.good.entries.filter((e) => e.typeGuid === FLATCAR_USR_TYPE_GUID).map((e) => `  usr slot:   ${formatSlot(slotState(e))}`),
    `  slot:       ${p.slotLine}`,
    `  kernel:     ${p.kernelOnEsp} on the ESP (${p.kernelFile})`,
    `  initrd:     ${p.initrd ?? "none (the kernel embeds its initramfs: KEXEC_FILE_NO_INITRAMFS)"}`,
    `  cmdline:    ${p.cmdline}`,
    `  GPT change: ${p.gptChange}`,
    ...p.warnings.map((w) => `  warning:    ${w}`),
  ];
  for (const l of lines) say(l);
}

// ---------------------------------------------------------------------------------------------
// Loading and rebooting

/** errno names for which a firmware reboot still works, and what they mean for kexec. */
function fallbackReason(e: sys.SysError): string | null {
  switch (e.code) {
    case "ENOSYS":
      return "this kernel has no kexec_file_load (built without CONFIG_KEXEC_FILE)";
    case "EPERM": {
      if (readSysValue("/proc/sys/kernel/kexec_load_disabled") === "1") return "kexec is disabled on this system (kernel.kexec_load_disabled=1)";
      const lockdown = readSysValue("/sys/kernel/security/lockdown");
      if (lockdown && !lockdown.includes("[none]")) return `the kernel is locked down (${lockdown}) and refuses this kernel image`;
      return "not permitted (needs root with CAP_SYS_BOOT)";
    }
    case "EBUSY":
      return "the kexec machinery is busy (another image is being loaded)";
    case "ENOEXEC":
      return `the kernel image is in a format this kernel cannot load (${process.arch === "arm64" ? "arm64 takes only a raw Image" : "x86_64 takes a bzImage"})`;
    case "EKEYREJECTED":
      return "the kernel image's signature was rejected (lockdown or KEXEC_SIG_FORCE: only signed kernels load)";
    default:
      return null;
  }
}

function writeGpt(dev: string, writes: DiskWrite[]): void {
  const fd = fs.openSync(dev, "r+");
  try {
    for (const w of writes) {
      const n = fs.writeSync(fd, w.bytes, 0, w.bytes.length, w.offset);
      if (n !== w.bytes.length) throw new KexecError(`short write of the ${w.what} at byte ${w.offset} of ${dev}`);
      // Ordered on the medium: the backup must be durable before the primary changes.
      fs.fsyncSync(fd);
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** Best effort before a reboot that skips the init system: flush, then make disk filesystems read-only. */
function quiesce(): void {
  sys.sync();
  // Deepest (latest) mounts first. Writable means both the mount and its superblock are rw.
  for (const m of readMountinfo().reverse()) {
    if (!m.source.startsWith("/dev/") || !m.options.includes("rw") || !m.superOptions.includes("rw")) continue;
    try {
      sys.mount(m.source, m.mountPoint, null, sys.MS.REMOUNT | sys.MS.RDONLY, null);
    } catch {
      // Busy filesystems stay rw; the sync above already flushed them.
    }
  }
  sys.sync();
}

function systemdRunning(): boolean {
  return fs.existsSync("/run/systemd/system") && fs.existsSync("/usr/bin/systemctl");
}

async function normalReboot(): Promise<number> {
  say("falling back to a normal reboot");
  if (systemdRunning()) {
    const r = await run(["/usr/bin/systemctl", "reboot"]);
    return r.code === 0 ? 0 : 1;
  }
  sys.sync();
  sys.reboot(sys.RB.AUTOBOOT);
  return 1;
}

export async function kexec(opts: KexecOptions): Promise<number> {
  const hold: Mounted[] = [];
  let plan: KexecPlan;
  try {
    plan = makePlan(opts, hold);
    printPlan(plan, opts.dryRun);
    if (opts.dryRun) return 0;

    const kfd = fs.openSync(plan.kernelFile, "r");
    const ifd = plan.initrd ? fs.openSync(plan.initrd, "r") : null;
    try {
      sys.kexecFileLoad(kfd, ifd, plan.cmdline, ifd === null ? sys.KEXEC_FILE_NO_INITRAMFS : 0);
    } catch (e) {
      if (!(e instanceof sys.SysError)) throw e;
      const reason = fallbackReason(e);
      if (reason === null) throw new KexecError(`loading ${plan.kernelFile} failed: ${e.message}`);
      say(`kexec is not possible: ${reason} [${e.code}]`);
      if (!opts.fallback) {
        say("not rebooting (--no-fallback)");
        return 3;
      }
      for (const m of hold.splice(0)) m.release();
      return await normalReboot();
    } finally {
      fs.closeSync(kfd);
      if (ifd !== null) fs.closeSync(ifd);
    }
    say(`loaded ${plan.kernelOnEsp}${plan.initrd ? ` with ${plan.initrd}` : ""}`);
  } finally {
    // The kernel copied the image at load time; the ESP and OEM are no longer needed.
    for (const m of hold.splice(0)) m.release();
  }

  if (plan.writes.length > 0) {
    try {
      writeGpt(plan.disk, plan.writes);
    } catch (e) {
      // Rebooting into the slot without counting the try could loop forever on a bad update.
      try {
        sys.kexecFileUnload();
      } catch {
        // Nothing loaded any more is what is wanted; the GPT error below is what to report.
      }
      throw new KexecError(`writing the GPT on ${plan.disk} failed, kexec image unloaded, not rebooting: ${messageOf(e)}`);
    }
    say(`GPT updated: ${plan.gptChange}`);
  }
  if (opts.loadOnly) {
    say("loaded; `systemctl kexec` (or reboot(2) with LINUX_REBOOT_CMD_KEXEC) starts it");
    return 0;
  }
  say(`rebooting into ${plan.slotName} via kexec`);
  if (systemdRunning()) {
    // systemd stops services and unmounts cleanly, then uses the image already loaded.
    const r = await run(["/usr/bin/systemctl", "kexec"]);
    return r.code === 0 ? 0 : 1;
  }
  quiesce();
  sys.reboot(sys.RB.KEXEC);
  return 1; // not reached: reboot(2) either does not return or throws
}
