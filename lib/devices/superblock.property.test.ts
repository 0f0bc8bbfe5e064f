// Property tests ("keep it fixed") for the filesystem probes: seeded random
// and adversarial heads of block devices (each filesystem's magic at its
// offset with random or mutated fields around it, checksums sometimes made
// right so the deeper paths run, truncation at every interesting length).
// probeFilesystem must never throw, must answer in bounded time, must give
// the same answer for the same bytes wherever they sit in memory, and what it
// reports must have the documented shape. The PRNG (mulberry32) and its seed
// are in each test's name. Cheap: no mkfs, no disk images.
import { Gen as BaseGen } from "../testing/prng.ts";
import { SLACK } from "../testing/timed.ts";
import { describe, expect, test } from "bun:test";
import { PROBE_BYTES, probeFilesystem, type FsIdentity } from "./superblock.ts";


class Gen extends BaseGen {
  fill(b: Uint8Array, from: number, to: number): void {
    for (let i = from; i < Math.min(to, b.length); i++) b[i] = this.chance(0.5) ? 0 : this.int(256);
  }
}

const CRC32C_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32cRaw(seed: number, data: Uint8Array): number {
  let c = seed >>> 0;
  for (let i = 0; i < data.length; i++) c = (CRC32C_TABLE[(c ^ data[i]!) & 0xff]! ^ (c >>> 8)) >>> 0;
  return c >>> 0;
}

function put(b: Uint8Array, off: number, bytes: string | number[]): void {
  const arr = typeof bytes === "string" ? Array.from(bytes, (c) => c.charCodeAt(0)) : bytes;
  for (let i = 0; i < arr.length && off + i < b.length; i++) b[off + i] = arr[i]!;
}

type Kind = "verity" | "luks" | "squashfs" | "xfs" | "erofs" | "ext" | "btrfs" | "iso9660" | "swap" | "vfat" | "none";
const KINDS: Kind[] = ["verity", "luks", "squashfs", "xfs", "erofs", "ext", "btrfs", "iso9660", "swap", "vfat", "none"];

/** A device head with `kind`'s magic in place and random, partly plausible fields around it. */
function head(g: Gen, kind: Kind): Uint8Array {
  const b = new Uint8Array(PROBE_BYTES);
  const dv = new DataView(b.buffer);
  switch (kind) {
    case "verity":
      g.fill(b, 0, 512);
      put(b, 0, [0x76, 0x65, 0x72, 0x69, 0x74, 0x79, 0, 0]);
      if (g.chance(0.7)) dv.setUint32(8, 1, true);
      break;
    case "luks":
      g.fill(b, 0, 1024);
      put(b, 0, [0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe]);
      dv.setUint16(6, g.pick([1, 2, 3, 0xffff]));
      break;
    case "squashfs":
      g.fill(b, 0, 96);
      put(b, 0, "hsqs");
      break;
    case "xfs":
      g.fill(b, 0, 4096);
      put(b, 0, "XFSB");
      if (g.chance(0.7)) {
        // Plausible geometry, so that the checks after the magic run to the end.
        const blocklog = g.pick([9, 12, 16, 17]);
        const sectlog = g.pick([9, 12, 15]);
        dv.setUint32(4, 2 ** blocklog, false);
        b[120] = blocklog;
        dv.setUint16(102, 2 ** sectlog, false);
        b[121] = sectlog;
        dv.setUint16(104, g.pick([256, 512, 2048, 4096]), false);
        dv.setUint32(88, g.pick([0, 4]), false);
        dv.setBigUint64(8, g.pick([0n, 1n << 20n]), false);
      }
      dv.setUint16(100, g.pick([0xb4a4, 0xb4a5, 5, 0]), false);
      if ((dv.getUint16(100, false) & 0x0f) === 5 && g.chance(0.7)) {
        const sect = dv.getUint16(102, false);
        if (sect >= 512 && sect <= 4096) {
          dv.setUint32(224, 0, true);
          dv.setUint32(224, ~crc32cRaw(0xffffffff, b.subarray(0, sect)) >>> 0, true);
        }
      }
      break;
    case "erofs":
      g.fill(b, 1024, 1024 + 4096);
      put(b, 1024, [0xe2, 0xe1, 0xf5, 0xe0]);
      b[1024 + 12] = g.pick([9, 12, 16, 0, 255]);
      break;
    case "ext": {
      g.fill(b, 1024, 2048);
      put(b, 1024 + 0x38, [0x53, 0xef]);
      dv.setUint32(1024 + 0x18, g.pick([0, 2, 6, 7, 0xffffffff]), true);
      if (g.chance(0.5)) {
        dv.setUint32(1024 + 0x64, dv.getUint32(1024 + 0x64, true) | 0x400, true);
        if (g.chance(0.7)) dv.setUint32(1024 + 0x3fc, crc32cRaw(0xffffffff, b.subarray(1024, 1024 + 0x3fc)), true);
      }
      break;
    }
    case "btrfs": {
      const sb = 0x10000;
      g.fill(b, sb, sb + 0x1000);
      put(b, sb + 0x40, "_BHRfS_M");
      if (g.chance(0.6)) {
        dv.setUint16(sb + 0xc4, 0, true);
        dv.setUint32(sb, ~crc32cRaw(0xffffffff, b.subarray(sb + 0x20, sb + 0x1000)) >>> 0, true);
      }
      break;
    }
    case "iso9660":
      for (let s = 0; s < 1 + g.int(6); s++) {
        const off = 0x8000 + s * 0x800;
        g.fill(b, off, off + 0x800);
        b[off] = s === 0 ? 1 : g.pick([2, 255, 0]);
        put(b, off + 1, "CD001");
        if (g.chance(0.5)) put(b, off + 88, g.pick(["%/@", "%/C", "%/E", "xyz"]));
      }
      break;
    case "swap": {
      const page = g.pick([4096, 8192, 16384, 32768, 65536]);
      g.fill(b, 1024, 1024 + 64);
      dv.setUint32(1024, g.pick([1, 0x01000000, 2, 0]), true);
      put(b, page - 10, "SWAPSPACE2");
      break;
    }
    case "vfat": {
      g.fill(b, 0, 512);
      const [off, magic] = g.pick([[0x52, "FAT32   "], [0x36, "FAT16   "], [0x36, "FAT12   "], [0x36, "MSDOS"], [0, ""]] as const);
      put(b, off, magic);
      b[0] = 0xeb;
      b[510] = 0x55;
      b[511] = 0xaa;
      dv.setUint16(0x0b, g.pick([512, 4096, 1024, 0, 3]), true);
      b[0x0d] = g.pick([1, 2, 4, 8, 64, 128, 0, 3]);
      dv.setUint16(0x0e, g.pick([1, 32, 0, 0xffff]), true);
      b[0x10] = g.pick([1, 2, 0, 255]);
      b[0x15] = g.pick([0xf8, 0xf0, 0x00]);
      if (g.chance(0.5)) dv.setUint16(0x16, 0, true);
      dv.setUint32(0x2c, g.pick([2, 0, 0xffffffff, g.int(1 << 20)]), true);
      g.fill(b, 512, 16384);
      break;
    }
    case "none":
      g.fill(b, 0, g.int(PROBE_BYTES));
      break;
  }
  // A few stray bytes anywhere, then a random cut (small devices, short reads).
  for (let n = g.int(4); n > 0; n--) b[g.int(b.length)] = g.int(256);
  const cut = g.pick([PROBE_BYTES, PROBE_BYTES, 0, 1, 31, 511, 512, 1100, 2047, 2048, 4095, 32768 + 847, 0x10000 + 0x1000 - 1, g.int(PROBE_BYTES)]);
  return b.subarray(0, cut);
}

const TYPES = new Set(["DM_verity_hash", "crypto_LUKS", "squashfs", "squashfs3", "xfs", "erofs", "ext2", "ext3", "ext4", "jbd", "btrfs", "iso9660", "swap", "vfat"]);

function check(id: FsIdentity | null): void {
  if (id === null) return;
  expect(TYPES.has(id.type)).toBe(true);
  for (const k of Object.keys(id)) expect(["type", "uuid", "label"]).toContain(k);
  if (id.uuid !== undefined) {
    expect(id.uuid.length).toBeGreaterThan(0);
    if (id.type !== "crypto_LUKS" && id.type !== "vfat" && id.type !== "iso9660") {
      expect(id.uuid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      expect(id.uuid).not.toBe("00000000-0000-0000-0000-000000000000");
    }
    if (id.type === "vfat") expect(id.uuid).toMatch(/^[0-9A-F]{4}-[0-9A-F]{4}$/);
  }
  if (id.label !== undefined) {
    expect(id.label.length).toBeGreaterThan(0);
    expect(id.label.includes("\0")).toBe(false);
    expect(/[ \t\n\v\f\r]$/.test(id.label)).toBe(false);
  }
}

function probeTimed(b: Uint8Array): FsIdentity | null {
  const t0 = performance.now();
  let id: FsIdentity | null;
  try {
    id = probeFilesystem(b);
  } catch (e) {
    throw new Error(`probeFilesystem threw on ${b.length} bytes: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
  }
  const ms = performance.now() - t0;
  if (ms > 100 * SLACK) throw new Error(`probeFilesystem took ${ms.toFixed(0)} ms on ${b.length} bytes`);
  return id;
}

describe("probeFilesystem (property)", () => {
  test("mulberry32 seed 0x5b0001: never throws, bounded time, reported identities have the documented shape", () => {
    const g = new Gen(0x5b0001);
    const found = new Map<string, number>();
    for (let i = 0; i < 600; i++) {
      const kind = KINDS[i % KINDS.length]!;
      const id = probeTimed(head(g, kind));
      check(id);
      if (id) found.set(id.type, (found.get(id.type) ?? 0) + 1);
    }
    // The generator reaches the accepting paths of most probes, or the shape checks test little.
    for (const t of ["DM_verity_hash", "crypto_LUKS", "squashfs", "xfs", "erofs", "ext4", "btrfs", "iso9660", "swap", "vfat"]) {
      expect({ type: t, found: (found.get(t) ?? 0) > 0 }).toEqual({ type: t, found: true });
    }
  });

  test("mulberry32 seed 0x5b0002: the same bytes give the same answer wherever they sit in memory", () => {
    const g = new Gen(0x5b0002);
    for (let i = 0; i < 200; i++) {
      const b = head(g, KINDS[i % KINDS.length]!);
      const at = 1 + g.int(15);
      const shifted = new Uint8Array(b.length + at + 3);
      shifted.set(b, at);
      expect(probeTimed(shifted.subarray(at, at + b.length))).toEqual(probeTimed(b));
    }
  });

  test("mulberry32 seed 0x5b0003: every prefix of a recognised head is probed without trouble", () => {
    const g = new Gen(0x5b0003);
    for (let i = 0; i < 40; i++) {
      const b = head(g, KINDS[i % (KINDS.length - 1)]!);
      for (let n = 0; n < 12; n++) check(probeTimed(b.subarray(0, g.int(b.length + 1))));
    }
  });
});
