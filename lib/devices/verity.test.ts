// Tests for verity.ts against hash trees written by `veritysetup format` (cryptsetup-bin): every
// superblock field is compared with `veritysetup dump`, and rootHashFromTop with the root hash
// veritysetup prints, for one-, two-, three- and four-level trees, with and without salt, both
// hash types, and the Flatcar geometry itself (sparse file, about 3 s).
// Needs: cryptsetup-bin (veritysetup), coreutils (truncate).

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readAt, run } from "../testing/host.ts";
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import { createHash } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  VERITY_SUPERBLOCK_SIZE,
  VeritySuperblockError,
  hashTreeBlocks,
  hashTreeLevels,
  hashTreeTopOffset,
  parseVeritySuperblock,
  rootHashFromTop,
} from "./verity.ts";
import type { VeritySuperblock } from "./verity.ts";

let dir = "";

/** Fill a file with random data (so that data blocks, and so hash blocks, differ). */
function makeData(path: string, bytes: number): void {
  const fd = openSync(path, "w");
  try {
    const chunk = new Uint8Array(1 << 16);
    for (let off = 0; off < bytes; off += chunk.length) {
      const n = Math.min(chunk.length, bytes - off);
      crypto.getRandomValues(chunk);
      writeSync(fd, chunk, 0, n, off);
    }
  } finally {
    closeSync(fd);
  }
}

/** `veritysetup dump`/`format` output "Key:   value" lines. */
function fields(out: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of out.split("\n")) {
    const i = line.indexOf(":");
    if (i > 0) m.set(line.slice(0, i).trim(), line.slice(i + 1).trim());
  }
  return m;
}

interface Formatted {
  path: string;
  hashOffset: number;
  rootHash: string;
  dump: Map<string, string>;
}

/** Data and hash area in one file, as on Flatcar's USR partition. */
function format(name: string, dataBlocks: number, opts: { hash?: string; hashBlockSize?: number; salt?: string; format?: 0 | 1; hashOffset?: number; uuid?: string; sparse?: boolean } = {}): Formatted {
  const path = join(dir, name);
  const hashOffset = opts.hashOffset ?? dataBlocks * 4096;
  if (opts.sparse) {
    rmSync(path, { force: true });
    run(["truncate", "-s", String(hashOffset), path]);
  } else makeData(path, hashOffset);
  const args = [
    "veritysetup", "format",
    `--hash=${opts.hash ?? "sha256"}`,
    "--data-block-size=4096",
    `--hash-block-size=${opts.hashBlockSize ?? 4096}`,
    `--data-blocks=${dataBlocks}`,
    `--hash-offset=${hashOffset}`,
  ];
  if (opts.salt !== undefined) args.push(`--salt=${opts.salt}`);
  if (opts.format !== undefined) args.push(`--format=${opts.format}`);
  if (opts.uuid !== undefined) args.push(`--uuid=${opts.uuid}`);
  args.push(path, path);
  const out = fields(run(args));
  const rootHash = out.get("Root hash")!;
  expect(rootHash).toMatch(/^[0-9a-f]+$/);
  const dump = fields(run(["veritysetup", "dump", `--hash-offset=${hashOffset}`, path]));
  return { path, hashOffset, rootHash, dump };
}

function superblockOf(f: Formatted): VeritySuperblock {
  return parseVeritySuperblock(readAt(f.path, f.hashOffset, 4096));
}

/** The init's check, end to end: superblock, top block, recomputed root. */
function rootOnDisk(f: Formatted): string {
  const sb = superblockOf(f);
  const levels = hashTreeLevels(sb);
  const top = levels > 0 ? readAt(f.path, hashTreeTopOffset(sb, f.hashOffset), sb.hashBlockSize) : readAt(f.path, 0, sb.dataBlockSize);
  return rootHashFromTop(sb, top);
}

function expectMatchesDump(sb: VeritySuperblock, f: Formatted): void {
  const d = f.dump;
  expect(sb.uuid).toBe(d.get("UUID")!);
  expect(sb.hashType).toBe(Number(d.get("Hash type")));
  expect(sb.dataBlocks).toBe(BigInt(d.get("Data blocks")!));
  expect(sb.dataBlockSize).toBe(Number(d.get("Data block size")));
  expect(sb.hashBlockSize).toBe(Number(d.get("Hash block size")));
  expect(sb.algorithm).toBe(d.get("Hash algorithm")!);
  expect(Buffer.from(sb.salt).toString("hex")).toBe(d.get("Salt") === "-" ? "" : d.get("Salt")!);
  expect(hashTreeBlocks(sb)).toBe(BigInt(d.get("Hash blocks")!));
  expect(sb.version).toBe(1);
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "bunboot-verity-"));
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("trees made by veritysetup format", () => {
  test("two levels: 40 MiB of data (10240 blocks), random salt", () => {
    const f = format("two.img", 10240, { uuid: "0badc0de-1234-4567-89ab-cdef01234567" });
    const sb = superblockOf(f);
    expectMatchesDump(sb, f);
    expect(sb.uuid).toBe("0badc0de-1234-4567-89ab-cdef01234567");
    expect(sb.salt.length).toBe(32);
    expect(hashTreeLevels(sb)).toBe(2);
    expect(hashTreeBlocks(sb)).toBe(81n); // 80 bottom-level blocks + the top block
    expect(hashTreeTopOffset(sb, f.hashOffset)).toBe(f.hashOffset + 4096);
    expect(rootOnDisk(f)).toBe(f.rootHash);
    // the documented formula, spelled out
    const top = readAt(f.path, f.hashOffset + 4096, 4096);
    expect(createHash("sha256").update(sb.salt).update(top).digest("hex")).toBe(f.rootHash);
  });

  test("one level: 100 data blocks", () => {
    const f = format("one.img", 100);
    const sb = superblockOf(f);
    expectMatchesDump(sb, f);
    expect(hashTreeLevels(sb)).toBe(1);
    expect(hashTreeBlocks(sb)).toBe(1n);
    expect(rootOnDisk(f)).toBe(f.rootHash);
  });

  test("level boundaries: 128 blocks is one level, 129 is two", () => {
    const a = format("b128.img", 128);
    expect(hashTreeLevels(superblockOf(a))).toBe(1);
    expect(rootOnDisk(a)).toBe(a.rootHash);
    const b = format("b129.img", 129);
    expect(hashTreeLevels(superblockOf(b))).toBe(2);
    expectMatchesDump(superblockOf(b), b);
    expect(rootOnDisk(b)).toBe(b.rootHash);
  });

  test("no salt (--salt=-)", () => {
    const f = format("nosalt.img", 2000, { salt: "-" });
    const sb = superblockOf(f);
    expect(sb.salt.length).toBe(0);
    expectMatchesDump(sb, f);
    expect(rootOnDisk(f)).toBe(f.rootHash);
    const top = readAt(f.path, f.hashOffset + 4096, 4096);
    expect(createHash("sha256").update(top).digest("hex")).toBe(f.rootHash);
  });

  test("explicit short salt", () => {
    const f = format("salt.img", 300, { salt: "0011223344" });
    const sb = superblockOf(f);
    expect(Buffer.from(sb.salt).toString("hex")).toBe("0011223344");
    expect(rootOnDisk(f)).toBe(f.rootHash);
  });

  test("hash type 0 (Chrome OS): salt after the block", () => {
    const f = format("chromeos.img", 1000, { format: 0 });
    const sb = superblockOf(f);
    expect(sb.hashType).toBe(0);
    expectMatchesDump(sb, f);
    expect(rootOnDisk(f)).toBe(f.rootHash);
    const top = readAt(f.path, f.hashOffset + 4096, 4096);
    expect(createHash("sha256").update(top).update(sb.salt).digest("hex")).toBe(f.rootHash);
    // the type-1 formula would give something else
    expect(createHash("sha256").update(sb.salt).update(top).digest("hex")).not.toBe(f.rootHash);
  });

  test("four levels: 512-byte hash blocks (16 digests each) over 10240 data blocks", () => {
    const f = format("small-hash-blocks.img", 10240, { hashBlockSize: 512 });
    const sb = superblockOf(f);
    expectMatchesDump(sb, f);
    expect(hashTreeLevels(sb)).toBe(4);
    expect(hashTreeTopOffset(sb, f.hashOffset)).toBe(f.hashOffset + 512);
    expect(rootOnDisk(f)).toBe(f.rootHash);
  });

  test("other digests: sha1 (20 bytes, 128 per block) and sha512 (64 bytes, 64 per block)", () => {
    for (const [hash, levels] of [["sha1", 2], ["sha512", 2]] as const) {
      const f = format(`${hash}.img`, 3000, { hash });
      const sb = superblockOf(f);
      expect(sb.algorithm).toBe(hash);
      expectMatchesDump(sb, f);
      expect(hashTreeLevels(sb)).toBe(levels);
      expect(rootOnDisk(f)).toBe(f.rootHash);
    }
    // 4100 blocks: sha1 still fits 2 levels (128^2), sha512 needs 3 (64^2 = 4096)
    const f = format("sha512-3.img", 4100, { hash: "sha512" });
    expect(hashTreeLevels(superblockOf(f))).toBe(3);
    expectMatchesDump(superblockOf(f), f);
    expect(rootOnDisk(f)).toBe(f.rootHash);
  });

  test("a single data block has no tree: the root is the salted digest of the data block", () => {
    const f = format("single.img", 1);
    const sb = superblockOf(f);
    expect(hashTreeLevels(sb)).toBe(0);
    expect(hashTreeBlocks(sb)).toBe(0n);
    expectMatchesDump(sb, f);
    expect(rootOnDisk(f)).toBe(f.rootHash);
    expect(() => rootHashFromTop(sb, new Uint8Array(100))).toThrow(/data block must be 4096 bytes/);
  });

  test("hash offset not aligned to the hash block size", () => {
    // superblock at 1 MiB + 512, so the tree starts at the next 4 KiB boundary after it
    const f = format("unaligned.img", 256, { hashOffset: 1048576 + 512 });
    const sb = superblockOf(f);
    expect(hashTreeTopOffset(sb, f.hashOffset)).toBe(1048576 + 4096);
    expect(rootOnDisk(f)).toBe(f.rootHash);
  });

  test("Flatcar geometry: 260094 data blocks at hash offset 1065345024 (3 levels)", () => {
    const f = format("flatcar-usr.img", 260094, { hashOffset: 1065345024, sparse: true });
    const sb = superblockOf(f);
    expectMatchesDump(sb, f);
    expect(hashTreeLevels(sb)).toBe(3);
    expect(hashTreeBlocks(sb)).toBe(2032n + 16n + 1n);
    expect(hashTreeTopOffset(sb, f.hashOffset)).toBe(1065345024 + 4096);
    expect(rootOnDisk(f)).toBe(f.rootHash);
  }, 60_000);
});

describe("wrong offsets and wrong input", () => {
  let f: Formatted;
  beforeAll(() => {
    f = format("errors.img", 2000);
  });

  test("superblock looked for at the wrong offset", () => {
    // data at offset 0
    expect(() => parseVeritySuperblock(readAt(f.path, 0, 4096))).toThrow(VeritySuperblockError);
    expect(() => parseVeritySuperblock(readAt(f.path, 0, 4096))).toThrow(/hash offset is probably wrong/);
    // one block too far: the top hash block
    expect(() => parseVeritySuperblock(readAt(f.path, f.hashOffset + 4096, 4096))).toThrow(/expected "verity\\0\\0"/);
    // an unwritten area
    expect(() => parseVeritySuperblock(new Uint8Array(4096))).toThrow(/all zero/);
    // past the end of the device
    expect(() => parseVeritySuperblock(readAt(f.path, f.hashOffset + 100 * 4096, 4096))).toThrow(/need 512 bytes, got 0/);
  });

  test("wrong top block gives a different root, not an exception", () => {
    const sb = superblockOf(f);
    const notTop = readAt(f.path, f.hashOffset + 2 * 4096, 4096);
    expect(rootHashFromTop(sb, notTop)).not.toBe(f.rootHash);
    expect(() => rootHashFromTop(sb, notTop.subarray(0, 512))).toThrow(/top hash block must be 4096 bytes, got 512/);
  });

  test("corrupt superblock fields", () => {
    const good = readAt(f.path, f.hashOffset, 4096);
    const edit = (fn: (v: DataView, b: Uint8Array) => void): Uint8Array => {
      const b = good.slice();
      fn(new DataView(b.buffer), b);
      return b;
    };
    expect(parseVeritySuperblock(good).dataBlocks).toBe(2000n);
    expect(() => parseVeritySuperblock(edit((v) => v.setUint32(8, 2, true)))).toThrow(/version 2/);
    expect(() => parseVeritySuperblock(edit((v) => v.setUint32(12, 7, true)))).toThrow(/hash type 7/);
    expect(() => parseVeritySuperblock(edit((_, b) => b.set(new TextEncoder().encode("nohash\0"), 32)))).toThrow(/algorithm "nohash" is not supported/);
    expect(() => parseVeritySuperblock(edit((_, b) => b.fill(0, 32, 64)))).toThrow(/no hash algorithm/);
    expect(() => parseVeritySuperblock(edit((_, b) => b.fill(0x61, 32, 64)))).toThrow(/not NUL-terminated/);
    expect(() => parseVeritySuperblock(edit((v) => v.setUint32(64, 1000, true)))).toThrow(/data block size 1000/);
    expect(() => parseVeritySuperblock(edit((v) => v.setUint32(68, 256, true)))).toThrow(/hash block size 256/);
    expect(() => parseVeritySuperblock(edit((v) => v.setBigUint64(72, 0n, true)))).toThrow(/0 data blocks/);
    expect(() => parseVeritySuperblock(edit((v) => v.setBigUint64(72, 1n << 62n, true)))).toThrow(/overflows/);
    expect(() => parseVeritySuperblock(edit((v) => v.setUint16(80, 257, true)))).toThrow(/salt size 257/);
    expect(() => parseVeritySuperblock(good.subarray(0, VERITY_SUPERBLOCK_SIZE - 1))).toThrow(/need 512 bytes/);
    // exactly 512 bytes is enough
    expect(parseVeritySuperblock(good.subarray(0, VERITY_SUPERBLOCK_SIZE)).algorithm).toBe("sha256");
  });

  test("hashTreeLevels from the formula alone", () => {
    const sb = (dataBlocks: bigint, hashBlockSize = 4096, algorithm = "sha256"): VeritySuperblock => ({
      version: 1, hashType: 1, uuid: "", algorithm, dataBlockSize: 4096, hashBlockSize, dataBlocks, salt: new Uint8Array(),
    });
    expect(hashTreeLevels(sb(1n))).toBe(0);
    expect(hashTreeLevels(sb(2n))).toBe(1);
    expect(hashTreeLevels(sb(128n))).toBe(1);
    expect(hashTreeLevels(sb(129n))).toBe(2);
    expect(hashTreeLevels(sb(16384n))).toBe(2);
    expect(hashTreeLevels(sb(16385n))).toBe(3);
    expect(hashTreeLevels(sb(2097152n))).toBe(3);
    expect(hashTreeLevels(sb(2097153n))).toBe(4);
    expect(hashTreeLevels(sb(1n << 40n))).toBe(6);
    expect(hashTreeLevels(sb(0xffff_ffff_ffff_ffffn))).toBe(10); // 7 bits per level, capped at 64 bits
  });
});
