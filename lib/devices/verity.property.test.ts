// Property tests ("keep it fixed") for the dm-verity superblock parser and the
// tree geometry derived from it: seeded random and adversarial superblocks
// (random bytes, truncation, one-field mutations of a valid superblock,
// overflowing sizes, bad algorithm names). Only VeritySuperblockError may
// come out, valid superblocks round-trip, and every input completes in
// bounded time.
// The PRNG (mulberry32) and its seed are in each test's name.
import { Gen as BaseGen } from "../testing/prng.ts";
import { timed } from "../testing/timed.ts";
import { describe, expect, test } from "bun:test";
import {
  VERITY_SUPERBLOCK_SIZE,
  VeritySuperblockError,
  hashTreeBlocks,
  hashTreeLevels,
  hashTreeTopOffset,
  parseVeritySuperblock,
  rootHashFromTop,
  type VeritySuperblock,
} from "./verity.ts";


class Gen extends BaseGen {
  u32(): number {
    return this.pick([0, 1, 2, 511, 512, 513, 4096, 65536, 524288, 524289, 1 << 20, 0x7fffffff, 0x80000000, 0xffffffff, this.int(0x100000000)]);
  }
}

interface Fields {
  version: number;
  hashType: number;
  uuid: Uint8Array;
  algorithm: string;
  dataBlockSize: number;
  hashBlockSize: number;
  dataBlocks: bigint;
  salt: Uint8Array;
}

/** struct verity_sb as veritysetup writes it. */
function encode(f: Fields, size = VERITY_SUPERBLOCK_SIZE): Uint8Array {
  const b = new Uint8Array(size);
  const v = new DataView(b.buffer);
  b.set([0x76, 0x65, 0x72, 0x69, 0x74, 0x79, 0, 0], 0);
  v.setUint32(8, f.version, true);
  v.setUint32(12, f.hashType, true);
  b.set(f.uuid, 16);
  b.set(Array.from(f.algorithm, (c) => c.charCodeAt(0) & 0xff).slice(0, 32), 32);
  v.setUint32(64, f.dataBlockSize, true);
  v.setUint32(68, f.hashBlockSize, true);
  v.setBigUint64(72, f.dataBlocks, true);
  v.setUint16(80, f.salt.length, true);
  b.set(f.salt.subarray(0, 256), 88);
  return b;
}

const ALGORITHMS = ["sha256", "sha1", "sha512", "sha384", "sha224", "md5"] as const;
const DIGEST: Record<string, number> = { sha256: 32, sha1: 20, sha512: 64, sha384: 48, sha224: 28, md5: 16 };

/** A superblock parseVeritySuperblock must accept. */
function validFields(g: Gen): Fields {
  const algorithm = g.pick(ALGORITHMS);
  const sizes = [512, 1024, 4096, 65536, 524288].filter((s) => s / DIGEST[algorithm]! >= 2);
  const dataBlockSize = g.pick(sizes);
  const maxBlocks = (1n << 64n) / BigInt(dataBlockSize) - 1n;
  const dataBlocks = g.pick([1n, 2n, 127n, 128n, 129n, 260094n, BigInt(1 + g.int(1 << 30)), maxBlocks]);
  return {
    version: 1,
    hashType: g.int(2),
    uuid: g.bytes(16),
    algorithm,
    dataBlockSize,
    hashBlockSize: g.pick(sizes),
    dataBlocks,
    salt: g.bytes(g.pick([0, 1, 32, 255, 256])),
  };
}


/** Parses, returning the VeritySuperblockError instead of throwing it; any other exception fails the test. */
function attempt(block: Uint8Array): VeritySuperblock | VeritySuperblockError {
  try {
    return timed(() => parseVeritySuperblock(block), 50, `superblock of ${block.length} bytes`);
  } catch (e) {
    if (e instanceof VeritySuperblockError) return e;
    throw new Error(`parseVeritySuperblock threw ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
  }
}

/** Geometry of a parsed superblock: never anything but a VeritySuperblockError, always quickly. */
function geometry(sb: VeritySuperblock): void {
  timed(
    () => {
      const levels = hashTreeLevels(sb);
      expect(Number.isInteger(levels) && levels >= 0 && levels <= 64).toBe(true);
      const blocks = hashTreeBlocks(sb);
      expect(blocks >= BigInt(levels)).toBe(true);
      const top = hashTreeTopOffset(sb, 0);
      expect(top % sb.hashBlockSize).toBe(0);
      expect(top).toBeGreaterThanOrEqual(VERITY_SUPERBLOCK_SIZE);
      const want = levels > 0 ? sb.hashBlockSize : sb.dataBlockSize;
      expect(rootHashFromTop(sb, new Uint8Array(want))).toMatch(/^[0-9a-f]+$/);
      expect(() => rootHashFromTop(sb, new Uint8Array(want - 1))).toThrow(VeritySuperblockError);
    },
    100,
    `geometry of ${sb.dataBlocks} blocks`,
  );
}

// Bytes the algorithm name may hold that must not reach the console raw.
const RAW_CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

describe("parseVeritySuperblock (property)", () => {
  test("mulberry32 seed 0xfe0001: valid superblocks round-trip and give a sane geometry", () => {
    const g = new Gen(0xfe0001);
    for (let i = 0; i < 400; i++) {
      const f = validFields(g);
      const block = encode(f, g.pick([512, 4096]));
      const sb = attempt(block);
      if (sb instanceof VeritySuperblockError) throw new Error(`valid superblock refused: ${sb.message}`);
      expect(sb.version).toBe(1);
      expect(sb.hashType).toBe(f.hashType);
      expect(sb.algorithm).toBe(f.algorithm);
      expect(sb.dataBlockSize).toBe(f.dataBlockSize);
      expect(sb.hashBlockSize).toBe(f.hashBlockSize);
      expect(sb.dataBlocks).toBe(f.dataBlocks);
      expect(Array.from(sb.salt)).toEqual(Array.from(f.salt));
      expect(sb.uuid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      geometry(sb);
      // The same bytes at an odd offset of a larger buffer (a view, as reads return them).
      const at = 1 + g.int(7);
      const shifted = new Uint8Array(block.length + at);
      shifted.set(block, at);
      expect(attempt(shifted.subarray(at))).toEqual(sb);
    }
  });

  test("mulberry32 seed 0xfe0002: random bytes, truncations and one-field mutations: only VeritySuperblockError", () => {
    const g = new Gen(0xfe0002);
    let refused = 0;
    for (let i = 0; i < 2000; i++) {
      const r = g.next();
      let block: Uint8Array;
      if (r < 0.15) {
        block = g.bytes(g.int(1100));
      } else if (r < 0.3) {
        block = encode(validFields(g)).subarray(0, g.int(VERITY_SUPERBLOCK_SIZE + 1));
      } else {
        const f = validFields(g);
        switch (g.int(8)) {
          case 0:
            f.version = g.u32();
            break;
          case 1:
            f.hashType = g.u32();
            break;
          case 2:
            f.algorithm = g.pick(["", "SHA256", "sha3-256", "whirlpool", "crc32c", "sha256\x1b[2J", "a".repeat(32), "shake128", "é", "\xff\xfe"]);
            break;
          case 3:
            f.dataBlockSize = g.u32();
            break;
          case 4:
            f.hashBlockSize = g.u32();
            break;
          case 5:
            f.dataBlocks = g.pick([0n, (1n << 64n) - 1n, 1n << 63n, (1n << 64n) / BigInt(f.dataBlockSize)]);
            break;
          case 6:
            f.salt = g.bytes(g.int(256));
            break;
          default: {
            const b = encode(f);
            for (let n = 1 + g.int(4); n > 0; n--) b[g.int(VERITY_SUPERBLOCK_SIZE)] = g.int(256);
            const res = attempt(b);
            if (res instanceof VeritySuperblockError) refused++;
            else geometry(res);
            continue;
          }
        }
        block = encode(f);
        // A salt size beyond 256 can only be written directly.
        if (g.chance(0.1)) new DataView(block.buffer).setUint16(80, 257 + g.int(0xff00), true);
      }
      const res = attempt(block);
      if (res instanceof VeritySuperblockError) {
        refused++;
        expect(res.name).toBe("VeritySuperblockError");
        expect(res.message.length).toBeLessThan(600);
      } else {
        geometry(res);
      }
    }
    expect(refused).toBeGreaterThan(500);
  });

  test("mulberry32 seed 0xfe0003: a 64 MiB buffer is parsed from its first 512 bytes, in bounded time", () => {
    const g = new Gen(0xfe0003);
    const big = new Uint8Array(64 << 20);
    big.set(encode(validFields(g)));
    expect(attempt(big)).not.toBeInstanceOf(VeritySuperblockError);
  });

  // A finding of this test, fixed in verity.ts: the algorithm name from
  // disk went into the message as it was, so a crafted superblock could put
  // escape sequences on the console.
  test("mulberry32 seed 0xfe0004: no raw control character reaches a message", () => {
    const g = new Gen(0xfe0004);
    for (let i = 0; i < 200; i++) {
      const f = validFields(g);
      f.algorithm = `sha${String.fromCharCode(g.int(0x20))}256`;
      const res = attempt(encode(f));
      expect(res).toBeInstanceOf(VeritySuperblockError);
      expect(RAW_CONTROL.test((res as VeritySuperblockError).message)).toBe(false);
    }
  });
});
