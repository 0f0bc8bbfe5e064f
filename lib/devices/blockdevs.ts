// What block devices exist right now, with the identities a DeviceRef can
// name: partition UUID and label (from the uevent, or from the GPT when the
// kernel does not export them, as Debian's 6.1 does not), and filesystem
// UUID and label from the superblock.
import fs from "node:fs";
import { readOptional, readSysValue } from "../fsutil.ts";
import { parseUeventFile } from "../uevent/parse.ts";
import { parseGptHeader, parseGptEntries, type GptEntry } from "./gpt.ts";
import { probeFilesystem, PROBE_BYTES, type FsIdentity } from "./superblock.ts";

export interface BlockDevice {
  name: string;
  devPath: string;
  isPartition: boolean;
  disk?: string;
  partNumber?: number;
  partUuid?: string;
  partLabel?: string;
  fs?: FsIdentity | null;
  sizeBytes: number;
}

/** Reads up to `length` bytes at `offset` of an open fd (short only at the end of the device). */
export function readFdAt(fd: number, offset: number, length: number): Uint8Array {
  const buf = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const n = fs.readSync(fd, buf, done, length - done, offset + done);
    if (n === 0) break;
    done += n;
  }
  return buf.subarray(0, done);
}

export function readAt(path: string, offset: number, length: number): Uint8Array {
  const fd = fs.openSync(path, "r");
  try {
    return readFdAt(fd, offset, length);
  } finally {
    fs.closeSync(fd);
  }
}

/** GPT entries of a whole disk, or null when it has no (valid) GPT. */
export function readGpt(diskDev: string, sectorSize: number): GptEntry[] | null {
  try {
    const header = parseGptHeader(readAt(diskDev, sectorSize, sectorSize));
    const bytes = header.entryCount * header.entrySize;
    return parseGptEntries(header, readAt(diskDev, Number(header.entriesLba) * sectorSize, bytes));
  } catch {
    return null;
  }
}

/** MBR disk signature, for PARTUUID=<sig>-<nn> on DOS-labelled disks. */
function mbrSignature(diskDev: string): string | null {
  try {
    const mbr = readAt(diskDev, 0, 512);
    if (mbr[510] !== 0x55 || mbr[511] !== 0xaa) return null;
    const sig = new DataView(mbr.buffer, mbr.byteOffset).getUint32(440, true);
    return sig === 0 ? null : sig.toString(16).padStart(8, "0");
  } catch {
    return null;
  }
}

export interface ListOptions {
  /** Read superblocks (needed for UUID=/LABEL=; costs one read per device). */
  probeFs: boolean;
}

export function listBlockDevices(opts: ListOptions): BlockDevice[] {
  let names: string[];
  try {
    names = fs.readdirSync("/sys/class/block").sort();
  } catch {
    return [];
  }
  const gptCache = new Map<string, GptEntry[] | null>();
  const devices: BlockDevice[] = [];
  for (const name of names) {
    const ue = parseUeventFile(readOptional(`/sys/class/block/${name}/uevent`) ?? "");
    const devName = ue.DEVNAME ?? name;
    const devPath = `/dev/${devName}`;
    const sizeSectors = Number(readSysValue(`/sys/class/block/${name}/size`) ?? "0");
    // Unattached loop devices and empty drives cannot hold anything.
    if (sizeSectors === 0) continue;
    const dev: BlockDevice = { name, devPath, isPartition: ue.DEVTYPE === "partition", sizeBytes: sizeSectors * 512 };
    if (dev.isPartition) {
      // /sys/class/block/vda3 -> ../../devices/.../block/vda/vda3: the parent is the disk.
      let link = "";
      try {
        link = fs.readlinkSync(`/sys/class/block/${name}`);
      } catch {
        // Gone since the listing (a hot-unplug): listed without its disk,
        // and absent from the next listing. Device waits list often: no log.
      }
      const parts = link.split("/");
      dev.disk = parts[parts.length - 2];
      dev.partNumber = ue.PARTN ? Number(ue.PARTN) : undefined;
      dev.partLabel = ue.PARTNAME;
      dev.partUuid = ue.PARTUUID?.toLowerCase();
      if (dev.disk && dev.partNumber !== undefined && (dev.partUuid === undefined || dev.partLabel === undefined)) {
        if (!gptCache.has(dev.disk)) {
          const sector = Number(readSysValue(`/sys/block/${dev.disk}/queue/logical_block_size`) ?? "512") || 512;
          gptCache.set(dev.disk, readGpt(`/dev/${dev.disk}`, sector));
        }
        const entry = gptCache.get(dev.disk)?.find((e) => e.index === dev.partNumber);
        if (entry) {
          dev.partUuid ??= entry.partGuid;
          dev.partLabel ??= entry.name;
        } else if (dev.partUuid === undefined) {
          const sig = mbrSignature(`/dev/${dev.disk}`);
          if (sig) dev.partUuid = `${sig}-${dev.partNumber.toString(16).padStart(2, "0")}`;
        }
      }
    }
    if (opts.probeFs) {
      try {
        dev.fs = probeFilesystem(readAt(devPath, 0, PROBE_BYTES));
      } catch {
        dev.fs = null;
      }
    }
    devices.push(dev);
  }
  return devices;
}

/** One line per device for error messages: what a user could put in a DeviceRef. */
export function describeDevice(d: BlockDevice): string {
  const facts: string[] = [];
  if (d.partUuid) facts.push(`PARTUUID=${d.partUuid}`);
  if (d.partLabel) facts.push(`PARTLABEL=${d.partLabel}`);
  if (d.fs?.uuid) facts.push(`UUID=${d.fs.uuid}`);
  if (d.fs?.label) facts.push(`LABEL=${d.fs.label}`);
  if (d.fs?.type) facts.push(`TYPE=${d.fs.type}`);
  const mib = (d.sizeBytes / 1048576).toFixed(d.sizeBytes < 10485760 ? 1 : 0);
  return `${d.devPath} (${mib} MiB)${facts.length ? " " + facts.join(" ") : ""}`;
}
