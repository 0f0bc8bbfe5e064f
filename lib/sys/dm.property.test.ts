// Property tests for the device-mapper buffers (lib/sys/dm.ts): seeded random
// tables survive a request encoding read back the way the kernel's
// populate_table() reads it, and a reply laid out the way retrieve_status()
// writes it; random and mutated replies give either targets inside the
// buffer or a DmError, always in bounded time.
// The PRNG (mulberry32) and its seed are in each test's name.
import { describe, expect, test } from "bun:test";
import { Gen } from "../testing/prng.ts";
import { timed } from "../testing/timed.ts";
import { decodeTargets, DM_FLAG, DM_IOCTL_SIZE, DM_OFF, DM_TARGET_SPEC_SIZE, DmError, encodeDmIoctl, verityTarget, type DmTableReply, type DmTarget } from "./dm.ts";

const TYPES = ["linear", "verity", "error", "zero", "striped", "crypt", "a", "fifteen-chars-x"];

function randomTarget(g: Gen): DmTarget {
  // Printable ASCII, spaces included: the kernel splits the string itself.
  const params = Array.from({ length: g.pick([0, 1, 7, 8, 9, 63, 300]) }, () => String.fromCharCode(0x20 + g.int(0x5f))).join("");
  return { start: BigInt(g.int(1 << 30)) * BigInt(1 + g.int(1000)), length: BigInt(1 + g.int(1 << 30)), type: g.pick(TYPES), params };
}

/**
 * The kernel's populate_table() and next_target() over a request (Linux 6.x,
 * with the stricter checks of 2023): the first spec at data_start from the
 * header, each further one `next` bytes after the current one, 8-byte aligned,
 * with room for a spec and a NUL, the parameters NUL-terminated in the buffer.
 */
function kernelReadsRequest(b: Uint8Array): DmTarget[] {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const size = v.getUint32(DM_OFF.dataSize, true);
  expect(size).toBe(b.length);
  let last = 0;
  let next = v.getUint32(DM_OFF.dataStart, true);
  const out: DmTarget[] = [];
  for (let i = 0; i < v.getUint32(DM_OFF.targetCount, true); i++) {
    expect(next).toBeGreaterThanOrEqual(i === 0 ? DM_IOCTL_SIZE : DM_TARGET_SPEC_SIZE);
    expect(next % 8).toBe(0);
    expect(size - last - DM_TARGET_SPEC_SIZE > next).toBe(true);
    const at = last + next;
    const nul = b.indexOf(0, at + DM_TARGET_SPEC_SIZE);
    expect(nul).toBeGreaterThanOrEqual(0);
    const type = b.subarray(at + 24, at + 40);
    out.push({
      start: v.getBigUint64(at, true),
      length: v.getBigUint64(at + 8, true),
      type: new TextDecoder().decode(type.subarray(0, type.indexOf(0))),
      params: new TextDecoder().decode(b.subarray(at + DM_TARGET_SPEC_SIZE, nul)),
    });
    last = at;
    next = v.getUint32(at + 20, true);
  }
  return out;
}

/** A reply as retrieve_status() writes it into a buffer of `size` bytes (BUFFER_FULL when it does not fit). */
function kernelWritesReply(targets: DmTarget[], size: number): Uint8Array {
  const b = new Uint8Array(size);
  const v = new DataView(b.buffer);
  [4, 48, 0].forEach((x, i) => v.setUint32(4 * i, x, true));
  v.setUint32(DM_OFF.dataSize, DM_IOCTL_SIZE, true);
  v.setUint32(DM_OFF.dataStart, DM_IOCTL_SIZE, true);
  v.setUint32(DM_OFF.targetCount, targets.length, true);
  b.set(new TextEncoder().encode("usr"), DM_OFF.name);
  let at = DM_IOCTL_SIZE;
  for (const t of targets) {
    const p = new TextEncoder().encode(t.params);
    if (size - at <= DM_TARGET_SPEC_SIZE || at + DM_TARGET_SPEC_SIZE + p.length + 1 > size) {
      v.setUint32(DM_OFF.flags, DM_FLAG.BUFFER_FULL, true);
      break;
    }
    v.setBigUint64(at, t.start, true);
    v.setBigUint64(at + 8, t.length, true);
    b.set(new TextEncoder().encode(t.type), at + 24);
    b.set(p, at + DM_TARGET_SPEC_SIZE);
    const end = at + DM_TARGET_SPEC_SIZE + p.length + 1;
    v.setUint32(DM_OFF.dataSize, end, true);
    const next = (end + 7) & ~7;
    // In a reply, next counts from the first spec.
    v.setUint32(at + 20, next - DM_IOCTL_SIZE, true);
    at = next;
  }
  return b;
}

/** Decodes, returning the DmError instead of throwing it; any other exception fails the test. */
function attempt(b: Uint8Array): DmTableReply | DmError {
  try {
    return timed(() => decodeTargets(b), 50, `reply of ${b.length} bytes`);
  } catch (e) {
    if (e instanceof DmError) return e;
    throw new Error(`decodeTargets threw ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
  }
}

describe("device-mapper buffers (property)", () => {
  test("mulberry32 seed 0xd30001: random tables read back from a request as the kernel reads it", () => {
    const g = new Gen(0xd30001);
    for (let i = 0; i < 500; i++) {
      const targets = Array.from({ length: 1 + g.int(6) }, () => randomTarget(g));
      const b = encodeDmIoctl({ name: "usr", targets, flags: DM_FLAG.READONLY });
      expect(b.length % 8).toBe(0);
      expect(kernelReadsRequest(b)).toEqual(targets);
    }
  });

  test("mulberry32 seed 0xd30002: random tables read back from a reply, or BUFFER_FULL when it did not fit", () => {
    const g = new Gen(0xd30002);
    let full = 0;
    for (let i = 0; i < 500; i++) {
      const targets = Array.from({ length: g.int(6) }, () => randomTarget(g));
      const size = g.pick([DM_IOCTL_SIZE, 400, 1024, 4096, 16384]);
      const r = attempt(kernelWritesReply(targets, size));
      if (r instanceof DmError) throw new Error(`a well-formed reply was refused: ${r.message}`);
      if (r.kind === "full") full++;
      else expect(r.targets).toEqual(targets);
    }
    expect(full).toBeGreaterThan(50);
  });

  test("mulberry32 seed 0xd30003: mutated and random replies give targets within data_size or a DmError, quickly", () => {
    const g = new Gen(0xd30003);
    let refused = 0;
    for (let i = 0; i < 3000; i++) {
      let b: Uint8Array;
      if (g.chance(0.1)) {
        b = g.bytes(g.pick([0, 100, 311, 312, 313, 500, 4096]));
        // Mostly a plausible header, so the walk itself is reached.
        if (b.length >= DM_IOCTL_SIZE && g.chance(0.8)) new DataView(b.buffer).setUint32(0, 4, true);
      } else {
        b = kernelWritesReply(Array.from({ length: 1 + g.int(4) }, () => randomTarget(g)), 4096);
        const v = new DataView(b.buffer);
        for (let n = 1 + g.int(3); n > 0; n--) {
          switch (g.int(6)) {
            case 0:
              v.setUint32(DM_OFF.dataSize, g.pick([0, 311, 312, 4095, 4096, 4097, 0xffffffff, g.int(5000)]), true);
              break;
            case 1:
              v.setUint32(DM_OFF.dataStart, g.pick([0, 311, 312, 313, 4096, 0xffffffff, g.int(5000)]), true);
              break;
            case 2:
              v.setUint32(DM_OFF.targetCount, g.pick([0, 1, 5, 1000, 0xffffffff]), true);
              break;
            case 3:
              // A spec's next: anywhere, including backwards and beyond the buffer.
              v.setUint32(DM_IOCTL_SIZE + 8 * g.int(100) + 20, g.pick([0, 8, 40, 48, 0xfffffff8, g.int(8192)]), true);
              break;
            case 4:
              // Overwrite NULs so strings run on.
              b.fill(0x41, DM_IOCTL_SIZE + g.int(3000), DM_IOCTL_SIZE + g.int(3784));
              break;
            default:
              b[g.int(b.length)] = g.int(256);
          }
        }
      }
      const r = attempt(b);
      if (r instanceof DmError) {
        refused++;
        expect(r.message.length).toBeLessThan(300);
        continue;
      }
      if (r.kind === "ok") {
        const { dataSize, dataStart } = r.header;
        expect(dataSize).toBeLessThanOrEqual(b.length);
        // Each target's spec and string came from between data_start and
        // data_size, without overlap (a decoded character takes at least a byte).
        const bytes = r.targets.reduce((n, t) => n + DM_TARGET_SPEC_SIZE + t.params.length + 1, 0);
        if (r.targets.length > 0) expect(bytes).toBeLessThanOrEqual(dataSize - dataStart);
      }
    }
    expect(refused).toBeGreaterThan(500);
  });

  test("mulberry32 seed 0xd30004: verity lines of random geometry load and read back unchanged", () => {
    const g = new Gen(0xd30004);
    for (let i = 0; i < 300; i++) {
      const dbs = 512 << g.int(11);
      const t = verityTarget({
        dataDev: `${g.int(4096)}:${g.int(1 << 20)}`,
        hashDev: `${g.int(4096)}:${g.int(1 << 20)}`,
        hashType: g.int(2),
        dataBlockSize: dbs,
        hashBlockSize: 512 << g.int(11),
        dataBlocks: BigInt(1 + g.int(0x7fffffff)),
        hashStartBlock: BigInt(g.int(0x7fffffff)),
        algorithm: g.pick(["sha256", "sha1", "sha512"]),
        rootHash: Buffer.from(g.bytes(g.pick([20, 32, 64]))).toString("hex"),
        salt: g.bytes(g.pick([0, 1, 32, 256])),
        options: g.pick([[], ["panic_on_corruption"], ["ignore_zero_blocks", "check_at_most_once"]]),
      });
      // Ten positional fields, then the option count and that many options.
      const f = t.params.split(" ");
      expect(f.length).toBe(f.length > 10 ? 11 + Number(f[10]) : 10);
      expect(kernelReadsRequest(encodeDmIoctl({ name: "usr", targets: [t] }))).toEqual([t]);
      const r = attempt(kernelWritesReply([t], 16384));
      expect(r).toEqual({ kind: "ok", header: expect.anything(), targets: [t] });
    }
  });
});
