// Both copies of a GPT (primary at LBA 1, backup at the last LBA), read through a callback so the
// logic stays pure and testable on image files, and the writes that change one entry's attributes
// in both copies. GRUB's gptprio.next behaves the same way: a corrupt copy does not stop the boot
// as long as the other one is valid, and when the tries counter is written both copies are written
// from the valid one, the backup first.
import { crc32 as crc32Of } from "../devices/bytes.ts";
import {
  GptError,
  gptEntriesByteLength,
  gptEntriesSectors,
  parseGptEntries,
  parseGptHeader,
  patchGptEntryAttributes,
  type GptEntry,
  type GptHeader,
} from "../devices/gpt.ts";
import { messageOf } from "../errors.ts";

/** Reads `length` bytes at byte `offset` of the disk (short reads return fewer bytes). */
export type ReadAt = (offset: number, length: number) => Uint8Array;

export interface GptCopy {
  which: "primary" | "backup";
  header: GptHeader;
  /** The raw header sector (one logical sector). */
  headerSector: Uint8Array;
  /** The raw entry array (entryCount * entrySize bytes). */
  entriesBytes: Uint8Array;
  entries: GptEntry[];
}

export interface GptDisk {
  sectorSize: number;
  /** LBA of the last sector of the disk, where a backup header belongs. */
  lastLba: bigint;
  /**
   * Where the backup header is, or is rebuilt: the primary's AlternateLBA when that can be a
   * backup's place (the last LBA, or past the usable area on a grown disk), else the last LBA.
   */
  backupLba: bigint;
  primary: GptCopy | null;
  backup: GptCopy | null;
  /** Why a copy was rejected (for the plan and error messages). */
  primaryError?: string;
  backupError?: string;
  /** Primary when valid, else the backup: what slot choice reads and what repairs copy from. */
  good: GptCopy;
  /** Problems worth telling the operator even though the GPT is usable. */
  warnings: string[];
}

/**
 * The checks parseGptHeader cannot make without knowing the disk and which copy it reads: a header
 * with a valid CRC can still put its entry array over partitions, where the write-back of that
 * array would destroy data, or describe a usable area the disk does not have.
 */
function checkPlacement(which: GptCopy["which"], h: GptHeader, sectorSize: number, lastLba: bigint): void {
  const n = gptEntriesSectors(h, sectorSize);
  const end = h.entriesLba + n - 1n;
  const array = `the entry array (LBA ${h.entriesLba}..${end}, ${h.entryCount} x ${h.entrySize} bytes)`;
  if (which === "primary") {
    if (h.entriesLba < 2n || end >= h.firstUsableLba) {
      throw new GptError(`PartitionEntryLBA ${h.entriesLba}: ${array} must lie between LBA 2 and FirstUsableLBA-1 = ${h.firstUsableLba - 1n}`);
    }
  } else if (h.entriesLba <= h.lastUsableLba || end >= h.myLba) {
    throw new GptError(`PartitionEntryLBA ${h.entriesLba}: ${array} must lie between LastUsableLBA+1 = ${h.lastUsableLba + 1n} and the backup header's LBA-1 = ${h.myLba - 1n}`);
  }
  // Either copy may have to rebuild the primary (header at LBA 1, entry array from LBA 2), so its
  // usable area must start after that room; the backup's room is checked where it is placed.
  if (h.firstUsableLba < 2n + n) {
    throw new GptError(`FirstUsableLBA ${h.firstUsableLba} must be at least ${2n + n}, after the protective MBR, the primary header and a ${n}-sector entry array`);
  }
  // Partitions past the end of the disk mean the table belongs to another (larger) disk.
  if (h.lastUsableLba >= lastLba) {
    throw new GptError(`LastUsableLBA ${h.lastUsableLba} must be before the last LBA ${lastLba} of the disk`);
  }
}

function readCopy(read: ReadAt, which: GptCopy["which"], lba: bigint, sectorSize: number, lastLba: bigint): GptCopy {
  // Checked before reading: an LBA from a corrupt header may be far past any disk, or past what a
  // JavaScript number holds exactly.
  if (lba > lastLba) throw new GptError(`${which} GPT header: LBA ${lba} is past the last LBA ${lastLba} of the disk`);
  const headerSector = read(Number(lba) * sectorSize, sectorSize);
  if (headerSector.length < sectorSize) throw new GptError(`${which} GPT header: short read at LBA ${lba} (${headerSector.length} of ${sectorSize} bytes)`);
  const header = parseGptHeader(headerSector, lba);
  checkPlacement(which, header, sectorSize, lastLba);
  if (which === "backup" && header.alternateLba !== 1n) {
    throw new GptError(`backup GPT header points to LBA ${header.alternateLba} for the primary (AlternateLBA), not 1`);
  }
  const len = gptEntriesByteLength(header);
  const entriesBytes = read(Number(header.entriesLba) * sectorSize, len);
  const entries = parseGptEntries(header, entriesBytes);
  return { which, header, headerSector, entriesBytes, entries };
}

/** Why the primary's AlternateLBA cannot be where the backup is, or null when it can. */
function alternateLbaProblem(h: GptHeader, sectorSize: number, lastLba: bigint): string | null {
  const alt = h.alternateLba;
  if (alt === lastLba) return null;
  if (alt === 1n) return "is the primary header itself";
  if (alt > lastLba) return `is past the last LBA ${lastLba} of the disk`;
  if (alt <= h.lastUsableLba) return `is inside the usable area ${h.firstUsableLba}..${h.lastUsableLba}`;
  const n = gptEntriesSectors(h, sectorSize);
  if (alt - n <= h.lastUsableLba) return `leaves no room for the ${n}-sector backup entry array after LastUsableLBA ${h.lastUsableLba}`;
  return null;
}

/** The header fields in which two copies of one table must agree, by UEFI name. */
function headerDifferences(a: GptHeader, b: GptHeader): string[] {
  const d: string[] = [];
  if (a.diskGuid !== b.diskGuid) d.push("DiskGUID");
  if (a.firstUsableLba !== b.firstUsableLba) d.push("FirstUsableLBA");
  if (a.lastUsableLba !== b.lastUsableLba) d.push("LastUsableLBA");
  if (a.entryCount !== b.entryCount) d.push("NumberOfPartitionEntries");
  if (a.entrySize !== b.entrySize) d.push("SizeOfPartitionEntry");
  return d;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Whether `copy` holds the same table as `good`, so that patching it in place is patching the same partition. */
function isCopyOf(copy: GptCopy, good: GptCopy): boolean {
  return copy === good || (headerDifferences(copy.header, good.header).length === 0 && sameBytes(copy.entriesBytes, good.entriesBytes));
}

/**
 * Reads and validates both GPT copies. Throws only when neither is usable. The backup is looked
 * for where the primary says it is (AlternateLBA) when that is a possible place for it; otherwise,
 * and with a corrupt primary, at the last LBA.
 */
export function readGptDisk(read: ReadAt, diskBytes: number, sectorSize: number): GptDisk {
  if (!Number.isInteger(sectorSize) || sectorSize < 512 || (sectorSize & (sectorSize - 1)) !== 0) {
    throw new GptError(`sector size ${sectorSize} is not a power of two >= 512`);
  }
  if (!Number.isSafeInteger(diskBytes) || diskBytes < 0) throw new GptError(`disk size ${diskBytes} is not a byte count`);
  const lastLba = BigInt(Math.floor(diskBytes / sectorSize)) - 1n;
  if (lastLba < 3n) throw new GptError(`disk of ${diskBytes} bytes is too small for a GPT`);
  const warnings: string[] = [];
  let primary: GptCopy | null = null;
  let backup: GptCopy | null = null;
  let primaryError: string | undefined;
  let backupError: string | undefined;
  try {
    primary = readCopy(read, "primary", 1n, sectorSize, lastLba);
  } catch (e) {
    primaryError = messageOf(e);
  }
  let backupLba = lastLba;
  let whereWarning: string | undefined;
  if (primary) {
    const alt = primary.header.alternateLba;
    const problem = alternateLbaProblem(primary.header, sectorSize, lastLba);
    // Following an impossible AlternateLBA would read the primary as its own backup, or rebuild a
    // "backup" whose entry array lands on the real backup or on partitions.
    if (problem) whereWarning = `the primary GPT's AlternateLBA ${alt} ${problem}; the backup GPT is looked for, and written, at the last LBA ${lastLba}`;
    else if (alt !== lastLba) whereWarning = `the backup GPT is at LBA ${alt}, not at the last LBA ${lastLba} (disk resized?)`;
    if (!problem) backupLba = alt;
  }
  try {
    backup = readCopy(read, "backup", backupLba, sectorSize, lastLba);
  } catch (e) {
    backup = null;
    backupError = messageOf(e);
  }
  const good = primary ?? backup;
  if (!good) {
    throw new GptError(`no valid GPT on the disk: primary: ${primaryError}; backup (LBA ${backupLba}): ${backupError}`);
  }
  if (primaryError) warnings.push(`primary GPT is corrupt (${primaryError}); using the backup`);
  if (backupError) warnings.push(`backup GPT is corrupt (${backupError}); using the primary`);
  if (primary && backup) {
    const fields = headerDifferences(primary.header, backup.header);
    if (fields.length) warnings.push(`primary and backup GPT headers differ in ${fields.join(", ")}; the primary wins, and the backup is rebuilt from it when the GPT is written`);
    else if (!sameBytes(primary.entriesBytes, backup.entriesBytes)) warnings.push("primary and backup GPT entry arrays differ; the primary wins, and the backup is rebuilt from it when the GPT is written");
  }
  if (whereWarning) warnings.push(whereWarning);
  return { sectorSize, lastLba, backupLba, primary, backup, primaryError, backupError, good, warnings };
}

export interface DiskWrite {
  what: string;
  offset: number;
  bytes: Uint8Array;
}

/**
 * A header sector for the other copy, derived from a valid one: MyLBA and AlternateLBA swapped
 * and the entry array placed where the copy keeps it (LBA 2 for the primary, just before the
 * backup header for the backup). CRCs are left to patchGptEntryAttributes.
 */
export function deriveHeaderSector(from: GptCopy, which: GptCopy["which"], backupLba: bigint, sectorSize: number): Uint8Array {
  const s = from.headerSector.slice();
  const dv = new DataView(s.buffer, s.byteOffset, s.byteLength);
  const entrySectors = gptEntriesSectors(from.header, sectorSize);
  const myLba = which === "primary" ? 1n : backupLba;
  const altLba = which === "primary" ? backupLba : 1n;
  const entriesLba = which === "primary" ? 2n : backupLba - entrySectors;
  const entriesEnd = entriesLba + entrySectors - 1n;
  // The entry array must not overlap the partitions' usable area.
  if (which === "primary" ? entriesEnd >= from.header.firstUsableLba : entriesLba <= from.header.lastUsableLba) {
    throw new GptError(`cannot rebuild the ${which} GPT: its entry array at LBA ${entriesLba}..${entriesEnd} would overlap the usable area ${from.header.firstUsableLba}..${from.header.lastUsableLba}`);
  }
  dv.setBigUint64(24, myLba, true);
  dv.setBigUint64(32, altLba, true);
  dv.setBigUint64(72, entriesLba, true);
  // Re-sign so patchGptEntryAttributes, which validates its input, accepts it.
  return resign(s, from.header.headerSize);
}

function resign(sector: Uint8Array, headerSize: number): Uint8Array {
  const dv = new DataView(sector.buffer, sector.byteOffset, sector.byteLength);
  dv.setUint32(16, 0, true);
  dv.setUint32(16, crc32Of(sector.subarray(0, headerSize)), true);
  return sector;
}

/** A kept primary header pointing at where the backup is written (it may have pointed nowhere). */
function pointingAt(copy: GptCopy, backupLba: bigint): Uint8Array {
  if (copy.header.alternateLba === backupLba) return copy.headerSector;
  const s = copy.headerSector.slice();
  new DataView(s.buffer, s.byteOffset, s.byteLength).setBigUint64(32, backupLba, true);
  return resign(s, copy.header.headerSize);
}

/** The sectors a write covers, first and last. */
function writeSectors(w: DiskWrite, sectorSize: number): [number, number] {
  return [w.offset / sectorSize, Math.ceil((w.offset + w.bytes.length) / sectorSize) - 1];
}

/**
 * The last line of defence, whatever the headers said: a write must stay on the disk, off the
 * protective MBR, and out of the usable area, where the partitions are.
 */
function sectorWrite(disk: GptDisk, what: string, lba: bigint, bytes: Uint8Array): DiskWrite {
  const last = lba + BigInt(Math.ceil(bytes.length / disk.sectorSize)) - 1n;
  const { firstUsableLba: first, lastUsableLba: lastUsable } = disk.good.header;
  if (lba < 1n || last > disk.lastLba) {
    throw new GptError(`refusing to write the ${what} at LBA ${lba}..${last}: outside LBA 1..${disk.lastLba} of the disk`);
  }
  if (lba <= lastUsable && last >= first) {
    throw new GptError(`refusing to write the ${what} at LBA ${lba}..${last}: it overlaps the usable area ${first}..${lastUsable}`);
  }
  return { what, offset: Number(lba) * disk.sectorSize, bytes };
}

/**
 * The writes that set partition `index`'s attributes in both copies, in the order to perform them:
 * backup entries, backup header, primary entries, primary header. A crash after the backup leaves
 * a valid old primary (which GRUB prefers) or, if the primary header is half written, a valid new
 * backup. `index` numbers the good copy's entries.
 *
 * Both copies are written with the good copy's entries. A valid copy that holds the same table
 * keeps its header and place; any other (corrupt, or disagreeing with the good one, where patching
 * entry `index` could change a different partition) is rebuilt from the good one, as GRUB's
 * gptprio.next does.
 */
export function planAttributeWrites(disk: GptDisk, index: number, attributes: bigint): DiskWrite[] {
  const { good, backupLba, sectorSize } = disk;
  const writes: DiskWrite[] = [];
  for (const which of ["backup", "primary"] as const) {
    const copy = disk[which];
    const kept = copy !== null && isCopyOf(copy, good);
    let headerSector: Uint8Array;
    if (!kept) headerSector = deriveHeaderSector(good, which, backupLba, sectorSize);
    else if (which === "primary") headerSector = pointingAt(copy, backupLba);
    else headerSector = copy.headerSector; // read at backupLba, and it points at LBA 1
    const out = patchGptEntryAttributes(headerSector, good.entriesBytes, index, attributes);
    const h = parseGptHeader(out.header);
    const rebuilt = kept ? "" : " (rebuilt)";
    writes.push(sectorWrite(disk, `${which} GPT entries${rebuilt}`, h.entriesLba, out.entries));
    writes.push(sectorWrite(disk, `${which} GPT header${rebuilt}`, h.myLba, out.header));
  }
  // Overlapping writes would undo each other, and the backup-first order would no longer leave a valid copy at every step.
  for (let i = 0; i < writes.length; i++) {
    for (let j = i + 1; j < writes.length; j++) {
      const [a0, a1] = writeSectors(writes[i]!, sectorSize);
      const [b0, b1] = writeSectors(writes[j]!, sectorSize);
      if (a0 <= b1 && b0 <= a1) {
        throw new GptError(`refusing to write the ${writes[i]!.what} (LBA ${a0}..${a1}) and the ${writes[j]!.what} (LBA ${b0}..${b1}): they overlap`);
      }
    }
  }
  return writes;
}
