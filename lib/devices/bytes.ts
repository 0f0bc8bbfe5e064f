// Byte helpers shared by the GPT, superblock and verity code: hex text, the
// big-endian UUID text filesystems use, and the two CRCs the on-disk formats
// use. Pure. (GPT GUIDs are mixed-endian and live in gpt.ts as formatGuid /
// encodeGuid; do not use formatUuid for them.)

/** Lower-case hex of the bytes, two digits each, joined by `sep` ("" or " " for messages). */
export function toHex(b: Uint8Array, sep = ""): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(sep);
}

/** Bytes for an error message about a bad magic: hex, then the printable ASCII in quotes ("." for the rest). */
export function describeBytes(b: Uint8Array): string {
  const ascii = Array.from(b, (x) => (x >= 0x20 && x < 0x7f ? String.fromCharCode(x) : ".")).join("");
  return `${toHex(b, " ")} "${ascii}"`;
}

/**
 * 16 bytes in order (big-endian, as filesystems and cryptsetup store them) ->
 * "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", lower case like blkid prints.
 */
export function formatUuid(b: Uint8Array): string {
  const h = toHex(b);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function crcTable(poly: number): Uint32Array {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? poly ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
}

// CRC32 (IEEE 802.3, reflected polynomial 0xEDB88320, init and final xor 0xFFFFFFFF): the same
// function as zlib's crc32(), which is what UEFI specifies for the GPT header and entry-array CRCs.
// A 1 KiB table is computed once; the callers only ever hash a few KiB so nothing faster is needed.
const CRC32_TABLE = crcTable(0xedb88320);

/** IEEE (zlib) CRC32 of `data`, as an unsigned 32-bit number. */
export function crc32(data: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) {
    // The index is always 0..255, so the table lookup cannot be undefined.
    c = (CRC32_TABLE[(c ^ data[i]!) & 0xff]! ^ (c >>> 8)) >>> 0;
  }
  return (c ^ 0xffffffff) >>> 0;
}

// CRC32C (Castagnoli, reflected polynomial 0x82F63B78), "raw": no final inversion, the caller
// chooses the seed and whether to invert, because the formats differ (ext4 and erofs store the
// raw value seeded with ~0, btrfs and xfs the inverted one).
const CRC32C_TABLE = crcTable(0x82f63b78);

/** CRC32C from `seed` over `data`, without the final inversion. */
export function crc32cRaw(seed: number, data: Uint8Array): number {
  let c = seed >>> 0;
  for (let i = 0; i < data.length; i++) c = (CRC32C_TABLE[(c ^ data[i]!) & 0xff]! ^ (c >>> 8)) >>> 0;
  return c >>> 0;
}
