// The /usr image is served either as a squashfs or as Flatcar's PXE cpio
// holding usr.squashfs. This turns the verified byte stream into the bytes
// of the squashfs as it flows, so the image is never held twice in RAM (no
// download-then-extract). Pure: a state machine over a byte stream.

export class UnwrapError extends Error {}

const SQUASHFS_MAGIC = [0x68, 0x73, 0x71, 0x73]; // "hsqs"
const CPIO_MAGIC = "070701";
const HEADER = 110;

type State =
  | { kind: "detect"; head: Uint8Array }
  | { kind: "squashfs" }
  | { kind: "header"; buf: Uint8Array; filled: number }
  | { kind: "name"; nameSize: number; fileSize: number; buf: Uint8Array; filled: number }
  | { kind: "data"; left: number; keep: boolean; pad: number }
  | { kind: "skip"; left: number }
  | { kind: "done" };

export class UsrImageUnwrapper {
  private state: State = { kind: "detect", head: new Uint8Array(0) };
  private offset = 0;
  private found = false;
  format: "squashfs" | "cpio" | null = null;

  constructor(private readonly wanted = "usr.squashfs") {}

  /** Feeds bytes in order; returns the squashfs bytes they contain. */
  push(data: Uint8Array): Uint8Array[] {
    const out: Uint8Array[] = [];
    let pos = 0;
    while (pos < data.length) {
      const s = this.state;
      switch (s.kind) {
        case "detect": {
          const need = 6 - s.head.length;
          const head = new Uint8Array(s.head.length + Math.min(need, data.length - pos));
          head.set(s.head);
          head.set(data.subarray(pos, pos + head.length - s.head.length), s.head.length);
          pos += head.length - s.head.length;
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
          if (new TextDecoder().decode(head) !== CPIO_MAGIC) {
            throw new UnwrapError(`the image is neither a squashfs (magic "hsqs") nor a newc cpio (magic "070701"): it starts with ${[...head].map((b) => b.toString(16).padStart(2, "0")).join(" ")}`);
          }
          this.format = "cpio";
          const buf = new Uint8Array(HEADER);
          buf.set(head);
          this.state = { kind: "header", buf, filled: head.length };
          this.offset = 0;
          break;
        }
        case "squashfs":
          out.push(data.subarray(pos));
          pos = data.length;
          break;
        case "header": {
          const take = Math.min(HEADER - s.filled, data.length - pos);
          s.buf.set(data.subarray(pos, pos + take), s.filled);
          s.filled += take;
          pos += take;
          if (s.filled === HEADER) {
            const text = new TextDecoder().decode(s.buf);
            if (text.slice(0, 6) !== CPIO_MAGIC) throw new UnwrapError(`cpio: bad header magic at byte ${this.offset}`);
            const field = (i: number) => parseInt(text.slice(6 + i * 8, 14 + i * 8), 16);
            const fileSize = field(6);
            const nameSize = field(11);
            if (!Number.isFinite(fileSize) || !Number.isFinite(nameSize) || nameSize < 1) throw new UnwrapError(`cpio: malformed header at byte ${this.offset}`);
            this.offset += HEADER;
            this.state = { kind: "name", nameSize, fileSize, buf: new Uint8Array(nameSize), filled: 0 };
          }
          break;
        }
        case "name": {
          const take = Math.min(s.nameSize - s.filled, data.length - pos);
          s.buf.set(data.subarray(pos, pos + take), s.filled);
          s.filled += take;
          pos += take;
          this.offset += take;
          if (s.filled === s.nameSize) {
            const name = new TextDecoder().decode(s.buf.subarray(0, s.nameSize - 1));
            const namePad = (4 - ((HEADER + s.nameSize) % 4)) % 4;
            const dataPad = (4 - (s.fileSize % 4)) % 4;
            if (name === "TRAILER!!!") {
              this.state = { kind: "done" };
              break;
            }
            const keep = name.replace(/^\.?\//, "") === this.wanted;
            if (keep) this.found = true;
            this.state = { kind: "skip", left: namePad };
            // After the name padding, the data.
            this.afterSkip = { kind: "data", left: s.fileSize, keep, pad: dataPad };
          }
          break;
        }
        case "skip": {
          const take = Math.min(s.left, data.length - pos);
          pos += take;
          this.offset += take;
          s.left -= take;
          if (s.left === 0) {
            this.state = this.afterSkip ?? { kind: "header", buf: new Uint8Array(HEADER), filled: 0 };
            this.afterSkip = null;
          }
          break;
        }
        case "data": {
          const take = Math.min(s.left, data.length - pos);
          if (s.keep && take > 0) out.push(data.subarray(pos, pos + take));
          pos += take;
          this.offset += take;
          s.left -= take;
          if (s.left === 0) {
            this.state = { kind: "skip", left: s.pad };
            this.afterSkip = { kind: "header", buf: new Uint8Array(HEADER), filled: 0 };
          }
          break;
        }
        case "done":
          // Boot loaders pad concatenated archives; what follows the trailer is ignored.
          pos = data.length;
          break;
      }
    }
    return out;
  }

  private afterSkip: State | null = null;

  /** End of input: the image must have held the squashfs, completely. */
  end(): void {
    const s = this.state;
    if (s.kind === "detect") throw new UnwrapError(`the image is too short (${s.head.length} bytes) to be a squashfs or a cpio`);
    if (this.format === "cpio") {
      const inEntry = s.kind === "data" || s.kind === "name" || (s.kind === "header" && s.filled > 0) || (s.kind === "skip" && this.afterSkip?.kind === "data");
      if (inEntry) throw new UnwrapError(`cpio: the archive ends inside an entry (byte ${this.offset})`);
      if (!this.found) throw new UnwrapError(`the cpio image holds no ${this.wanted}`);
    }
  }
}
