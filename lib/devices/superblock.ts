// Filesystem identification from the first bytes of a block device, pure: the caller reads
// PROBE_BYTES from offset 0 and passes them in. This is the subset of libblkid's superblock
// probing an initrd needs for UUID=/LABEL= device references and mount.usrfstype=auto, and it
// reports type, UUID and label the way `blkid` prints them, because users copy those strings
// from `blkid` output onto the kernel command line (and udev builds /dev/disk/by-* from them).
//
// blkid rules followed throughout:
// - UUIDs are the 16 bytes in order as 8-4-4-4-12 lower-case hex (these filesystems store UUIDs
//   big-endian, unlike GPT GUIDs); an all-zero UUID means "none" and is not reported.
// - Labels are cut at the first NUL, trailing white space is removed, and an empty label is not
//   reported. Label bytes are decoded as UTF-8 (blkid passes the raw bytes through, so ASCII and
//   UTF-8 labels compare equal; a label in a legacy code page, e.g. FAT CP850, will not).
// - Where the on-disk format has a superblock checksum (ext4 metadata_csum, btrfs crc32c, xfs v5,
//   erofs sb_csum), a bad checksum means "not this filesystem": the kernel refuses to mount such a
//   superblock, so resolving LABEL=/UUID= to it (or picking its type for "auto") would only move
//   the failure to a less clear place. Newer libblkid releases verify these checksums too;
//   util-linux 2.38 (Debian 12) does not, and still reports the damaged superblock.
import { crc32cRaw, formatUuid } from "./bytes.ts";

export interface FsIdentity {
  type: string;
  uuid?: string;
  label?: string;
}

/**
 * Bytes the probe needs from offset 0: the btrfs superblock is 4 KiB at 64 KiB. This also covers
 * the ISO 9660 volume descriptors (2 KiB sectors from 32 KiB) and the swap signature for page
 * sizes up to 64 KiB. Fewer bytes are fine (a small device): probes that need more are skipped.
 */
export const PROBE_BYTES = 64 * 1024 + 4096;

// ---------------------------------------------------------------------------------------------
// Byte helpers

function dv(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

function has(b: Uint8Array, off: number, len: number): boolean {
  return off >= 0 && off + len <= b.length;
}

function bytesEq(b: Uint8Array, off: number, magic: string | readonly number[]): boolean {
  const m = typeof magic === "string" ? Array.from(magic, (c) => c.charCodeAt(0)) : magic;
  if (!has(b, off, m.length)) return false;
  for (let i = 0; i < m.length; i++) if (b[off + i] !== m[i]) return false;
  return true;
}

function isZero(b: Uint8Array): boolean {
  for (const x of b) if (x !== 0) return false;
  return true;
}

/** 16 bytes -> "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", or undefined when all zero (blkid omits it). */
function uuidOf(b: Uint8Array): string | undefined {
  if (b.length !== 16 || isZero(b)) return undefined;
  return formatUuid(b);
}

const utf8 = new TextDecoder("utf-8");

/** blkid_probe_set_label: cut at NUL, drop trailing isspace(), empty -> no label. */
function labelOf(b: Uint8Array): string | undefined {
  let end = b.indexOf(0);
  if (end < 0) end = b.length;
  while (end > 0 && [0x20, 0x09, 0x0a, 0x0b, 0x0c, 0x0d].includes(b[end - 1]!)) end--;
  return end === 0 ? undefined : utf8.decode(b.subarray(0, end));
}

function identity(type: string, uuid?: string, label?: string): FsIdentity {
  const id: FsIdentity = { type };
  if (uuid !== undefined) id.uuid = uuid;
  if (label !== undefined) id.label = label;
  return id;
}

function isPow2(n: number): boolean {
  return n > 0 && (n & (n - 1)) === 0;
}

// ---------------------------------------------------------------------------------------------
// dm-verity hash area: cryptsetup's struct verity_sb at offset 0 of the hash device/area.

function probeVerity(b: Uint8Array): FsIdentity | null {
  if (!bytesEq(b, 0, [0x76, 0x65, 0x72, 0x69, 0x74, 0x79, 0, 0]) || !has(b, 0, 32)) return null;
  if (dv(b).getUint32(8, true) !== 1) return null; // blkid accepts version 1 only
  return identity("DM_verity_hash", uuidOf(b.subarray(16, 32)));
}

// ---------------------------------------------------------------------------------------------
// LUKS (crypto_LUKS): not mountable, but it must be recognised so that "auto" does not guess.
// The UUID is stored as text; LUKS2 also has a label.

function probeLuks(b: Uint8Array): FsIdentity | null {
  if (!bytesEq(b, 0, [0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe]) || !has(b, 0, 208)) return null;
  const version = dv(b).getUint16(6, false);
  if (version !== 1 && version !== 2) return null;
  const uuid = labelOf(b.subarray(168, 208));
  const label = version === 2 ? labelOf(b.subarray(24, 72)) : undefined;
  return identity("crypto_LUKS", uuid, label);
}

// ---------------------------------------------------------------------------------------------
// squashfs: no UUID or label exists in the format, so the type is all there is.

function probeSquashfs(b: Uint8Array): FsIdentity | null {
  if (!bytesEq(b, 0, "hsqs") || !has(b, 0, 32)) return null;
  // blkid calls format 1-3 "squashfs3"; the kernel only mounts format 4.
  return identity(dv(b).getUint16(28, true) >= 4 ? "squashfs" : "squashfs3");
}

// ---------------------------------------------------------------------------------------------
// XFS: big-endian superblock at 0.

function probeXfs(b: Uint8Array): FsIdentity | null {
  if (!bytesEq(b, 0, "XFSB") || !has(b, 0, 512)) return null;
  const v = dv(b);
  const blocksize = v.getUint32(4, false);
  const dblocks = v.getBigUint64(8, false);
  const agcount = v.getUint32(88, false);
  const versionnum = v.getUint16(100, false);
  const sectsize = v.getUint16(102, false);
  const inodesize = v.getUint16(104, false);
  const blocklog = b[120]!;
  const sectlog = b[121]!;
  // The geometry checks libblkid's xfs_verify_sb makes, so that a stray "XFSB" is not taken.
  if (!isPow2(blocksize) || blocksize < 512 || blocksize > 65536 || 1 << blocklog !== blocksize) return null;
  if (!isPow2(sectsize) || sectsize < 512 || sectsize > 32768 || 1 << sectlog !== sectsize) return null;
  if (!isPow2(inodesize) || inodesize < 256 || inodesize > 2048) return null;
  if (agcount === 0 || dblocks === 0n) return null;
  if ((versionnum & 0x0f) === 5 && has(b, 0, sectsize)) {
    // v5 superblocks carry a CRC32C over the whole sector with sb_crc (offset 224) zeroed.
    const copy = b.slice(0, sectsize);
    const stored = dv(copy).getUint32(224, true);
    copy.fill(0, 224, 228);
    if ((~crc32cRaw(0xffffffff, copy) >>> 0) !== stored) return null;
  }
  return identity("xfs", uuidOf(b.subarray(32, 48)), labelOf(b.subarray(108, 120)));
}

// ---------------------------------------------------------------------------------------------
// EROFS: little-endian superblock at 1024.

function probeErofs(b: Uint8Array): FsIdentity | null {
  const sb = 1024;
  if (!bytesEq(b, sb, [0xe2, 0xe1, 0xf5, 0xe0]) || !has(b, sb, 128)) return null;
  const v = dv(b);
  const blkszbits = b[sb + 12]!;
  if (blkszbits < 9 || blkszbits > 16) return null;
  const featureCompat = v.getUint32(sb + 8, true);
  if (featureCompat & 1) {
    // EROFS_FEATURE_SB_CSUM: raw crc32c(~0) over the rest of the first block, checksum field zeroed.
    const blksz = 1 << blkszbits;
    const len = Math.max(blksz - sb, 128);
    if (has(b, sb, len)) {
      const copy = b.slice(sb, sb + len);
      const stored = dv(copy).getUint32(4, true);
      copy.fill(0, 4, 8);
      if (crc32cRaw(0xffffffff, copy) !== stored) return null;
    }
  }
  return identity("erofs", uuidOf(b.subarray(sb + 48, sb + 64)), labelOf(b.subarray(sb + 64, sb + 80)));
}

// ---------------------------------------------------------------------------------------------
// ext2/3/4: superblock at 1024, magic 0xEF53 at 1024+0x38.
//
// The three share one on-disk format; the "type" is a statement about which driver can mount it.
// We report what blkid reports on a system whose kernel knows ext2 (which every kernel built with
// CONFIG_EXT4_USE_FOR_EXT2 or CONFIG_EXT2_FS does, Flatcar's included):
//   ext2: no journal and only features ext2 understands;
//   ext3: a journal and only features ext3 understands;
//   ext4: anything else (extents, 64bit, flex_bg, huge_file, metadata_csum, ...);
//   jbd:  an external journal device (not mountable).
// The exact name matters for mount(2) with type "auto": "ext2" only mounts if the kernel
// registered an ext2 type; the ext4 driver mounts all three, so a caller whose mount with "ext2"
// or "ext3" fails with ENODEV may retry with "ext4".

const EXT_FEATURE_COMPAT_HAS_JOURNAL = 0x0004;
const EXT_FEATURE_INCOMPAT_JOURNAL_DEV = 0x0008;
const EXT_FEATURE_RO_COMPAT_METADATA_CSUM = 0x0400;
// Features ext2/ext3 drivers understand (libblkid's EXT2/EXT3_FEATURE_*_SUPP).
const EXT2_RO_COMPAT_SUPP = 0x0001 | 0x0002 | 0x0004; // sparse_super, large_file, btree_dir
const EXT2_INCOMPAT_SUPP = 0x0002 | 0x0010; // filetype, meta_bg
const EXT3_RO_COMPAT_SUPP = EXT2_RO_COMPAT_SUPP;
const EXT3_INCOMPAT_SUPP = 0x0002 | 0x0004 | 0x0010; // filetype, recover, meta_bg

function probeExt(b: Uint8Array): FsIdentity | null {
  const sb = 1024;
  if (!bytesEq(b, sb + 0x38, [0x53, 0xef]) || !has(b, sb, 1024)) return null;
  const v = dv(b);
  const compat = v.getUint32(sb + 0x5c, true);
  const incompat = v.getUint32(sb + 0x60, true);
  const roCompat = v.getUint32(sb + 0x64, true);
  const logBlockSize = v.getUint32(sb + 0x18, true);
  if (logBlockSize > 6) return null; // block size 1 KiB << 6 = 64 KiB at most
  if (roCompat & EXT_FEATURE_RO_COMPAT_METADATA_CSUM) {
    // s_checksum (offset 0x3fc) = raw crc32c(~0) of the superblock bytes before it.
    const stored = v.getUint32(sb + 0x3fc, true);
    if (crc32cRaw(0xffffffff, b.subarray(sb, sb + 0x3fc)) !== stored) return null;
  }
  let type: string;
  if (incompat & EXT_FEATURE_INCOMPAT_JOURNAL_DEV) type = "jbd";
  else if (!(compat & EXT_FEATURE_COMPAT_HAS_JOURNAL) && !(roCompat & ~EXT2_RO_COMPAT_SUPP) && !(incompat & ~EXT2_INCOMPAT_SUPP)) type = "ext2";
  else if (compat & EXT_FEATURE_COMPAT_HAS_JOURNAL && !(roCompat & ~EXT3_RO_COMPAT_SUPP) && !(incompat & ~EXT3_INCOMPAT_SUPP)) type = "ext3";
  // A test_fs-flagged filesystem is "ext4dev" in blkid only if the kernel has an ext4dev driver,
  // which no kernel has had since 2.6.x; such filesystems are mounted as ext4.
  else type = "ext4";
  return identity(type, uuidOf(b.subarray(sb + 0x68, sb + 0x78)), labelOf(b.subarray(sb + 0x78, sb + 0x88)));
}

// ---------------------------------------------------------------------------------------------
// btrfs: superblock at 64 KiB, magic "_BHRfS_M" at +0x40, crc32c of bytes 0x20..0x1000 at +0.

function probeBtrfs(b: Uint8Array): FsIdentity | null {
  const sb = 0x10000;
  if (!bytesEq(b, sb + 0x40, "_BHRfS_M") || !has(b, sb, 0x1000)) return null;
  const v = dv(b);
  const csumType = v.getUint16(sb + 0xc4, true);
  if (csumType === 0) {
    const stored = v.getUint32(sb, true);
    if ((~crc32cRaw(0xffffffff, b.subarray(sb + 0x20, sb + 0x1000)) >>> 0) !== stored) return null;
  }
  // Other checksum types (xxhash64, sha256, blake2b) are taken on the magic alone, as an
  // initrd-sized probe is not worth three more hash implementations.
  return identity("btrfs", uuidOf(b.subarray(sb + 0x20, sb + 0x30)), labelOf(b.subarray(sb + 0x12b, sb + 0x12b + 256)));
}

// ---------------------------------------------------------------------------------------------
// ISO 9660: primary volume descriptor at 32 KiB. blkid's UUID is the modification (else
// creation) date "YYYY-MM-DD-HH-MM-SS-CC"; the label is the PVD volume id, or the Joliet one
// (UTF-16BE) when that says something different (i.e. is not just the same ASCII text).

const ISO_PVD = 0x8000;
const ISO_SECTOR = 0x800;

function isoDateUuid(d: Uint8Array): string | undefined {
  const digits = d.subarray(0, 16);
  if (digits.every((c) => c === 0x30) && d[16] === 0) return undefined; // all '0' + zero offset: unset
  const s = String.fromCharCode(...digits);
  return `${s.slice(0, 4)}-${s.slice(4, 6)}-${s.slice(6, 8)}-${s.slice(8, 10)}-${s.slice(10, 12)}-${s.slice(12, 14)}-${s.slice(14, 16)}`;
}

function probeIso9660(b: Uint8Array): FsIdentity | null {
  if (!bytesEq(b, ISO_PVD + 1, "CD001") || !has(b, ISO_PVD, 847)) return null;
  const pvd = b.subarray(ISO_PVD, ISO_PVD + ISO_SECTOR);
  const uuid = isoDateUuid(pvd.subarray(830, 847)) ?? isoDateUuid(pvd.subarray(813, 830));
  const pvdLabel = pvd.subarray(40, 72);
  let label = labelOf(pvdLabel);
  for (let i = 0, off = ISO_PVD + ISO_SECTOR; i < 16 && has(b, off, 120); i++, off += ISO_SECTOR) {
    const type = b[off]!;
    if (type === 0xff) break; // volume descriptor set terminator
    if (type !== 2) continue; // only a supplementary descriptor can be Joliet
    const esc = String.fromCharCode(...b.subarray(off + 88, off + 91));
    if (esc !== "%/@" && esc !== "%/C" && esc !== "%/E") continue;
    const joliet = b.subarray(off + 40, off + 72);
    // Joliet ids are 16 UTF-16 units, so a PVD label longer than 16 characters is cut there;
    // when the Joliet text is the PVD text, the (longer) PVD label wins, as in blkid.
    let same = true;
    for (let u = 0; u < 16; u++) {
      if (joliet[u * 2] !== 0 || joliet[u * 2 + 1] !== pvdLabel[u]) {
        same = false;
        break;
      }
    }
    if (!same) {
      let units = 16;
      for (let u = 0; u < 16; u++) {
        if (joliet[u * 2] === 0 && joliet[u * 2 + 1] === 0) {
          units = u;
          break;
        }
      }
      const text = new TextDecoder("utf-16be").decode(joliet.subarray(0, units * 2)).replace(/[ \t\n\v\f\r]+$/, "");
      label = text === "" ? undefined : text;
    }
    break;
  }
  return identity("iso9660", uuid, label);
}

// ---------------------------------------------------------------------------------------------
// Linux swap: "SWAPSPACE2" in the last 10 bytes of the first page; UUID and label in the
// header at 1024. Recognised so that "auto" never tries to mount a swap partition.

function probeSwap(b: Uint8Array): FsIdentity | null {
  for (const page of [4096, 8192, 16384, 32768, 65536]) {
    if (!bytesEq(b, page - 10, "SWAPSPACE2")) continue;
    if (!has(b, 1024, 44)) return null;
    const version = dv(b).getUint32(1024, true);
    if (version !== 1 && version !== 0x01000000) return null; // either byte order, as blkid
    return identity("swap", uuidOf(b.subarray(1036, 1052)), labelOf(b.subarray(1052, 1068)));
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// FAT12/16/32 ("vfat"). Follows libblkid: the same magics, the same boot sector sanity checks
// (so that an MBR or another filesystem's boot block is not taken for FAT), the label from the
// root directory's volume-label entry when there is one (that is what Windows and fatlabel
// change) else from the boot sector, and the serial number as "XXXX-XXXX".
//
// Deviation, because the probe is given only the first PROBE_BYTES: if the root directory lies
// beyond them (FAT32 volumes of more than a few MB; FAT12/16 volumes with large FATs), the boot
// sector label is used. mkfs.fat and fatlabel write both places, so they only differ after a
// relabel by a tool that updates just the directory entry.

const FAT_MAGICS: ReadonlyArray<[number, string]> = [
  [0x52, "MSWIN"],
  [0x52, "FAT32   "],
  [0x36, "MSDOS"],
  [0x36, "FAT16   "],
  [0x36, "FAT12   "],
  [0x36, "FAT     "],
];
const FAT12_MAX = 0xff4;
const FAT16_MAX = 0xfff4;
const FAT32_MAX = 0x0ffffff6;
const NO_NAME = "NO NAME    ";

/** Volume-label entry in a directory region, as libblkid's search_fat_label. */
function fatDirLabel(b: Uint8Array, off: number, entries: number): Uint8Array | null | undefined {
  const v = dv(b);
  for (let i = 0; i < entries; i++) {
    const e = off + i * 32;
    if (!has(b, e, 32)) return undefined; // beyond what we were given: unknown
    const first = b[e]!;
    if (first === 0x00) return null; // end of directory
    const attr = b[e + 11]!;
    const clusterHigh = v.getUint16(e + 20, true);
    const clusterLow = v.getUint16(e + 26, true);
    if (first === 0xe5 || clusterHigh !== 0 || clusterLow !== 0 || (attr & 0x3f) === 0x0f) continue;
    if ((attr & (0x08 | 0x10)) === 0x08) return b.subarray(e, e + 11);
  }
  return null;
}

function probeVfat(b: Uint8Array): FsIdentity | null {
  if (!has(b, 0, 512)) return null;
  let strong = false;
  for (const [off, magic] of FAT_MAGICS) if (bytesEq(b, off, magic)) strong = true;
  if (!strong) {
    const weak = b[0] === 0xeb || b[0] === 0xe9 || (b[510] === 0x55 && b[511] === 0xaa);
    if (!weak) return null;
    // Magic-less FAT (old floppies) must at least have the boot signature, and OS/2 puts a
    // FAT-like header in front of JFS and HPFS.
    if (b[510] !== 0x55 || b[511] !== 0xaa) return null;
    if (bytesEq(b, 0x36, "JFS     ") || bytesEq(b, 0x36, "HPFS    ")) return null;
  }
  const v = dv(b);
  const sectorSize = v.getUint16(0x0b, true);
  const clusterSize = b[0x0d]!;
  const reserved = v.getUint16(0x0e, true);
  const fats = b[0x10]!;
  const dirEntries = v.getUint16(0x11, true);
  const media = b[0x15]!;
  const fat16Length = v.getUint16(0x16, true);
  const fat32Length = v.getUint32(0x24, true);
  if (fats === 0 || reserved === 0) return null;
  if (!(media >= 0xf8 || media === 0xf0)) return null;
  if (!isPow2(clusterSize)) return null;
  if (!isPow2(sectorSize) || sectorSize < 512 || sectorSize > 4096) return null;
  let sectors = v.getUint16(0x13, true);
  if (sectors === 0) sectors = v.getUint32(0x20, true);
  const fatLength = fat16Length !== 0 ? fat16Length : fat32Length;
  const fatSize = fatLength * fats;
  const dirSize = Math.floor((dirEntries * 32 + sectorSize - 1) / sectorSize);
  // libblkid does this in uint32 arithmetic; a negative result wraps to a huge count and fails.
  const clusters = Math.floor(((sectors - (reserved + fatSize + dirSize)) >>> 0) / clusterSize);
  const isFat32 = fat16Length === 0 && fat32Length !== 0;
  const maxCount = isFat32 ? FAT32_MAX : clusters > FAT12_MAX ? FAT16_MAX : FAT12_MAX;
  if (clusters > maxCount) return null;

  let dirLabel: Uint8Array | null | undefined;
  let bootLabel: Uint8Array;
  let serial: Uint8Array;
  if (fat16Length !== 0) {
    // FAT12/16: fixed-size root directory right after the FATs.
    dirLabel = fatDirLabel(b, (reserved + fatSize) * sectorSize, dirEntries);
    bootLabel = b.subarray(0x2b, 0x36);
    serial = b.subarray(0x27, 0x2b);
  } else if (fat32Length !== 0) {
    // FAT32: the root directory is a cluster chain starting at the root cluster.
    const clusterBytes = clusterSize * sectorSize;
    const dataStart = reserved + fatSize;
    const fatEntries = Math.floor((fat32Length * sectorSize) / 4);
    let next = v.getUint32(0x2c, true);
    for (let loop = 99; next !== 0 && next < fatEntries && loop > 0; loop--) {
      const off = (dataStart + (next - 2) * clusterSize) * sectorSize;
      dirLabel = fatDirLabel(b, off, clusterBytes / 32);
      if (dirLabel) break;
      const fatEntryOff = reserved * sectorSize + next * 4;
      if (dirLabel === undefined || !has(b, fatEntryOff, 4)) break;
      next = v.getUint32(fatEntryOff, true) & 0x0fffffff;
    }
    bootLabel = b.subarray(0x47, 0x52);
    serial = b.subarray(0x43, 0x47);
    // The FSInfo sector must carry its signatures (or be all zero, which some tools write).
    const fsinfo = v.getUint16(0x30, true);
    if (fsinfo !== 0 && has(b, fsinfo * sectorSize, 488)) {
      const f = fsinfo * sectorSize;
      const s1 = v.getUint32(f, true);
      const s2 = v.getUint32(f + 484, true);
      if (s1 !== 0x41615252 && s1 !== 0x41645252 && s1 !== 0) return null;
      if (s2 !== 0x61417272 && s2 !== 0) return null;
    }
  } else {
    return null;
  }

  const isNoName = (l: Uint8Array) => String.fromCharCode(...l) === NO_NAME;
  let raw: Uint8Array | undefined = dirLabel ?? undefined;
  if (!raw || isNoName(raw)) raw = bootLabel;
  const label = isNoName(raw) ? undefined : labelOf(raw);
  const id = [serial[3]!, serial[2]!, serial[1]!, serial[0]!].map((x) => x.toString(16).toUpperCase().padStart(2, "0"));
  return identity("vfat", `${id[0]}${id[1]}-${id[2]}${id[3]}`, label);
}

// ---------------------------------------------------------------------------------------------

/**
 * Probes in order of signature strength: long magics at fixed offsets first, FAT (whose weakest
 * magic is a single jump opcode plus 0x55AA) last, so that leftovers of an earlier FAT boot
 * sector do not shadow a newer filesystem. Returns null when nothing is recognised; never throws
 * on short or garbage input.
 */
export function probeFilesystem(head: Uint8Array): FsIdentity | null {
  const probes = [probeVerity, probeLuks, probeSquashfs, probeXfs, probeErofs, probeExt, probeBtrfs, probeIso9660, probeSwap, probeVfat];
  for (const p of probes) {
    const id = p(head);
    if (id) return id;
  }
  return null;
}
