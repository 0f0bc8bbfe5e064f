// The /usr image is served either as a squashfs or as Flatcar's PXE cpio
// holding usr.squashfs. This turns the byte stream into the bytes of the
// squashfs as it flows, so the image is never held twice in RAM (no
// download-then-extract). Pure: a state machine over a byte stream.
//
// The input may be hostile (rd.usr.insecure=1, or bytes not yet proven by a
// whole-image hash), so every header field is exactly 8 hex digits, name
// sizes are bounded as the kernel bounds them, and every step of the loop
// consumes input or moves to a state that does: it always terminates.
import { readHex8, S_IFMT, S_IFREG } from "../initrd/cpio.ts";
import { toHex } from "../devices/bytes.ts";

export class UnwrapError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UnwrapError";
  }
}

const SQUASHFS_MAGIC = [0x68, 0x73, 0x71, 0x73]; // "hsqs"
const CPIO_MAGIC = "070701";
const HEADER = 110;
// The kernel rejects names longer than PATH_MAX (NUL included); so does lib/initrd/cpio.ts.
const MAX_NAMESIZE = 4096;
const TRAILER = "TRAILER!!!";
const FIELDS = ["ino", "mode", "uid", "gid", "nlink", "mtime", "filesize", "devmajor", "devminor", "rdevmajor", "rdevminor", "namesize", "check"] as const;
const F_MODE = 1;
const F_FILESIZE = 6;
const F_NAMESIZE = 11;

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** The bytes as a quoted string, control characters and non-ASCII escaped. */
function quoteLatin1(b: Uint8Array): string {
  return JSON.stringify(String.fromCharCode(...b)).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

/** Field `i` of a newc header: exactly 8 hex digits (readHex8), never a signed number. */
function headerField(header: Uint8Array, i: number, headerAt: number): number {
  const start = 6 + i * 8;
  const v = readHex8(header, start);
  if (v === null) throw new UnwrapError(`cpio: header field ${FIELDS[i]} at byte ${headerAt + start} is ${quoteLatin1(header.subarray(start, start + 8))}; expected 8 hex digits`);
  return v;
}

interface Entry {
  /** Offset of its header in the archive. */
  at: number;
  mode: number;
  fileSize: number;
  nameSize: number;
}

type State =
  | { kind: "detect"; head: Uint8Array }
  | { kind: "squashfs" }
  | { kind: "header"; buf: Uint8Array; filled: number; at: number }
  | { kind: "name"; entry: Entry; buf: Uint8Array; filled: number }
  | { kind: "skip"; left: number; next: State }
  | { kind: "data"; left: number; pad: number }
  /** usr.squashfs: its first 4 bytes are held until they prove to be the magic. */
  | { kind: "keep"; left: number; pad: number; magic: Uint8Array; filled: number }
  | { kind: "done" };

export class UsrImageUnwrapper {
  private state: State = { kind: "detect", head: new Uint8Array(0) };
  /** Bytes consumed so far: the archive offset of the next input byte. */
  private offset = 0;
  private found = false;
  format: "squashfs" | "cpio" | null = null;

  constructor(private readonly wanted = "usr.squashfs") {}

  private nextHeader(): State {
    return { kind: "header", buf: new Uint8Array(HEADER), filled: 0, at: this.offset };
  }

  /** Feeds bytes in order; returns the squashfs bytes they contain. */
  push(data: Uint8Array): Uint8Array[] {
    const out: Uint8Array[] = [];
    let pos = 0;
    // Every case consumes at least one byte or moves to a state that will
    // (skip/data with nothing left move on; a header always takes bytes).
    while (pos < data.length) {
      const s = this.state;
      switch (s.kind) {
        case "detect": {
          const take = Math.min(6 - s.head.length, data.length - pos);
          const head = new Uint8Array(s.head.length + take);
          head.set(s.head);
          head.set(data.subarray(pos, pos + take), s.head.length);
          pos += take;
          this.offset += take;
          if (head.length < 4) {
            this.state = { kind: "detect", head };
            break;
          }
          if (SQUASHFS_MAGIC.every((b, i) => head[i] === b)) {
            this.format = "squashfs";
            this.found = true;
            this.state = { kind: "squashfs" };
            out.push(head);
            break;
          }
          if (head.length < 6) {
            this.state = { kind: "detect", head };
            break;
          }
          if (String.fromCharCode(...head) !== CPIO_MAGIC) {
            throw new UnwrapError(`the image is neither a squashfs (magic "hsqs") nor a newc cpio (magic "070701"): it starts with ${toHex(head, " ")}`);
          }
          this.format = "cpio";
          const buf = new Uint8Array(HEADER);
          buf.set(head);
          this.state = { kind: "header", buf, filled: head.length, at: 0 };
          break;
        }
        case "squashfs":
          out.push(data.subarray(pos));
          this.offset += data.length - pos;
          pos = data.length;
          break;
        case "header": {
          const take = Math.min(HEADER - s.filled, data.length - pos);
          s.buf.set(data.subarray(pos, pos + take), s.filled);
          s.filled += take;
          pos += take;
          this.offset += take;
          if (s.filled === HEADER) {
            if (String.fromCharCode(...s.buf.subarray(0, 6)) !== CPIO_MAGIC) {
              throw new UnwrapError(`cpio: bad header magic at byte ${s.at}: ${toHex(s.buf.subarray(0, 6), " ")}; expected "070701"`);
            }
            // All 13 fields, in order: the first bad one is the one named.
            const f = FIELDS.map((_, i) => headerField(s.buf, i, s.at));
            const mode = f[F_MODE]!;
            const fileSize = f[F_FILESIZE]!;
            const nameSize = f[F_NAMESIZE]!;
            if (nameSize < 1 || nameSize > MAX_NAMESIZE) {
              throw new UnwrapError(`cpio: name size ${nameSize} at byte ${s.at + 6 + F_NAMESIZE * 8} is out of range; expected 1 to ${MAX_NAMESIZE}`);
            }
            const entry = { at: s.at, mode, fileSize, nameSize };
            this.state = { kind: "name", entry, buf: new Uint8Array(nameSize), filled: 0 };
          }
          break;
        }
        case "name": {
          const { entry } = s;
          const take = Math.min(entry.nameSize - s.filled, data.length - pos);
          s.buf.set(data.subarray(pos, pos + take), s.filled);
          s.filled += take;
          pos += take;
          this.offset += take;
          if (s.filled === entry.nameSize) this.state = this.afterName(entry, s.buf);
          break;
        }
        case "skip": {
          const take = Math.min(s.left, data.length - pos);
          pos += take;
          this.offset += take;
          s.left -= take;
          if (s.left === 0) this.state = s.next;
          break;
        }
        case "data": {
          const take = Math.min(s.left, data.length - pos);
          pos += take;
          this.offset += take;
          s.left -= take;
          if (s.left === 0) this.state = { kind: "skip", left: s.pad, next: this.nextHeader() };
          break;
        }
        case "keep": {
          let take = Math.min(s.left, data.length - pos);
          if (s.filled < 4) {
            const m = Math.min(4 - s.filled, take);
            s.magic.set(data.subarray(pos, pos + m), s.filled);
            s.filled += m;
            pos += m;
            this.offset += m;
            s.left -= m;
            take -= m;
            if (s.filled === 4) {
              if (!SQUASHFS_MAGIC.every((b, i) => s.magic[i] === b)) {
                throw new UnwrapError(`cpio: ${this.wanted} does not start with the squashfs magic "hsqs": it starts with ${toHex(s.magic, " ")}`);
              }
              out.push(s.magic);
            }
          }
          if (take > 0) out.push(data.subarray(pos, pos + take));
          pos += take;
          this.offset += take;
          s.left -= take;
          if (s.left === 0) this.state = { kind: "skip", left: s.pad, next: this.nextHeader() };
          break;
        }
        case "done":
          // Boot loaders pad concatenated archives; what follows the trailer is ignored.
          this.offset += data.length - pos;
          pos = data.length;
          break;
      }
    }
    return out;
  }

  private afterName(entry: Entry, buf: Uint8Array): State {
    const nameAt = entry.at + HEADER;
    if (buf[buf.length - 1] !== 0) throw new UnwrapError(`cpio: the entry name at byte ${nameAt} is not NUL-terminated`);
    const raw = buf.subarray(0, buf.length - 1);
    if (raw.includes(0)) throw new UnwrapError(`cpio: the entry name at byte ${nameAt} contains a NUL before its end`);
    let name: string;
    try {
      name = utf8.decode(raw);
    } catch {
      throw new UnwrapError(`cpio: the entry name at byte ${nameAt} is not valid UTF-8`);
    }
    const namePad = (4 - ((HEADER + entry.nameSize) % 4)) % 4;
    const dataPad = (4 - (entry.fileSize % 4)) % 4;
    if (name === TRAILER) return { kind: "done" };
    if (name.replace(/^\.?\//, "") !== this.wanted) {
      return { kind: "skip", left: namePad, next: { kind: "data", left: entry.fileSize, pad: dataPad } };
    }
    if (this.found) throw new UnwrapError(`cpio: the archive holds ${this.wanted} twice (again at byte ${entry.at})`);
    if ((entry.mode & S_IFMT) !== S_IFREG) {
      throw new UnwrapError(`cpio: ${this.wanted} at byte ${entry.at} is not a regular file (mode 0o${entry.mode.toString(8)})`);
    }
    if (entry.fileSize < 4) throw new UnwrapError(`cpio: ${this.wanted} is ${entry.fileSize} bytes, too small to be a squashfs`);
    this.found = true;
    return { kind: "skip", left: namePad, next: { kind: "keep", left: entry.fileSize, pad: dataPad, magic: new Uint8Array(4), filled: 0 } };
  }

  /** End of input: the image must have held the squashfs, completely. */
  end(): void {
    const s = this.state;
    if (s.kind === "detect") throw new UnwrapError(`the image is too short (${s.head.length} bytes) to be a squashfs or a cpio`);
    if (this.format !== "cpio") return;
    const inEntry =
      s.kind === "name" ||
      s.kind === "data" ||
      s.kind === "keep" ||
      (s.kind === "header" && s.filled > 0) ||
      (s.kind === "skip" && (s.next.kind === "data" || s.next.kind === "keep"));
    if (inEntry) throw new UnwrapError(`cpio: the archive ends inside an entry (byte ${this.offset})`);
    if (!this.found) throw new UnwrapError(`the cpio image holds no ${this.wanted}`);
  }
}
