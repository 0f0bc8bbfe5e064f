// Both copies of a GPT (primary at LBA 1, backup at the last LBA), read through a callback so the
// logic stays pure and testable on image files, and the writes that change one entry's attributes
// in both copies. GRUB's gptprio.next behaves the same way: a corrupt copy does not stop the boot
// as long as the other one is valid, and when the tries counter is written both copies are written
// from the valid one, the backup first.
import {
  GptError,
  crc32 as crc32Of,
  gptEntriesByteLength,
  parseGptEntries,
  parseGptHeader,
  patchGptEntryAttributes,
  type GptEntry,
  type GptHeader,
} from "../devices/gpt.ts";

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

function readCopy(read: ReadAt, which: GptCopy["which"], lba: bigint, sectorSize: number): GptCopy {
  const headerSector = read(Number(lba) * sectorSize, sectorSize);
  if (headerSector.length < sectorSize) throw new GptError(`${which} GPT header: LBA ${lba} is beyond the end of the disk`);
  const header = parseGptHeader(headerSector, lba);
  const len = gptEntriesByteLength(header);
  const entriesBytes = read(Number(header.entriesLba) * sectorSize, len);
  const entries = parseGptEntries(header, entriesBytes);
  return { which, header, headerSector, entriesBytes, entries };
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * Reads and validates both GPT copies. Throws only when neither is usable. The backup is looked
 * for where the primary says it is (AlternateLBA); with a corrupt primary, at the last LBA.
 */
export function readGptDisk(read: ReadAt, diskBytes: number, sectorSize: number): GptDisk {
  if (!Number.isInteger(sectorSize) || sectorSize < 512 || (sectorSize & (sectorSize - 1)) !== 0) {
    throw new GptError(`sector size ${sectorSize} is not a power of two >= 512`);
  }
  const lastLba = BigInt(Math.floor(diskBytes / sectorSize)) - 1n;
  if (lastLba < 3n) throw new GptError(`disk of ${diskBytes} bytes is too small for a GPT`);
  const warnings: string[] = [];
  let primary: GptCopy | null = null;
  let backup: GptCopy | null = null;
  let primaryError: string | undefined;
  let backupError: string | undefined;
  try {
    primary = readCopy(read, "primary", 1n, sectorSize);
  } catch (e) {
    primaryError = message(e);
  }
  const backupLba = primary ? primary.header.alternateLba : lastLba;
  try {
    backup = readCopy(read, "backup", backupLba, sectorSize);
    if (backup.header.alternateLba !== 1n) throw new GptError(`backup GPT header points to LBA ${backup.header.alternateLba} for the primary, not 1`);
  } catch (e) {
    backup = null;
    backupError = message(e);
  }
  const good = primary ?? backup;
  if (!good) {
    throw new GptError(`no valid GPT on the disk: primary: ${primaryError}; backup (LBA ${backupLba}): ${backupError}`);
  }
  if (primaryError) warnings.push(`primary GPT is corrupt (${primaryError}); using the backup`);
  if (backupError) warnings.push(`backup GPT is corrupt (${backupError}); using the primary`);
  if (primary && backup && primary.header.entriesCrc !== backup.header.entriesCrc) {
    warnings.push("primary and backup GPT entry arrays differ; the primary wins");
  }
  if (primary && primary.header.alternateLba !== lastLba) {
    warnings.push(`the backup GPT is at LBA ${primary.header.alternateLba}, not at the last LBA ${lastLba} (disk resized?)`);
  }
  return { sectorSize, lastLba, primary, backup, primaryError, backupError, good, warnings };
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
  const entrySectors = BigInt(Math.ceil(gptEntriesByteLength(from.header) / sectorSize));
  const myLba = which === "primary" ? 1n : backupLba;
  const altLba = which === "primary" ? backupLba : 1n;
  const entriesLba = which === "primary" ? 2n : backupLba - entrySectors;
  // The entry array must not overlap the partitions' usable area.
  if (which === "primary" ? entriesLba + entrySectors > from.header.firstUsableLba : entriesLba <= from.header.lastUsableLba) {
    throw new GptError(`cannot rebuild the ${which} GPT: its entry array at LBA ${entriesLba} would overlap the usable area ${from.header.firstUsableLba}..${from.header.lastUsableLba}`);
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

/**
 * The writes that set partition `index`'s attributes in both copies, in the order to perform them:
 * backup entries, backup header, primary entries, primary header. A crash after the backup leaves
 * a valid old primary (which GRUB prefers) or, if the primary header is half written, a valid new
 * backup. A corrupt copy is rebuilt from the good one, as GRUB's gptprio.next does.
 */
export function planAttributeWrites(disk: GptDisk, index: number, attributes: bigint): DiskWrite[] {
  const ss = disk.sectorSize;
  const backupLba = disk.primary ? disk.primary.header.alternateLba : disk.backup ? disk.backup.header.myLba : disk.lastLba;
  const writes: DiskWrite[] = [];
  for (const which of ["backup", "primary"] as const) {
    const copy = disk[which];
    const headerSector = copy ? copy.headerSector : deriveHeaderSector(disk.good, which, backupLba, ss);
    // A rebuilt copy takes the good copy's entries; a valid one keeps its own.
    const entries = copy ? copy.entriesBytes : disk.good.entriesBytes;
    const out = patchGptEntryAttributes(headerSector, entries, index, attributes);
    const h = parseGptHeader(out.header);
    writes.push({ what: `${which} GPT entries${copy ? "" : " (rebuilt)"}`, offset: Number(h.entriesLba) * ss, bytes: out.entries });
    writes.push({ what: `${which} GPT header${copy ? "" : " (rebuilt)"}`, offset: Number(h.myLba) * ss, bytes: out.header });
  }
  return writes;
}
