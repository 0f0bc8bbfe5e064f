// While a device is awaited, the second most useful hint after "no driver
// took this controller" is "a driver took it, and no disk showed up behind
// it": the controller works, but the disk is missing, not yet scanned, or
// the emulation/firmware hides it. SCSI hosts (which also stand for SATA,
// USB mass storage, SAS and RAID adapters), NVMe controllers and MMC hosts
// are the controllers a disk hangs off; virtio-blk has no host in between.
import fs from "node:fs";
import { boundDriver, readSysValue } from "../fsutil.ts";

export interface DisklessHost {
  kind: "scsi" | "nvme" | "mmc";
  /** host0, nvme0, mmc0 */
  name: string;
  /** The driver behind it (proc_name for SCSI hosts, the bound driver otherwise). */
  driver: string;
  /** SCSI: how many SCSI devices the host has (CD-ROMs and other non-disks, or disks sd_mod has not taken). */
  devices: number;
}

function list(dir: string): string[] {
  try {
    return fs.readdirSync(dir).sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
  } catch {
    return [];
  }
}

function driverOf(deviceDir: string): string {
  return boundDriver(deviceDir) ?? "no driver";
}

/**
 * Controllers with a driver and no block device behind them, read from
 * sysfs under `sys` (a seam for tests). A driver's SCSI or MMC hosts are
 * reported only when none of them has a disk: an AHCI controller has six
 * ports, and five empty ones beside the disk are normal.
 */
export function findDisklessHosts(sys = "/sys"): DisklessHost[] {
  const scsiDevices = list(`${sys}/bus/scsi/devices`).filter((d) => /^\d+:\d+:\d+:\d+$/.test(d));
  const scsi: Array<DisklessHost & { hasDisk: boolean }> = list(`${sys}/class/scsi_host`).map((host) => {
    const n = host.replace(/^host/, "");
    const mine = scsiDevices.filter((d) => d.split(":")[0] === n);
    // A disk (SCSI type 0, or 14 for RBC) with its block device; a CD-ROM
    // drive (sr0) has a block device too, but an empty one beside the
    // missing disk must not hide the other ports of its driver.
    const hasDisk = mine.some((d) => ["0", "14"].includes(readSysValue(`${sys}/bus/scsi/devices/${d}/type`) ?? "") && list(`${sys}/bus/scsi/devices/${d}/block`).length > 0);
    const driver = readSysValue(`${sys}/class/scsi_host/${host}/proc_name`) || "unknown driver";
    return { kind: "scsi", name: host, driver, devices: mine.length, hasDisk };
  });
  const nvme = list(`${sys}/class/nvme`).map((ctrl) => ({
    kind: "nvme" as const,
    name: ctrl,
    driver: driverOf(`${sys}/class/nvme/${ctrl}/device`),
    devices: 0,
    // Namespaces are nvme0n1, or nvme0c0n1 under native multipath.
    hasDisk: list(`${sys}/class/nvme/${ctrl}`).some((e) => /^nvme\d+(c\d+)?n\d+$/.test(e)),
  }));
  const mmc = list(`${sys}/class/mmc_host`).map((host) => ({
    kind: "mmc" as const,
    name: host,
    driver: driverOf(`${sys}/class/mmc_host/${host}/device`),
    devices: 0,
    // A card shows up as mmc0:0001 under its host.
    hasDisk: list(`${sys}/class/mmc_host/${host}`).some((e) => e.startsWith(`${host}:`)),
  }));
  const out: DisklessHost[] = [];
  // An NVMe controller without a namespace is odd whatever its siblings have;
  // SCSI hosts (ports) and MMC hosts (slots) are empty all the time.
  for (const [group, perDriver] of [[scsi, true], [nvme, false], [mmc, true]] as const) {
    const driversWithDisk = new Set(group.filter((h) => h.hasDisk).map((h) => h.driver));
    for (const { hasDisk, ...h } of group) if (!hasDisk && !(perDriver && driversWithDisk.has(h.driver))) out.push(h);
  }
  return out;
}

/** One line for the wait's report, or null when every controller has a disk; pure. */
export function describeDisklessHosts(hosts: DisklessHost[]): string | null {
  if (hosts.length === 0) return null;
  const byKey = new Map<string, DisklessHost[]>();
  for (const h of hosts) {
    const key = `${h.kind} ${h.driver}`;
    byKey.set(key, [...(byKey.get(key) ?? []), h]);
  }
  const parts = [...byKey.values()].map((group) => {
    const { kind, driver } = group[0]!;
    const names = group.map((h) => h.name).join(" ");
    if (kind === "nvme") return `NVMe ${names} (${driver}): no namespace`;
    if (kind === "mmc") return `MMC ${names} (${driver}): no card`;
    const scsiDevices = group.reduce((n, h) => n + h.devices, 0);
    const what = scsiDevices === 0 ? "no SCSI device found on its bus" : `${scsiDevices} SCSI device${scsiDevices > 1 ? "s" : ""}, none a disk`;
    return `SCSI ${names} (${driver}): ${what}`;
  });
  return `controllers with a driver but no disk: ${parts.join("; ")}`;
}
