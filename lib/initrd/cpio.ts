// newc ("070701") cpio, the only archive format the kernel's initramfs
// unpacker (init/initramfs.c) accepts besides its checksummed twin "070702".
// Pure: callers do the I/O.
import { escapeControls } from "../text.ts";

export type CpioEntry =
  | { kind: "dir"; path: string; mode?: number }
  | { kind: "file"; path: string; mode?: number; data: Uint8Array }
  | { kind: "symlink"; path: string; target: string }
  | { kind: "chardev" | "blockdev"; path: string; mode?: number; major: number; minor: number };

export class CpioError extends Error {
  readonly offset: number | undefined;
  constructor(message: string, offset?: number) {
    super(offset === undefined ? message : `${message} (at byte offset ${offset})`);
    this.name = "CpioError";
    this.offset = offset;
  }
}

export const S_IFMT = 0o170000;
export const S_IFDIR = 0o040000;
export const S_IFREG = 0o100000;
export const S_IFLNK = 0o120000;
export const S_IFCHR = 0o020000;
export const S_IFBLK = 0o060000;

const MAGIC = "070701";
const MAGIC_CRC = "070702";
const HEADER_SIZE = 110;
const TRAILER = "TRAILER!!!";
// The kernel rejects names longer than PATH_MAX (NUL included).
const MAX_NAMESIZE = 4096;
const U32_MAX = 0xffffffff;

/** Rounds `n` up to the next multiple of `align`. */
export function padTo(n: number, align: number): number {
  if (!Number.isSafeInteger(align) || align <= 0) throw new RangeError(`padTo: bad alignment ${align}`);
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`padTo: bad length ${n}`);
  return Math.ceil(n / align) * align;
}

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8", { fatal: true });

/** Canonical archive path: no leading "/", no "." / ".." / empty components. */
export function normalizeCpioPath(path: string): string {
  const stripped = path.replace(/^\/+/, "");
  if (stripped === "") throw new CpioError(`invalid cpio path ${JSON.stringify(path)}: empty`);
  for (const part of stripped.split("/")) {
    if (part === "") throw new CpioError(`invalid cpio path ${JSON.stringify(path)}: empty component`);
    if (part === "." || part === "..")
      throw new CpioError(`invalid cpio path ${JSON.stringify(path)}: "${part}" component not allowed`);
    if (part.includes("\0")) throw new CpioError(`invalid cpio path ${JSON.stringify(path)}: contains NUL`);
  }
  return stripped;
}

// Component-wise ordering puts "a" before "a/b" before "a-b"; a plain string
// sort would put "a-b" between "a" and "a/b" ('-' < '/'), which is harmless
// for the kernel but makes "parents first" depend on character values.
function compareComponents(pa: string[], pb: string[]): number {
  const n = Math.min(pa.length, pb.length);
  for (let i = 0; i < n; i++) {
    const x = pa[i]!;
    const y = pb[i]!;
    if (x !== y) return x < y ? -1 : 1;
  }
  return pa.length - pb.length;
}

function checkU32(value: number, what: string, path: string): number {
  if (!Number.isInteger(value) || value < 0 || value > U32_MAX)
    throw new CpioError(`${path}: ${what} ${value} does not fit a newc header field`);
  return value;
}

function permBits(mode: number | undefined, fallback: number, path: string): number {
  const m = mode ?? fallback;
  // Type bits are ours to set; accepting them here would hide callers passing st_mode.
  if (!Number.isInteger(m) || m < 0 || m > 0o7777)
    throw new CpioError(`${path}: mode 0o${m.toString(8)} must contain only permission bits (0..0o7777)`);
  return m;
}

interface Normalized {
  path: string;
  mode: number;
  nlink: number;
  rdevmajor: number;
  rdevminor: number;
  data: Uint8Array;
}

function normalizeEntries(entries: CpioEntry[]): Normalized[] {
  const byPath = new Map<string, Normalized>();
  for (const e of entries) {
    const path = normalizeCpioPath(e.path);
    if (utf8.encode(path).byteLength + 1 > MAX_NAMESIZE) throw new CpioError(`cpio path "/${path.slice(0, 64)}..." is too long`);
    if (byPath.has(path)) throw new CpioError(`duplicate cpio path "/${path}"`);
    let n: Normalized;
    switch (e.kind) {
      case "dir":
        n = { path, mode: S_IFDIR | permBits(e.mode, 0o755, path), nlink: 2, rdevmajor: 0, rdevminor: 0, data: new Uint8Array(0) };
        break;
      case "file":
        checkU32(e.data.byteLength, "file size", path);
        n = { path, mode: S_IFREG | permBits(e.mode, 0o644, path), nlink: 1, rdevmajor: 0, rdevminor: 0, data: e.data };
        break;
      case "symlink": {
        if (e.target === "" || e.target.includes("\0"))
          throw new CpioError(`${path}: invalid symlink target ${JSON.stringify(e.target)}`);
        n = { path, mode: S_IFLNK | 0o777, nlink: 1, rdevmajor: 0, rdevminor: 0, data: utf8.encode(e.target) };
        break;
      }
      case "chardev":
      case "blockdev":
        n = {
          path,
          mode: (e.kind === "chardev" ? S_IFCHR : S_IFBLK) | permBits(e.mode, 0o600, path),
          nlink: 1,
          rdevmajor: checkU32(e.major, "major", path),
          rdevminor: checkU32(e.minor, "minor", path),
          data: new Uint8Array(0),
        };
        break;
      default: {
        const never: never = e;
        throw new CpioError(`unknown cpio entry kind ${JSON.stringify((never as { kind: unknown }).kind)}`);
      }
    }
    byPath.set(path, n);
  }

  // The kernel does not create intermediate directories, so every ancestor
  // must be present and must really be a directory.
  for (const path of [...byPath.keys()]) {
    for (let slash = path.indexOf("/"); slash !== -1; slash = path.indexOf("/", slash + 1)) {
      const parent = path.slice(0, slash);
      const existing = byPath.get(parent);
      if (existing === undefined) {
        byPath.set(parent, { path: parent, mode: S_IFDIR | 0o755, nlink: 2, rdevmajor: 0, rdevminor: 0, data: new Uint8Array(0) });
      } else if ((existing.mode & S_IFMT) !== S_IFDIR) {
        throw new CpioError(`cpio path "/${parent}" is not a directory but "/${path}" is inside it`);
      }
    }
  }

  return [...byPath.values()]
    .map((n) => ({ n, key: n.path.split("/") }))
    .sort((a, b) => compareComponents(a.key, b.key))
    .map(({ n }) => n);
}

function hex8(n: number): string {
  return n.toString(16).toUpperCase().padStart(8, "0");
}

function headerPart(fields: {
  ino: number;
  mode: number;
  nlink: number;
  filesize: number;
  rdevmajor: number;
  rdevminor: number;
  name: Uint8Array;
  mtime: number;
}): Uint8Array {
  const namesize = fields.name.byteLength + 1;
  const text =
    MAGIC +
    hex8(fields.ino) +
    hex8(fields.mode) +
    hex8(0) + // uid
    hex8(0) + // gid
    hex8(fields.nlink) +
    hex8(fields.mtime) + // one time for every entry: reproducible builds
    hex8(fields.filesize) +
    hex8(0) + // devmajor
    hex8(0) + // devminor
    hex8(fields.rdevmajor) +
    hex8(fields.rdevminor) +
    hex8(namesize) +
    hex8(0); // check: only meaningful for 070702
  const out = new Uint8Array(padTo(HEADER_SIZE + namesize, 4));
  out.set(utf8.encode(text), 0);
  out.set(fields.name, HEADER_SIZE);
  return out;
}

/**
 * Encodes entries as a newc archive. The result is a list of parts whose
 * concatenation is the archive; file contents are passed through by reference
 * so large payloads are never copied here.
 */
export function encodeNewc(entries: CpioEntry[], opts: { mtime?: number } = {}): Uint8Array[] {
  const mtime = opts.mtime ?? 0;
  if (!Number.isInteger(mtime) || mtime < 0 || mtime > 0xffffffff) throw new CpioError(`cpio mtime ${mtime} does not fit the archive's 32-bit field`);
  const parts: Uint8Array[] = [];
  let ino = 1;
  for (const e of normalizeEntries(entries)) {
    const name = utf8.encode(e.path);
    parts.push(
      headerPart({ ino: ino++, mode: e.mode, nlink: e.nlink, filesize: e.data.byteLength, rdevmajor: e.rdevmajor, rdevminor: e.rdevminor, name, mtime }),
    );
    if (e.data.byteLength > 0) {
      parts.push(e.data);
      const pad = padTo(e.data.byteLength, 4) - e.data.byteLength;
      if (pad > 0) parts.push(new Uint8Array(pad));
    }
  }
  // nlink 1 on the trailer mirrors GNU cpio; the kernel ignores it.
  parts.push(headerPart({ ino: 0, mode: 0, nlink: 1, filesize: 0, rdevmajor: 0, rdevminor: 0, name: utf8.encode(TRAILER), mtime: 0 }));
  return parts;
}

const FIELD_NAMES = [
  "ino",
  "mode",
  "uid",
  "gid",
  "nlink",
  "mtime",
  "filesize",
  "devmajor",
  "devminor",
  "rdevmajor",
  "rdevminor",
  "namesize",
  "check",
] as const;
type FieldName = (typeof FIELD_NAMES)[number];

/** The value of an ASCII hex digit, or -1. */
function hexDigit(c: number | undefined): number {
  if (c === undefined) return -1;
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  return -1;
}

/**
 * The newc header field at `at`: exactly 8 hex digits (no sign, blank or
 * prefix, unlike parseInt), so always 0..0xffffffff; null if any byte is not
 * a hex digit. Shared with the streaming unwrapper of the /usr image.
 */
export function readHex8(bytes: Uint8Array, at: number): number | null {
  let v = 0;
  for (let i = 0; i < 8; i++) {
    const d = hexDigit(bytes[at + i]);
    if (d < 0) return null;
    v = v * 16 + d;
  }
  return v;
}

function parseHex8(archive: Uint8Array, at: number, field: string): number {
  for (let i = 0; i < 8; i++) if (hexDigit(archive[at + i]) < 0) throw new CpioError(`bad hex digit in cpio header field ${field}`, at + i);
  return readHex8(archive, at)!;
}

function need(archive: Uint8Array, at: number, len: number, what: string): void {
  if (at + len > archive.byteLength)
    throw new CpioError(
      `truncated cpio archive: ${what} needs ${len} bytes but only ${Math.max(0, archive.byteLength - at)} remain`,
      at,
    );
}

/**
 * Parses a newc archive up to and including its TRAILER!!! entry. `end` is
 * the offset right after the trailer's padding, where a concatenated archive
 * (after optional zero padding) would start. File data are views into
 * `archive`.
 */
export function decodeNewc(archive: Uint8Array): { entries: CpioEntry[]; end: number } {
  const entries: CpioEntry[] = [];
  let off = 0;
  for (;;) {
    const start = off;
    need(archive, off, HEADER_SIZE, "header");
    const magic = String.fromCharCode(...archive.subarray(off, off + 6));
    if (magic !== MAGIC && magic !== MAGIC_CRC)
      throw new CpioError(`bad cpio magic ${JSON.stringify(magic)}, expected "${MAGIC}"`, off);
    const h = {} as Record<FieldName, number>;
    FIELD_NAMES.forEach((f, i) => {
      h[f] = parseHex8(archive, start + 6 + i * 8, f);
    });
    if (h.namesize === 0 || h.namesize > MAX_NAMESIZE)
      throw new CpioError(`invalid cpio namesize ${h.namesize}`, start + 6 + 11 * 8);
    off += HEADER_SIZE;
    need(archive, off, h.namesize, "name");
    if (archive[off + h.namesize - 1] !== 0) throw new CpioError("cpio name is not NUL-terminated", off);
    let name: string;
    try {
      name = utf8Decoder.decode(archive.subarray(off, off + h.namesize - 1));
    } catch {
      throw new CpioError("cpio name is not valid UTF-8", off);
    }
    // The kernel ends a name at its first NUL; a reader that kept the rest
    // would see a different file than the one unpacked at boot.
    if (name.includes("\0")) throw new CpioError(`cpio name ${JSON.stringify(escapeControls(name.slice(0, name.indexOf("\0"))))} has a NUL before its end`, off);
    off = start + padTo(HEADER_SIZE + h.namesize, 4);
    const dataAt = off;
    need(archive, dataAt, h.filesize, `data of "${escapeControls(name)}"`);
    const data = archive.subarray(dataAt, dataAt + h.filesize);
    off = dataAt + padTo(h.filesize, 4);
    // Padding after the final entry may be missing in the wild; the kernel
    // only needs it between entries.
    if (off > archive.byteLength) off = archive.byteLength;

    if (magic === MAGIC_CRC) {
      let sum = 0;
      for (const b of data) sum = (sum + b) >>> 0;
      if (sum !== h.check) throw new CpioError(`checksum mismatch for "${escapeControls(name)}"`, start);
    }

    if (name === TRAILER) return { entries, end: off };

    const type = h.mode & S_IFMT;
    const perm = h.mode & 0o7777;
    switch (type) {
      case S_IFDIR:
        entries.push({ kind: "dir", path: name, mode: perm });
        break;
      case S_IFREG:
        entries.push({ kind: "file", path: name, mode: perm, data });
        break;
      case S_IFLNK: {
        let target: string;
        try {
          target = utf8Decoder.decode(data);
        } catch {
          throw new CpioError(`symlink target of "${escapeControls(name)}" is not valid UTF-8`, dataAt);
        }
        entries.push({ kind: "symlink", path: name, target });
        break;
      }
      case S_IFCHR:
      case S_IFBLK:
        entries.push({
          kind: type === S_IFCHR ? "chardev" : "blockdev",
          path: name,
          mode: perm,
          major: h.rdevmajor,
          minor: h.rdevminor,
        });
        break;
      default:
        throw new CpioError(`unsupported file type 0o${type.toString(8)} for "${escapeControls(name)}"`, start);
    }
  }
}
