// Tests for superblock.ts: images made by the real mkfs tools, probed from their first
// PROBE_BYTES, compared with `blkid -p -o export` on the same image (TYPE, UUID and LABEL must
// be identical, byte for byte). Superblocks with bad checksums are judged by each filesystem's
// own tool (dumpe2fs, btrfs, xfs_db, fsck.erofs), as blkid 2.38 does not verify them.
// Needs: util-linux (blkid, mkswap), e2fsprogs, dosfstools, squashfs-tools, cryptsetup-bin,
// fdisk; optional (tests skipped if missing): btrfs-progs, xfsprogs, erofs-utils, genisoimage.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readAt, run, tool, writeAt } from "../testing/host.ts";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PROBE_BYTES, probeFilesystem } from "./superblock.ts";
import type { FsIdentity } from "./superblock.ts";

let dir = "";
let srcDir = "";

function which(cmd: string): boolean {
  return Bun.which(cmd, { PATH: `${process.env.PATH ?? ""}:/usr/sbin:/sbin` }) !== null;
}

function img(name: string, size: string): string {
  const p = join(dir, name);
  rmSync(p, { force: true });
  run(["truncate", "-s", size, p]);
  return p;
}

/**
 * Undo blkid's safe_print() escaping of export values: "\x" is a literal x, "M-x" a byte with the
 * high bit set (cat -v style), "^X" a control character. Returns the raw bytes decoded as UTF-8.
 */
function unescapeBlkid(s: string): string {
  const out: number[] = [];
  let i = 0;
  const one = (): number => {
    if (s[i] === "\\") i++;
    return s.charCodeAt(i++);
  };
  while (i < s.length) {
    if (s.startsWith("M-", i)) {
      i += 2;
      if (s[i] === "^") {
        i++;
        out.push(0x80 | (s.charCodeAt(i++) ^ 0x40));
      } else out.push(0x80 | one());
    } else if (s[i] === "^" && i + 1 < s.length) {
      i++;
      out.push(s.charCodeAt(i++) ^ 0x40);
    } else out.push(one());
  }
  return new TextDecoder().decode(Uint8Array.from(out));
}

/** What blkid -p says, as an FsIdentity (null when it finds no filesystem signature). */
function blkid(path: string): FsIdentity | null {
  const p = Bun.spawnSync(["blkid", "-p", "-o", "export", path], { stdout: "pipe", stderr: "pipe" });
  if (p.exitCode === 2) return null; // nothing found
  if (p.exitCode !== 0) throw new Error(`blkid -p ${path} failed (${p.exitCode}): ${p.stderr.toString()}`);
  const kv = new Map<string, string>();
  for (const line of p.stdout.toString().split("\n")) {
    const eq = line.indexOf("=");
    if (eq > 0) kv.set(line.slice(0, eq), unescapeBlkid(line.slice(eq + 1)));
  }
  const type = kv.get("TYPE");
  if (type === undefined) return null; // e.g. only PTTYPE (a partitioned disk)
  const id: FsIdentity = { type };
  const uuid = kv.get("UUID");
  const label = kv.get("LABEL");
  if (uuid !== undefined) id.uuid = uuid;
  if (label !== undefined) id.label = label;
  return id;
}

function probe(path: string): FsIdentity | null {
  return probeFilesystem(readAt(path, 0, PROBE_BYTES));
}

/** The core assertion: our probe agrees with blkid exactly, and with what the test expects. */
function expectLikeBlkid(path: string, expected: FsIdentity): void {
  const ours = probe(path);
  expect(ours).toEqual(blkid(path));
  expect(ours).toEqual(expected);
}

// Independent CRC32C (bitwise) for tests that edit a checksummed superblock on purpose; blkid
// verifies the result, so this does not test the module against itself.
function crc32cRaw(seed: number, data: Uint8Array): number {
  let c = seed >>> 0;
  for (const byte of data) {
    c ^= byte;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return c >>> 0;
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "bunboot-sb-"));
  srcDir = join(dir, "src");
  mkdirSync(join(srcDir, "lib/flatcar"), { recursive: true });
  writeFileSync(join(srcDir, "lib/flatcar/bootengine.img"), "not really an initrd\n");
  writeFileSync(join(srcDir, "hello"), "hello\n");
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test("PROBE_BYTES covers the btrfs superblock", () => {
  expect(PROBE_BYTES).toBeGreaterThanOrEqual(64 * 1024 + 4096);
});

describe("ext2/3/4 (e2fsprogs)", () => {
  const U = "3f2504e0-4f89-41d3-9a0c-0305e82c3301";

  test("ext4 with UUID and a label with a space", () => {
    const p = img("ext4.img", "16M");
    run(["mkfs.ext4", "-q", "-F", "-U", U, "-L", "usr label", p]);
    expectLikeBlkid(p, { type: "ext4", uuid: U, label: "usr label" });
  });

  test("ext4 without a label, random UUID", () => {
    const p = img("ext4-nolabel.img", "16M");
    run(["mkfs.ext4", "-q", "-F", p]);
    const id = probe(p)!;
    expect(id.type).toBe("ext4");
    expect(id.label).toBeUndefined();
    expect(id.uuid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(id).toEqual(blkid(p)!);
  });

  test("16-character label (no NUL terminator) and UTF-8 label", () => {
    const p = img("ext4-long.img", "16M");
    run(["mkfs.ext4", "-q", "-F", "-U", U, "-L", "ABCDEFGHIJKLMNOP", p]);
    expectLikeBlkid(p, { type: "ext4", uuid: U, label: "ABCDEFGHIJKLMNOP" });
    run(["e2label", p, "usr-ü $x"]);
    expectLikeBlkid(p, { type: "ext4", uuid: U, label: "usr-ü $x" });
  });

  test("ext3 and ext2 are told apart as blkid does", () => {
    const p3 = img("ext3.img", "16M");
    run(["mkfs.ext3", "-q", "-F", "-U", U, "-L", "EXT3", p3]);
    expectLikeBlkid(p3, { type: "ext3", uuid: U, label: "EXT3" });
    const p2 = img("ext2.img", "16M");
    run(["mkfs.ext2", "-q", "-F", "-U", U, "-L", "USR-A", p2]);
    expectLikeBlkid(p2, { type: "ext2", uuid: U, label: "USR-A" });
    // no journal but extents: only ext4 can mount it
    const p2x = img("ext2-extents.img", "16M");
    run(["mkfs.ext2", "-q", "-F", "-O", "extents", "-U", U, p2x]);
    expectLikeBlkid(p2x, { type: "ext4", uuid: U });
  });

  test("external journal device is jbd", () => {
    const p = img("jbd.img", "8M");
    run(["mke2fs", "-q", "-F", "-O", "journal_dev", "-b", "4096", "-U", U, "-L", "journal", p]);
    expectLikeBlkid(p, { type: "jbd", uuid: U, label: "journal" });
  });

  test("metadata_csum: a superblock with a bad checksum is not taken", () => {
    const p = img("ext4-badcsum.img", "16M");
    run(["mkfs.ext4", "-q", "-F", "-O", "metadata_csum", "-U", U, "-L", "good", p]);
    expectLikeBlkid(p, { type: "ext4", uuid: U, label: "good" });
    writeAt(p, 1024 + 0x78, new TextEncoder().encode("evil"));
    // e2fsprogs (like the kernel) refuses it; blkid 2.38 does not check, so it is not asked
    expect(tool(["dumpe2fs", "-h", p])).toContain("Superblock checksum does not match");
    expect(probe(p)).toBeNull();
  });
});

describe("vfat (dosfstools)", () => {
  test("FAT12 floppy-size, label and serial", () => {
    const p = img("fat12.img", "1440K");
    run(["mkfs.vfat", "-F", "12", "-n", "FLOPPY", "-i", "0a0b0c0d", p]);
    expectLikeBlkid(p, { type: "vfat", uuid: "0A0B-0C0D", label: "FLOPPY" });
  });

  test("FAT16 with a label containing a space", () => {
    const p = img("fat16.img", "32M");
    run(["mkfs.vfat", "-F", "16", "-n", "EFI SYSTEM", "-i", "DEADBEEF", p]);
    expectLikeBlkid(p, { type: "vfat", uuid: "DEAD-BEEF", label: "EFI SYSTEM" });
  });

  test("FAT32 ESP", () => {
    const p = img("fat32.img", "64M");
    run(["mkfs.vfat", "-F", "32", "-n", "EFI-SYSTEM", "-i", "1a2b3c4d", p]);
    expectLikeBlkid(p, { type: "vfat", uuid: "1A2B-3C4D", label: "EFI-SYSTEM" });
  });

  test("no label: NO NAME is not a label", () => {
    const p = img("fat-nolabel.img", "8M");
    run(["mkfs.vfat", "-i", "00c0ffee", p]);
    expectLikeBlkid(p, { type: "vfat", uuid: "00C0-FFEE" });
  });

  test("FAT16: the root directory label wins over the boot sector label", () => {
    const p = img("fat16-relabel.img", "32M");
    run(["mkfs.vfat", "-F", "16", "-n", "OLDLABEL", "-i", "12345678", p]);
    // What Windows does on relabel: only the volume-label directory entry changes.
    const boot = readAt(p, 0, 512);
    const bv = new DataView(boot.buffer);
    const rootDir = (bv.getUint16(0x0e, true) + boot[0x10]! * bv.getUint16(0x16, true)) * bv.getUint16(0x0b, true);
    expect(rootDir + 32).toBeLessThanOrEqual(PROBE_BYTES);
    const entry = readAt(p, rootDir, 32);
    expect(new TextDecoder().decode(entry.subarray(0, 11))).toBe("OLDLABEL   ");
    writeAt(p, rootDir, new TextEncoder().encode("NEW LABEL  "));
    expectLikeBlkid(p, { type: "vfat", uuid: "1234-5678", label: "NEW LABEL" });
  });

  test("FAT32 root directory beyond PROBE_BYTES: the boot sector label is used (documented deviation)", () => {
    const p = img("fat32-relabel.img", "64M");
    run(["mkfs.vfat", "-F", "32", "-n", "OLDLABEL", "-i", "12345678", p]);
    const boot = readAt(p, 0, 512);
    const bv = new DataView(boot.buffer);
    const sector = bv.getUint16(0x0b, true);
    const rootDir = (bv.getUint16(0x0e, true) + boot[0x10]! * bv.getUint32(0x24, true) + (bv.getUint32(0x2c, true) - 2) * boot[0x0d]!) * sector;
    expect(rootDir).toBeGreaterThan(PROBE_BYTES);
    writeAt(p, rootDir, new TextEncoder().encode("NEW LABEL  "));
    expect(blkid(p)).toEqual({ type: "vfat", uuid: "1234-5678", label: "NEW LABEL" });
    expect(probe(p)).toEqual({ type: "vfat", uuid: "1234-5678", label: "OLDLABEL" });
  });
});

describe("read-only image formats", () => {
  test("squashfs: type only", () => {
    const p = join(dir, "usr.squashfs");
    run(["mksquashfs", srcDir, p, "-noappend", "-quiet", "-no-progress"]);
    expectLikeBlkid(p, { type: "squashfs" });
  });

  test.skipIf(!which("mkfs.erofs"))("erofs: UUID", () => {
    const p = join(dir, "usr.erofs");
    rmSync(p, { force: true });
    run(["mkfs.erofs", "-U01234567-89ab-4def-8123-456789abcdef", p, srcDir]);
    expectLikeBlkid(p, { type: "erofs", uuid: "01234567-89ab-4def-8123-456789abcdef" });
  });

  test.skipIf(!which("mkfs.erofs"))("erofs: label (patched in, checksum redone) and a bad checksum", () => {
    // erofs-utils 1.5 (Debian 12) has no -L; write volume_name and redo the superblock CRC32C
    // (fsck.erofs checks it independently).
    const p = join(dir, "label.erofs");
    rmSync(p, { force: true });
    run(["mkfs.erofs", "-U01234567-89ab-4def-8123-456789abcdef", p, srcDir]);
    const sb = readAt(p, 1024, 3072);
    const v = new DataView(sb.buffer);
    expect(v.getUint32(8, true) & 1).toBe(1); // SB_CSUM set by mkfs.erofs
    sb.set(new TextEncoder().encode("usr-erofs"), 64);
    v.setUint32(4, 0, true);
    v.setUint32(4, crc32cRaw(0xffffffff, sb), true);
    writeAt(p, 1024, sb);
    expect(tool(["fsck.erofs", p])).not.toContain("chksum");
    expectLikeBlkid(p, { type: "erofs", uuid: "01234567-89ab-4def-8123-456789abcdef", label: "usr-erofs" });
    writeAt(p, 1024 + 64, new TextEncoder().encode("X"));
    expect(tool(["fsck.erofs", p])).toContain("superblock chksum doesn't match");
    expect(probe(p)).toBeNull();
  });

  test.skipIf(!which("genisoimage"))("iso9660: date UUID, long PVD label with Joliet", () => {
    const p = join(dir, "long.iso");
    run(["genisoimage", "-quiet", "-J", "-V", "BUNBOOT_TEST_ISO_VOLUME_LABEL", "-o", p, srcDir]);
    const id = probe(p)!;
    expect(id.uuid).toMatch(/^\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d-\d\d$/);
    expectLikeBlkid(p, { type: "iso9660", uuid: id.uuid!, label: "BUNBOOT_TEST_ISO_VOLUME_LABEL" });
  });

  test.skipIf(!which("genisoimage"))("iso9660: plain, and a Joliet label that differs from the PVD", () => {
    const p = join(dir, "plain.iso");
    run(["genisoimage", "-quiet", "-V", "config 2", "-o", p, srcDir]);
    const id = probe(p)!;
    expectLikeBlkid(p, { type: "iso9660", uuid: id.uuid!, label: "config 2" });

    const j = join(dir, "joliet.iso");
    run(["genisoimage", "-quiet", "-J", "-V", "ASCII", "-o", j, srcDir]);
    const svd = readAt(j, 0x8000 + 0x800, 0x800);
    expect(svd[0]).toBe(2);
    const name = "Jöliet ☃";
    const utf16 = new Uint8Array(32);
    for (let i = 0; i < 16; i++) {
      const c = i < name.length ? name.charCodeAt(i) : 0x20;
      utf16[i * 2] = c >> 8;
      utf16[i * 2 + 1] = c & 0xff;
    }
    writeAt(j, 0x8000 + 0x800 + 40, utf16);
    const jid = probe(j)!;
    expectLikeBlkid(j, { type: "iso9660", uuid: jid.uuid!, label: name });
  });
});

describe("btrfs and xfs", () => {
  test.skipIf(!which("mkfs.btrfs"))("btrfs: UUID (fsid) and label", () => {
    const p = img("btrfs.img", "128M");
    run(["mkfs.btrfs", "-q", "-f", "-U", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "-L", "usr btrfs", p]);
    expectLikeBlkid(p, { type: "btrfs", uuid: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", label: "usr btrfs" });
  });

  test.skipIf(!which("mkfs.btrfs"))("btrfs: bad superblock checksum, and a head too short to reach it", () => {
    const p = img("btrfs-bad.img", "128M");
    run(["mkfs.btrfs", "-q", "-f", "-U", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", p]);
    const head = readAt(p, 0, PROBE_BYTES);
    expect(probeFilesystem(head.subarray(0, 65536 + 2048))).toBeNull();
    expect(tool(["btrfs", "inspect-internal", "dump-super", p])).toMatch(/csum\s+0x[0-9a-f]+ \[match\]/);
    writeAt(p, 0x10000 + 0x12b, new TextEncoder().encode("tampered"));
    expect(tool(["btrfs", "inspect-internal", "dump-super", p])).toContain("[DON'T MATCH]");
    expect(probe(p)).toBeNull();
  });

  test.skipIf(!which("mkfs.xfs"))("xfs v5: UUID and 12-character label; bad CRC rejected", () => {
    const p = img("xfs.img", "320M");
    run(["mkfs.xfs", "-q", "-f", "-m", "uuid=aabbccdd-eeff-4011-8223-344556677889", "-L", "xfs-label-12", p]);
    expectLikeBlkid(p, { type: "xfs", uuid: "aabbccdd-eeff-4011-8223-344556677889", label: "xfs-label-12" });
    run(["xfs_admin", "-L", "--", p]);
    expectLikeBlkid(p, { type: "xfs", uuid: "aabbccdd-eeff-4011-8223-344556677889" });
    expect(tool(["xfs_db", "-r", "-c", "sb 0", "-c", "print crc", p])).toContain("(correct)");
    writeAt(p, 108, new TextEncoder().encode("x"));
    expect(tool(["xfs_db", "-r", "-c", "sb 0", "-c", "print crc", p])).toContain("(bad)");
    expect(probe(p)).toBeNull();
  });
});

describe("non-filesystems that must be recognised", () => {
  test("dm-verity hash area (separate hash image)", () => {
    const data = img("vdata.img", "4M");
    const hash = img("vhash.img", "0");
    const out = run(["veritysetup", "format", "--hash=sha256", "--data-block-size=4096", "--hash-block-size=4096", "--uuid=5a5a5a5a-1111-4222-8333-944444444444", data, hash]);
    expect(out).toContain("5a5a5a5a-1111-4222-8333-944444444444");
    expectLikeBlkid(hash, { type: "DM_verity_hash", uuid: "5a5a5a5a-1111-4222-8333-944444444444" });
    // at the hash offset inside a /usr partition, the probe sees the same superblock
    const usr = img("vusr.img", "4M");
    run(["veritysetup", "format", "--hash=sha256", "--data-block-size=4096", "--hash-block-size=4096", "--data-blocks=512", "--hash-offset=2097152", "--uuid=5a5a5a5a-1111-4222-8333-944444444444", usr, usr]);
    expect(probeFilesystem(readAt(usr, 2097152, PROBE_BYTES))).toEqual({ type: "DM_verity_hash", uuid: "5a5a5a5a-1111-4222-8333-944444444444" });
  });

  test("swap", () => {
    const p = img("swap.img", "8M");
    run(["mkswap", "-L", "swp", "-U", "99999999-2222-4333-8444-555555555555", p]);
    expectLikeBlkid(p, { type: "swap", uuid: "99999999-2222-4333-8444-555555555555", label: "swp" });
  });

  test.skipIf(!which("cryptsetup"))("LUKS2 with label, LUKS1", () => {
    const key = join(dir, "key");
    writeFileSync(key, "passphrase");
    const p = img("luks2.img", "32M");
    run(["cryptsetup", "luksFormat", "-q", "--type", "luks2", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--label", "my luks", "--uuid", "12345678-1234-4234-8234-123456789abc", "--key-file", key, p]);
    expectLikeBlkid(p, { type: "crypto_LUKS", uuid: "12345678-1234-4234-8234-123456789abc", label: "my luks" });
    const p1 = img("luks1.img", "32M");
    run(["cryptsetup", "luksFormat", "-q", "--type", "luks1", "--pbkdf-force-iterations", "1000", "--uuid", "12345678-1234-4234-8234-123456789abd", "--key-file", key, p1]);
    expectLikeBlkid(p1, { type: "crypto_LUKS", uuid: "12345678-1234-4234-8234-123456789abd" });
  });
});

describe("nothing to find", () => {
  test("zeros, random bytes, short buffers never throw", () => {
    expect(probeFilesystem(new Uint8Array(PROBE_BYTES))).toBeNull();
    expect(probeFilesystem(new Uint8Array(0))).toBeNull();
    expect(probeFilesystem(new Uint8Array(100))).toBeNull();
    for (let i = 0; i < 50; i++) {
      const r = new Uint8Array(PROBE_BYTES);
      for (let off = 0; off < r.length; off += 65536) crypto.getRandomValues(r.subarray(off, Math.min(off + 65536, r.length)));
      // random data can in principle carry a weak FAT signature; it must never throw
      const id = probeFilesystem(r);
      if (id) expect(id.type).toBe("vfat");
    }
  });

  test("every probe survives truncation at any length", () => {
    const p = img("trunc.img", "16M");
    run(["mkfs.ext4", "-q", "-F", "-L", "x", p]);
    const head = readAt(p, 0, PROBE_BYTES);
    for (let n = 0; n <= 4096; n += 7) probeFilesystem(head.subarray(0, n));
    expect(probeFilesystem(head.subarray(0, 1024 + 1023))).toBeNull();
    expect(probeFilesystem(head.subarray(0, 2048))?.type).toBe("ext4");
  });

  test("partitioned disks (GPT and MBR) are not filesystems", () => {
    const g = img("gpt-disk.img", "16M");
    run(["sfdisk", "-q", g], "label: gpt\nstart=2048, size=8192, type=linux\n");
    expect(probe(g)).toBeNull();
    expect(blkid(g)).toBeNull();
    const m = img("mbr-disk.img", "16M");
    run(["sfdisk", "-q", m], "label: dos\nstart=2048, size=8192, type=83\n");
    expect(probe(m)).toBeNull();
    expect(blkid(m)).toBeNull();
  });
});
