// The device-mapper ioctl interface (the kernel's include/uapi/linux/dm-ioctl.h),
// pure: the request buffers the init sends to /dev/mapper/control, the replies
// it reads back, the dm-verity table line, and dev_t decoding. lib/sys/index.ts
// makes the ioctls with these buffers; nothing here touches the system.
//
// Why our own: veritysetup and dmsetup did this for us at the cost of ~2.6 MiB
// of shared libraries in the initrd and two to four processes, each loading a
// dozen libraries, on every boot. Setting up one verity mapping takes four
// ioctls (create, load, resume, status).
//
// Every ioctl argument is one buffer: struct dm_ioctl (312 bytes, below), then
// data at data_start. A table is a list of struct dm_target_spec (40 bytes),
// each followed by its NUL-terminated parameter string, the next spec 8-byte
// aligned. All integers are little-endian on the architectures the init runs
// on (x86-64, arm64).

import { escapeControls } from "../text.ts";

/** sizeof(struct dm_ioctl): version[3] data_size data_start target_count open_count flags event_nr padding dev name[128] uuid[129] data[7]. */
export const DM_IOCTL_SIZE = 312;
/** sizeof(struct dm_target_spec): sector_start length status next target_type[16]. */
export const DM_TARGET_SPEC_SIZE = 40;
export const DM_NAME_LEN = 128;
export const DM_UUID_LEN = 129;
export const DM_MAX_TYPE_NAME = 16;

/** Offsets in struct dm_ioctl. */
export const DM_OFF = {
  version: 0,
  dataSize: 12,
  dataStart: 16,
  targetCount: 20,
  openCount: 24,
  flags: 28,
  eventNr: 32,
  dev: 40,
  name: 48,
  uuid: 176,
} as const;

/** The interface version we speak; the kernel accepts any 4.x at or below its own minor. */
export const DM_VERSION = [4, 0, 0] as const;

/** The commands (enum in dm-ioctl.h), as _IOC_NR of the request. */
export const DM_CMD = {
  VERSION: 0,
  REMOVE_ALL: 1,
  LIST_DEVICES: 2,
  DEV_CREATE: 3,
  DEV_REMOVE: 4,
  DEV_SUSPEND: 6,
  DEV_STATUS: 7,
  TABLE_LOAD: 9,
  TABLE_STATUS: 12,
} as const;
export type DmCommand = keyof typeof DM_CMD;

export const DM_FLAG = {
  READONLY: 1 << 0,
  /** With DEV_SUSPEND: suspend; without: resume (and swap in a loaded table). */
  SUSPEND: 1 << 1,
  /** With TABLE_STATUS: the table lines instead of the targets' status. */
  STATUS_TABLE: 1 << 4,
  ACTIVE_PRESENT: 1 << 5,
  INACTIVE_PRESENT: 1 << 6,
  /** Out: the reply did not fit; ask again with a larger buffer. */
  BUFFER_FULL: 1 << 8,
} as const;

/**
 * The ioctl request number: _IOWR(0xfd, nr, struct dm_ioctl). The direction
 * bits (3 << 30) and the size (312 << 16) are the asm-generic _IOC layout,
 * which x86-64 and arm64 share.
 */
export function dmRequest(cmd: DmCommand): number {
  return (((3 << 30) | (DM_IOCTL_SIZE << 16) | (0xfd << 8) | DM_CMD[cmd]) >>> 0);
}

/** An ioctl buffer or a reply that cannot be used. */
export class DmError extends Error {
  override name = "DmError";
}

/** One line of a table: `start length type params`, start and length in 512-byte sectors. */
export interface DmTarget {
  start: bigint;
  length: bigint;
  type: string;
  params: string;
}

/** A target as dmsetup prints it. */
export function formatTarget(t: DmTarget): string {
  return `${t.start} ${t.length} ${t.type}${t.params ? ` ${t.params}` : ""}`;
}

const align8 = (n: number) => (n + 7) & ~7;
const ascii = new TextEncoder();

function cBytes(what: string, s: string, max: number): Uint8Array {
  const b = ascii.encode(s);
  // The kernel cuts a name at its last byte; a cut name would address another device.
  if (b.length >= max) throw new DmError(`${what} "${escapeControls(s)}" is ${b.length} bytes; at most ${max - 1} fit`);
  if (b.includes(0)) throw new DmError(`${what} "${escapeControls(s)}" contains a NUL byte`);
  return b;
}

export interface DmRequestOptions {
  /** The device name (lookups go by name, or by uuid when no name is given). */
  name?: string;
  uuid?: string;
  flags?: number;
  /** The table for TABLE_LOAD. */
  targets?: readonly DmTarget[];
  /**
   * Total buffer size, for commands that reply with data (TABLE_STATUS): the
   * kernel writes at most this much. Never less than what the request needs.
   */
  bufferSize?: number;
}

/**
 * A request buffer: struct dm_ioctl, then the target specs of a table. In a
 * request, each spec's `next` is the distance from that spec to the next one
 * (in a reply it counts from the first spec instead; see decodeTargets).
 */
export function encodeDmIoctl(o: DmRequestOptions): Uint8Array {
  const name = o.name === undefined ? undefined : cBytes("device-mapper name", o.name, DM_NAME_LEN);
  if (name && (name.length === 0 || o.name!.includes("/") || o.name === "." || o.name === "..")) {
    throw new DmError(`device-mapper name "${escapeControls(o.name!)}" is not allowed (empty, a slash, "." or "..")`);
  }
  const uuid = o.uuid === undefined ? undefined : cBytes("device-mapper uuid", o.uuid, DM_UUID_LEN);
  const specs: Array<{ at: number; target: DmTarget; type: Uint8Array; params: Uint8Array }> = [];
  let end = DM_IOCTL_SIZE;
  for (const t of o.targets ?? []) {
    const type = cBytes("target type", t.type, DM_MAX_TYPE_NAME);
    if (type.length === 0) throw new DmError("a target needs a type");
    const params = cBytes("target parameters", t.params, Number.MAX_SAFE_INTEGER);
    if (t.start < 0n || t.length <= 0n || t.start + t.length > 0xffffffffffffffffn) {
      throw new DmError(`target ${formatTarget(t).slice(0, 80)}: start and length must be sectors within 64 bits, length above 0`);
    }
    specs.push({ at: end, target: t, type, params });
    end = align8(end + DM_TARGET_SPEC_SIZE + params.length + 1);
  }
  const size = Math.max(end, o.bufferSize ?? 0);
  if (!Number.isSafeInteger(size) || size > 0xffffffff) throw new DmError(`device-mapper buffer of ${size} bytes is too large`);
  const b = new Uint8Array(size);
  const v = new DataView(b.buffer);
  DM_VERSION.forEach((x, i) => v.setUint32(DM_OFF.version + 4 * i, x, true));
  v.setUint32(DM_OFF.dataSize, size, true);
  v.setUint32(DM_OFF.dataStart, DM_IOCTL_SIZE, true);
  v.setUint32(DM_OFF.targetCount, specs.length, true);
  v.setUint32(DM_OFF.flags, o.flags ?? 0, true);
  if (name) b.set(name, DM_OFF.name);
  if (uuid) b.set(uuid, DM_OFF.uuid);
  specs.forEach((s, i) => {
    v.setBigUint64(s.at, s.target.start, true);
    v.setBigUint64(s.at + 8, s.target.length, true);
    const next = (specs[i + 1]?.at ?? end) - s.at;
    v.setUint32(s.at + 20, next, true);
    b.set(s.type, s.at + 24);
    b.set(s.params, s.at + DM_TARGET_SPEC_SIZE);
  });
  return b;
}

/** The struct dm_ioctl of a reply. */
export interface DmHeader {
  version: [number, number, number];
  dataSize: number;
  dataStart: number;
  targetCount: number;
  openCount: number;
  flags: number;
  eventNr: number;
  /** The device number in the kernel's huge encoding (decodeDev). */
  dev: bigint;
  name: string;
  uuid: string;
}

function cString(b: Uint8Array, at: number, max: number, what: string): string {
  const field = b.subarray(at, at + max);
  const nul = field.indexOf(0);
  if (nul < 0) throw new DmError(`${what} is not NUL-terminated within ${max} bytes`);
  return new TextDecoder().decode(field.subarray(0, nul));
}

/** Reads struct dm_ioctl back; checks only what every reply must satisfy. */
export function decodeDmHeader(b: Uint8Array): DmHeader {
  if (b.length < DM_IOCTL_SIZE) throw new DmError(`device-mapper reply of ${b.length} bytes is shorter than struct dm_ioctl (${DM_IOCTL_SIZE})`);
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const version: [number, number, number] = [v.getUint32(0, true), v.getUint32(4, true), v.getUint32(8, true)];
  if (version[0] !== DM_VERSION[0]) throw new DmError(`device-mapper interface version ${version.join(".")} is not ${DM_VERSION[0]}.x`);
  return {
    version,
    dataSize: v.getUint32(DM_OFF.dataSize, true),
    dataStart: v.getUint32(DM_OFF.dataStart, true),
    targetCount: v.getUint32(DM_OFF.targetCount, true),
    openCount: v.getInt32(DM_OFF.openCount, true),
    flags: v.getUint32(DM_OFF.flags, true),
    eventNr: v.getUint32(DM_OFF.eventNr, true),
    dev: v.getBigUint64(DM_OFF.dev, true),
    name: cString(b, DM_OFF.name, DM_NAME_LEN, "device-mapper name in the reply"),
    uuid: cString(b, DM_OFF.uuid, DM_UUID_LEN, "device-mapper uuid in the reply"),
  };
}

export type DmTableReply = { kind: "full"; header: DmHeader } | { kind: "ok"; header: DmHeader; targets: DmTarget[] };

/**
 * The targets of a TABLE_STATUS reply (their status, or their table lines with
 * DM_FLAG.STATUS_TABLE). A reply the kernel marked BUFFER_FULL is reported as
 * such, for a retry with a larger buffer. Every offset is checked against the
 * reply: each spec and its NUL-terminated string must lie within data_size,
 * and each spec must start after the previous one's string, so a hostile or
 * corrupt reply gives a DmError after at most data_size / 41 steps, never a
 * read outside the buffer or a loop.
 */
export function decodeTargets(b: Uint8Array): DmTableReply {
  const header = decodeDmHeader(b);
  if (header.flags & DM_FLAG.BUFFER_FULL) return { kind: "full", header };
  const { dataSize, dataStart, targetCount } = header;
  if (dataSize > b.length) throw new DmError(`device-mapper reply: data_size ${dataSize} is beyond the buffer of ${b.length} bytes`);
  if (targetCount === 0) return { kind: "ok", header, targets: [] };
  if (dataStart < DM_IOCTL_SIZE || dataStart > dataSize) {
    throw new DmError(`device-mapper reply: data_start ${dataStart} is outside ${DM_IOCTL_SIZE}..${dataSize} (data_size)`);
  }
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const targets: DmTarget[] = [];
  // In a reply, `next` counts from the first spec (data_start), not from the current one.
  let at = dataStart;
  for (let i = 0; i < targetCount; i++) {
    const where = `device-mapper reply: target ${i + 1} of ${targetCount} at offset ${at}`;
    if (at + DM_TARGET_SPEC_SIZE > dataSize) throw new DmError(`${where}: its ${DM_TARGET_SPEC_SIZE}-byte header ends beyond data_size ${dataSize}`);
    const typeField = b.subarray(at + 24, at + 24 + DM_MAX_TYPE_NAME);
    const typeEnd = typeField.indexOf(0);
    // Older kernels copy a 16-character type name without its NUL.
    const type = new TextDecoder().decode(typeField.subarray(0, typeEnd < 0 ? DM_MAX_TYPE_NAME : typeEnd));
    const paramsAt = at + DM_TARGET_SPEC_SIZE;
    const nul = b.subarray(paramsAt, dataSize).indexOf(0);
    if (nul < 0) throw new DmError(`${where}: its parameter string has no NUL before data_size ${dataSize}`);
    targets.push({
      start: v.getBigUint64(at, true),
      length: v.getBigUint64(at + 8, true),
      type,
      params: new TextDecoder().decode(b.subarray(paramsAt, paramsAt + nul)),
    });
    if (i + 1 === targetCount) break;
    const next = dataStart + v.getUint32(at + 20, true);
    if (next < paramsAt + nul + 1) throw new DmError(`${where}: the next target (offset ${next}) does not start after this one's parameters`);
    at = next;
  }
  return { kind: "ok", header, targets };
}

/**
 * Major and minor of a dev_t, for the kernel's huge encoding (what DM returns
 * in dm_ioctl.dev) and glibc's (what stat returns): the two agree for every
 * device number the kernel can make (12-bit major, 20-bit minor).
 */
export function decodeDev(dev: bigint | number): { major: number; minor: number } {
  const d = BigInt(dev);
  const major = ((d & 0x00000000000fff00n) >> 8n) | ((d & 0xfffff00000000000n) >> 32n);
  const minor = (d & 0x00000000000000ffn) | ((d & 0x00000ffffff00000n) >> 12n);
  return { major: Number(major), minor: Number(minor) };
}

/** The kernel's "major:minor", as dm tables name devices. */
export function formatDev(dev: bigint | number): string {
  const { major, minor } = decodeDev(dev);
  return `${major}:${minor}`;
}

/** What a dm-verity table needs; the geometry comes from the verity superblock. */
export interface VerityTableInput {
  /** "major:minor" of the data and of the hash device (the same partition for Flatcar). */
  dataDev: string;
  hashDev: string;
  /** The superblock's hash type: the table's <version> (1 normal, 0 Chrome OS). */
  hashType: number;
  dataBlockSize: number;
  hashBlockSize: number;
  dataBlocks: bigint;
  /** First block of the tree on the hash device, in hash blocks (after the superblock). */
  hashStartBlock: bigint;
  algorithm: string;
  rootHash: string;
  salt: Uint8Array;
  /** Optional arguments, e.g. ["panic_on_corruption"]. */
  options: readonly string[];
}

const DEV = /^\d+:\d+$/;
const WORD = /^[\x21-\x7e]+$/;

/**
 * The dm-verity target covering the whole data area, with the parameters
 * veritysetup would load: `<version> <data dev> <hash dev> <data block size>
 * <hash block size> <data blocks> <hash start block> <algorithm> <root hash>
 * <salt or -> [<count> <options>...]`. Values are checked, since a space in any
 * of them would shift every later field.
 */
export function verityTarget(t: VerityTableInput): DmTarget {
  if (!DEV.test(t.dataDev) || !DEV.test(t.hashDev)) throw new DmError(`verity devices must be major:minor, got "${escapeControls(t.dataDev)}" and "${escapeControls(t.hashDev)}"`);
  if (t.hashType !== 0 && t.hashType !== 1) throw new DmError(`verity hash type ${t.hashType} is not 0 or 1`);
  for (const [what, n] of [["data block size", t.dataBlockSize], ["hash block size", t.hashBlockSize]] as const) {
    if (!Number.isInteger(n) || n < 512 || (n & (n - 1)) !== 0) throw new DmError(`verity ${what} ${n} is not a power of two of at least 512`);
  }
  if (t.dataBlocks <= 0n) throw new DmError(`verity data blocks ${t.dataBlocks} must be above 0`);
  if (t.hashStartBlock < 0n) throw new DmError(`verity hash start block ${t.hashStartBlock} is negative`);
  if (!WORD.test(t.algorithm)) throw new DmError(`verity algorithm "${escapeControls(t.algorithm)}" is not one word`);
  if (!/^[0-9a-f]+$/.test(t.rootHash) || t.rootHash.length % 2 !== 0) throw new DmError(`verity root hash "${escapeControls(t.rootHash.slice(0, 80))}" is not lower-case hex`);
  for (const o of t.options) if (!WORD.test(o)) throw new DmError(`verity option "${escapeControls(o)}" is not one word`);
  const salt = t.salt.length === 0 ? "-" : Buffer.from(t.salt).toString("hex");
  const fields = [t.hashType, t.dataDev, t.hashDev, t.dataBlockSize, t.hashBlockSize, t.dataBlocks, t.hashStartBlock, t.algorithm, t.rootHash, salt];
  if (t.options.length > 0) fields.push(t.options.length, ...t.options);
  return { start: 0n, length: (t.dataBlocks * BigInt(t.dataBlockSize)) / 512n, type: "verity", params: fields.join(" ") };
}
