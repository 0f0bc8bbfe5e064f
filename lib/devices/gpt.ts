// GUID Partition Table parsing (UEFI spec 2.10, section 5.3), pure: byte buffers in, values out.
//
// Why the init reads the GPT itself: older kernels put no PARTUUID in partition uevents, and the
// kexec reboot path (kexec.md) has to choose the USR-A/USR-B slot from the GPT attribute bits and
// write back a decremented "tries" counter with both CRC32s recomputed. The caller opens the disk,
// reads LBA 1 and the entry array, and hands the bytes here; nothing in this module does I/O.
import { crc32, describeBytes, formatUuid } from "./bytes.ts";

export class GptError extends Error {
  override name = "GptError";
}

export interface GptHeader {
  revision: number;
  headerSize: number;
  headerCrc: number;
  myLba: bigint;
  alternateLba: bigint;
  firstUsableLba: bigint;
  lastUsableLba: bigint;
  diskGuid: string;
  entriesLba: bigint;
  entryCount: number;
  entrySize: number;
  entriesCrc: number;
}

export interface GptEntry {
  /** 1-based partition number, as the kernel numbers partitions (sda3 = index 3). */
  index: number;
  typeGuid: string;
  partGuid: string;
  firstLba: bigint;
  lastLba: bigint;
  attributes: bigint;
  name: string;
}

/** The Flatcar /usr partition type (USR-A and USR-B both carry it). */
export const FLATCAR_USR_TYPE_GUID = "5dfbf5f4-2848-4bac-aa5e-0d9a20b745a6";

const SIGNATURE = "EFI PART";
/** The header fields defined by UEFI end at byte 92; anything after that up to headerSize is reserved. */
const HEADER_MIN_SIZE = 92;
const ENTRY_MIN_SIZE = 128;
/** The partition name is 36 UTF-16LE code units at byte 56 of each entry, whatever the entry size. */
const NAME_OFFSET = 56;
const NAME_BYTES = 72;
/**
 * Upper bound on the entry array. The common table is 128 x 128 bytes = 16 KiB; a corrupt but
 * CRC-valid-looking header must not make the caller read (and allocate) gigabytes.
 */
const MAX_ENTRIES_BYTES = 4 * 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// GUIDs

const GUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * On-disk GUID (16 bytes, "mixed endian": the first three fields little-endian, the last 8 bytes
 * in order) -> canonical lower-case text. Lower case because that is what the kernel puts in
 * uevents (PARTUUID=) and what blkid prints, so string comparison just works.
 */
export function formatGuid(bytes: Uint8Array): string {
  if (bytes.length !== 16) throw new GptError(`GUID must be 16 bytes, got ${bytes.length}`);
  // Swap the first three fields to big-endian; then it reads like any UUID.
  const be = new Uint8Array(16);
  be.set([bytes[3]!, bytes[2]!, bytes[1]!, bytes[0]!, bytes[5]!, bytes[4]!, bytes[7]!, bytes[6]!], 0);
  be.set(bytes.subarray(8), 8);
  return formatUuid(be);
}

/** Canonical GUID text (either case) -> the 16 on-disk bytes (inverse of formatGuid). */
export function encodeGuid(guid: string): Uint8Array {
  if (!GUID_RE.test(guid)) throw new GptError(`not a GUID: "${guid}" (want xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)`);
  const h = guid.replace(/-/g, "");
  const raw = new Uint8Array(16);
  for (let i = 0; i < 16; i++) raw[i] = parseInt(h.slice(i * 2, i * 2 + 2), 16);
  // Swap the first three fields back to little-endian; the last 8 bytes stay as written.
  const out = new Uint8Array(16);
  out.set([raw[3]!, raw[2]!, raw[1]!, raw[0]!, raw[5]!, raw[4]!, raw[7]!, raw[6]!], 0);
  out.set(raw.subarray(8), 8);
  return out;
}

function isZero(bytes: Uint8Array): boolean {
  for (const b of bytes) if (b !== 0) return false;
  return true;
}

function view(buf: Uint8Array): DataView {
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
}

function latin1(bytes: Uint8Array): string {
  return String.fromCharCode(...bytes);
}

// ---------------------------------------------------------------------------------------------
// Header

/**
 * Parse and validate a GPT header. `sector` should be exactly one logical sector (512 or 4096
 * bytes): the header size is checked against its length, as UEFI bounds it by the block size.
 *
 * `lba`, if given, is the LBA the sector was read from; UEFI requires MyLBA to match it, and a
 * mismatch means the caller read the wrong place (e.g. assumed 512-byte sectors on a 4Kn disk) or
 * found a stale copy.
 */
export function parseGptHeader(sector: Uint8Array, lba?: bigint): GptHeader {
  if (sector.length < HEADER_MIN_SIZE) {
    throw new GptError(`GPT header: need at least ${HEADER_MIN_SIZE} bytes, got ${sector.length}`);
  }
  const sig = sector.subarray(0, 8);
  if (latin1(sig) !== SIGNATURE) {
    throw new GptError(`no GPT header: signature is ${describeBytes(sig)}, want "${SIGNATURE}" (wrong LBA or sector size, or not a GPT disk)`);
  }
  const dv = view(sector);
  const headerSize = dv.getUint32(12, true);
  // Checked before the CRC because the CRC covers exactly headerSize bytes.
  if (headerSize < HEADER_MIN_SIZE || headerSize > sector.length) {
    throw new GptError(`GPT header size ${headerSize} out of range ${HEADER_MIN_SIZE}..${sector.length}`);
  }
  const headerCrc = dv.getUint32(16, true);
  const copy = sector.slice(0, headerSize);
  copy.fill(0, 16, 20); // the CRC is computed with its own field zeroed
  const computed = crc32(copy);
  if (computed !== headerCrc) {
    throw new GptError(`GPT header CRC32 mismatch: stored 0x${headerCrc.toString(16).padStart(8, "0")}, computed 0x${computed.toString(16).padStart(8, "0")} (corrupt header; the other GPT copy may still be good)`);
  }

  const h: GptHeader = {
    revision: dv.getUint32(8, true),
    headerSize,
    headerCrc,
    myLba: dv.getBigUint64(24, true),
    alternateLba: dv.getBigUint64(32, true),
    firstUsableLba: dv.getBigUint64(40, true),
    lastUsableLba: dv.getBigUint64(48, true),
    diskGuid: formatGuid(sector.subarray(56, 72)),
    entriesLba: dv.getBigUint64(72, true),
    entryCount: dv.getUint32(80, true),
    entrySize: dv.getUint32(84, true),
    entriesCrc: dv.getUint32(88, true),
  };

  // A header with a good CRC can still be nonsense (written by a buggy tool); these checks keep
  // the caller from reading absurd amounts or trusting impossible geometry.
  // UEFI: SizeOfPartitionEntry = 128 * 2^n.
  if (h.entrySize < ENTRY_MIN_SIZE || h.entrySize % ENTRY_MIN_SIZE !== 0 || ((h.entrySize / ENTRY_MIN_SIZE) & (h.entrySize / ENTRY_MIN_SIZE - 1)) !== 0) {
    throw new GptError(`GPT entry size ${h.entrySize} out of range (must be 128 * 2^n)`);
  }
  if (h.entryCount < 1 || h.entryCount * h.entrySize > MAX_ENTRIES_BYTES) {
    throw new GptError(`GPT entry count ${h.entryCount} out of range 1..${Math.floor(MAX_ENTRIES_BYTES / h.entrySize)} for entry size ${h.entrySize}`);
  }
  if (h.myLba < 1n) throw new GptError(`GPT header MyLBA ${h.myLba} is invalid (LBA 0 is the protective MBR)`);
  if (lba !== undefined && h.myLba !== lba) {
    throw new GptError(`GPT header says it is at LBA ${h.myLba} but was read from LBA ${lba} (wrong sector size?)`);
  }
  if (h.entriesLba < 2n || h.entriesLba === h.myLba) {
    throw new GptError(`GPT partition entries LBA ${h.entriesLba} is invalid`);
  }
  if (h.firstUsableLba > h.lastUsableLba) {
    throw new GptError(`GPT first usable LBA ${h.firstUsableLba} is after last usable LBA ${h.lastUsableLba}`);
  }
  return h;
}

/** Bytes the caller must read at `entriesLba * sectorSize` for parseGptEntries. */
export function gptEntriesByteLength(header: GptHeader): number {
  return header.entryCount * header.entrySize;
}

/** Whole sectors the entry array occupies (a partial last sector is still taken by it). */
export function gptEntriesSectors(header: GptHeader, sectorSize: number): bigint {
  return BigInt(Math.ceil(gptEntriesByteLength(header) / sectorSize));
}

/**
 * Find the primary header in the first bytes of a disk without knowing the logical sector size:
 * the header is at LBA 1, i.e. byte 512 on most disks and byte 4096 on 4Kn disks. Prefer passing
 * the real size first (sysfs queue/logical_block_size); the order only matters for odd disks.
 * A signature that is found but fails validation throws rather than trying the next size, so that
 * corruption is reported, not masked.
 */
export function locateGptHeader(
  head: Uint8Array,
  sectorSizes: readonly number[] = [512, 4096, 1024, 2048],
): { header: GptHeader; sectorSize: number } {
  for (const size of sectorSizes) {
    if (head.length < 2 * size) continue;
    const sector = head.subarray(size, 2 * size);
    if (latin1(sector.subarray(0, 8)) !== SIGNATURE) continue;
    return { header: parseGptHeader(sector, 1n), sectorSize: size };
  }
  throw new GptError(`no GPT header at LBA 1 for sector sizes ${sectorSizes.join(", ")} (read ${head.length} bytes)`);
}

// ---------------------------------------------------------------------------------------------
// Entries

/**
 * Verify the entry array CRC32 (over entryCount * entrySize bytes) and return the used entries
 * (type GUID not all zero), with their 1-based partition numbers. `entries` may be longer than
 * the array (whole sectors read); the extra bytes are ignored.
 */
export function parseGptEntries(header: GptHeader, entries: Uint8Array): GptEntry[] {
  const len = gptEntriesByteLength(header);
  if (entries.length < len) {
    throw new GptError(`GPT entry array: need ${len} bytes (${header.entryCount} x ${header.entrySize}), got ${entries.length}`);
  }
  const arr = entries.subarray(0, len);
  const computed = crc32(arr);
  if (computed !== header.entriesCrc) {
    throw new GptError(`GPT partition entries CRC32 mismatch: header says 0x${header.entriesCrc.toString(16).padStart(8, "0")}, computed 0x${computed.toString(16).padStart(8, "0")} (corrupt entry array; the other GPT copy may still be good)`);
  }
  const dv = view(arr);
  const out: GptEntry[] = [];
  const utf16 = new TextDecoder("utf-16le");
  for (let i = 0; i < header.entryCount; i++) {
    const off = i * header.entrySize;
    const type = arr.subarray(off, off + 16);
    if (isZero(type)) continue; // unused slot
    const firstLba = dv.getBigUint64(off + 32, true);
    const lastLba = dv.getBigUint64(off + 40, true);
    if (firstLba > lastLba) {
      throw new GptError(`GPT partition ${i + 1}: first LBA ${firstLba} is after last LBA ${lastLba}`);
    }
    const nameBytes = arr.subarray(off + NAME_OFFSET, off + NAME_OFFSET + NAME_BYTES);
    let units = 0;
    while (units < NAME_BYTES / 2 && (nameBytes[units * 2]! | nameBytes[units * 2 + 1]!) !== 0) units++;
    out.push({
      index: i + 1,
      typeGuid: formatGuid(type),
      partGuid: formatGuid(arr.subarray(off + 16, off + 32)),
      firstLba,
      lastLba,
      attributes: dv.getBigUint64(off + 48, true),
      name: utf16.decode(nameBytes.subarray(0, units * 2)),
    });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Slot attributes (ChromeOS cgpt convention, used by Flatcar's GRUB gptprio): bits 48-63 of the
// attributes are "type specific"; for the USR type priority is bits 48-51, tries left 52-55 and
// the successful flag bit 56.

/** Boot priority 0..15; 0 means the slot never boots. */
export function gptPriority(attr: bigint): number {
  return Number((attr >> 48n) & 0xfn);
}

/** Boot attempts left 0..15. */
export function gptTries(attr: bigint): number {
  return Number((attr >> 52n) & 0xfn);
}

/** Set once the slot has booted successfully (by update_engine after boot). */
export function gptSuccessful(attr: bigint): boolean {
  return ((attr >> 56n) & 1n) === 1n;
}

/** Return `attr` with the given slot fields replaced; other bits (e.g. bit 0 "required") kept. */
export function withGptSlotAttributes(
  attr: bigint,
  fields: { priority?: number; tries?: number; successful?: boolean },
): bigint {
  const nibble = (name: string, v: number): bigint => {
    if (!Number.isInteger(v) || v < 0 || v > 15) throw new GptError(`GPT ${name} ${v} out of range 0..15`);
    return BigInt(v);
  };
  let a = attr;
  if (fields.priority !== undefined) a = (a & ~(0xfn << 48n)) | (nibble("priority", fields.priority) << 48n);
  if (fields.tries !== undefined) a = (a & ~(0xfn << 52n)) | (nibble("tries", fields.tries) << 52n);
  if (fields.successful !== undefined) a = (a & ~(1n << 56n)) | ((fields.successful ? 1n : 0n) << 56n);
  return a;
}

/**
 * Return copies of one header sector and its entry array with partition `index`'s attributes set
 * and both CRCs recomputed (the entry array CRC stored in the header, then the header CRC). Used
 * for the tries decrement before a kexec reboot: call it for the backup header/array and for the
 * primary one, and write the backup first so that a crash in between leaves one valid copy that
 * already has the new value or an intact old primary. Both inputs are validated first; a
 * corrupt copy is never "repaired" by re-signing it.
 */
export function patchGptEntryAttributes(
  headerSector: Uint8Array,
  entries: Uint8Array,
  index: number,
  attributes: bigint,
): { header: Uint8Array; entries: Uint8Array } {
  const h = parseGptHeader(headerSector);
  const used = parseGptEntries(h, entries);
  if (!used.some((e) => e.index === index)) throw new GptError(`GPT partition ${index} does not exist`);
  if (attributes < 0n || attributes > 0xffff_ffff_ffff_ffffn) throw new GptError(`GPT attributes ${attributes} do not fit in 64 bits`);

  const newEntries = entries.slice();
  const ev = view(newEntries);
  ev.setBigUint64((index - 1) * h.entrySize + 48, attributes, true);
  const entriesCrc = crc32(newEntries.subarray(0, gptEntriesByteLength(h)));

  const newHeader = headerSector.slice();
  const hv = view(newHeader);
  hv.setUint32(88, entriesCrc, true);
  hv.setUint32(16, 0, true);
  hv.setUint32(16, crc32(newHeader.subarray(0, h.headerSize)), true);
  return { header: newHeader, entries: newEntries };
}
