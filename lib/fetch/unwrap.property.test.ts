// Property tests for the streaming unwrapper: seeded random archives cut at
// random places, and adversarial headers. Whatever the input, the unwrapper
// must finish quickly with output or an UnwrapError, never loop, never throw
// anything else, and never emit bytes that do not start a squashfs.
import { mulberry32 } from "../testing/prng.ts";
import { SLACK } from "../testing/timed.ts";
import { describe, expect, test } from "bun:test";
import { encodeNewc, type CpioEntry } from "../initrd/cpio.ts";
import { UnwrapError, UsrImageUnwrapper } from "./unwrap.ts";


const SEED = 0x5eed_b007;

function bytes(rand: () => number, n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rand() * 256);
  return b;
}

function int(rand: () => number, lo: number, hi: number): number {
  return lo + Math.floor(rand() * (hi - lo + 1));
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** A valid archive with usr.squashfs somewhere among other entries. */
function randomArchive(rand: () => number): { archive: Uint8Array; squash: Uint8Array } {
  const squash = concat([new TextEncoder().encode("hsqs"), bytes(rand, int(rand, 0, 3000))]);
  const entries: CpioEntry[] = [];
  const others = int(rand, 0, 5);
  for (let i = 0; i < others; i++) {
    const path = `d${i}/f${"x".repeat(int(rand, 0, 40))}`;
    const r = rand();
    if (r < 0.5) entries.push({ kind: "file", path, data: bytes(rand, int(rand, 0, 700)) });
    else if (r < 0.7) entries.push({ kind: "symlink", path, target: "t".repeat(int(rand, 1, 30)) });
    else entries.push({ kind: "dir", path });
  }
  entries.splice(int(rand, 0, entries.length), 0, { kind: "file", path: "usr.squashfs", data: squash });
  // Boot loaders pad after the trailer.
  const archive = concat([...encodeNewc(entries), new Uint8Array(int(rand, 0, 3) * 512)]);
  return { archive, squash };
}

/** Feeds the input in random pieces; returns the output or the error. */
function unwrapInPieces(input: Uint8Array, rand: () => number, maxPiece: number): Uint8Array | Error {
  const u = new UsrImageUnwrapper();
  const out: Uint8Array[] = [];
  try {
    let i = 0;
    while (i < input.length) {
      const n = int(rand, 1, maxPiece);
      for (const piece of u.push(input.subarray(i, i + n))) out.push(piece);
      i += n;
    }
    u.end();
  } catch (e) {
    return e as Error;
  }
  return concat(out);
}

function oneShot(input: Uint8Array): Uint8Array | Error {
  const u = new UsrImageUnwrapper();
  try {
    const out = concat(u.push(input));
    u.end();
    return out;
  } catch (e) {
    return e as Error;
  }
}

const ADVERSARIAL_FIELDS = [
  "-0000070",
  "-0000001",
  "+0000010",
  "FFFFFFFF",
  "7FFFFFFF",
  "80000000",
  "00001001",
  "0x000010",
  "1e+00000",
  "        ",
  "\0\0\0\0\0\0\0\0",
  "NaN00000",
  "Infinity",
  "0000000g",
  "ffffffff",
  "00000000",
];

/** One-shot and piecewise must agree, finish fast, and fail only with UnwrapError. */
function checkAdversarial(input: Uint8Array, rand: () => number): void {
  const t0 = performance.now();
  const whole = oneShot(input);
  const pieces = unwrapInPieces(input, rand, 64);
  const ms = performance.now() - t0;
  expect(ms).toBeLessThan(250 * SLACK);
  for (const r of [whole, pieces]) {
    if (r instanceof Error) {
      expect(r).toBeInstanceOf(UnwrapError);
      // Messages stay short enough for a console line or two.
      expect(r.message.length).toBeLessThan(400);
    } else {
      // Nothing but a squashfs comes out, and never more bytes than went in.
      expect(r.length).toBeGreaterThanOrEqual(4);
      expect([...r.subarray(0, 4)]).toEqual([0x68, 0x73, 0x71, 0x73]);
      expect(r.length).toBeLessThanOrEqual(input.length);
    }
  }
  // Cutting the input into pieces never changes the verdict.
  if (whole instanceof Error) expect(pieces instanceof Error ? pieces.message : "no error").toBe(whole.message);
  else expect(pieces).toEqual(whole);
}

describe("unwrapper properties (seeded)", () => {
  test("random chunking of valid archives gives exactly the one-shot output", () => {
    const rand = mulberry32(SEED);
    for (let n = 0; n < 150; n++) {
      const { archive, squash } = randomArchive(rand);
      const whole = oneShot(archive);
      expect(whole).toEqual(squash);
      for (const maxPiece of [1, 3, 111, 4096]) expect(unwrapInPieces(archive, rand, maxPiece)).toEqual(squash);
    }
  });

  test("a header field replaced by a negative, overflowing, non-hex or NUL value", () => {
    const rand = mulberry32(SEED + 1);
    for (let n = 0; n < 300; n++) {
      const { archive } = randomArchive(rand);
      const bad = Uint8Array.from(archive);
      // The first header, or one further in (the headers are at 4-byte aligned offsets; pick any).
      const field = int(rand, 0, 12);
      const value = ADVERSARIAL_FIELDS[int(rand, 0, ADVERSARIAL_FIELDS.length - 1)]!;
      const at = rand() < 0.5 ? 0 : findHeader(bad, rand);
      bad.set(new TextEncoder().encode(value).subarray(0, 8), at + 6 + field * 8);
      checkAdversarial(bad, rand);
    }
  });

  test("random byte mutations, truncations and garbage", () => {
    const rand = mulberry32(SEED + 2);
    const alphabet = [0x2d, 0x2b, 0x20, 0x00, 0xff, 0x78, 0x30, 0x46, 0x66, 0x67, 0x0a];
    for (let n = 0; n < 300; n++) {
      const { archive } = randomArchive(rand);
      let bad: Uint8Array = Uint8Array.from(archive);
      const kind = n % 3;
      if (kind === 0) {
        for (let k = int(rand, 1, 8); k > 0; k--) {
          const i = rand() < 0.7 ? int(rand, 0, Math.min(bad.length - 1, 400)) : int(rand, 0, bad.length - 1);
          bad[i] = rand() < 0.5 ? alphabet[int(rand, 0, alphabet.length - 1)]! : int(rand, 0, 255);
        }
      } else if (kind === 1) {
        bad = bad.subarray(0, int(rand, 0, bad.length - 1));
      } else {
        bad = concat([new TextEncoder().encode(rand() < 0.5 ? "070701" : ""), bytes(rand, int(rand, 0, 2000))]);
      }
      checkAdversarial(bad, rand);
    }
  });

  test("huge name sizes and file sizes are refused or reported as truncation, without allocating them", () => {
    const rand = mulberry32(SEED + 3);
    for (const namesize of ["00001001", "FFFFFFFF", "7FFFFFFF", "00000FFF", "00001000"]) {
      const { archive } = randomArchive(rand);
      const bad = Uint8Array.from(archive);
      bad.set(new TextEncoder().encode(namesize), 6 + 11 * 8);
      checkAdversarial(bad, rand);
    }
    for (const filesize of ["FFFFFFFF", "7FFFFFFF", "80000000"]) {
      const { archive } = randomArchive(rand);
      const bad = Uint8Array.from(archive);
      bad.set(new TextEncoder().encode(filesize), 6 + 6 * 8);
      const r = oneShot(bad);
      expect(r).toBeInstanceOf(UnwrapError);
    }
  });
});

/** Offset of a random header of the archive (walking it as the unwrapper would). */
function findHeader(archive: Uint8Array, rand: () => number): number {
  const offsets: number[] = [];
  let at = 0;
  const dec = new TextDecoder();
  while (at + 110 <= archive.length && dec.decode(archive.subarray(at, at + 6)) === "070701") {
    offsets.push(at);
    const field = (i: number) => parseInt(dec.decode(archive.subarray(at + 6 + i * 8, at + 14 + i * 8)), 16);
    const namesize = field(11);
    const filesize = field(6);
    const name = dec.decode(archive.subarray(at + 110, at + 110 + namesize - 1));
    if (name === "TRAILER!!!") break;
    at += Math.ceil((110 + namesize) / 4) * 4;
    at += Math.ceil(filesize / 4) * 4;
  }
  return offsets[int(rand, 0, offsets.length - 1)]!;
}
