// dm-verity on-disk superblock and root hash, pure: byte buffers in, results out.
//
// Why: the init opens /usr with panic-on-corruption, so a wrong verity.usrhash= would not fail
// the open but panic the kernel on the first read. Recomputing the root hash from the top block
// of the on-disk tree first lets the init say "expected X, found Y" instead (boot-contract.md §4).
//
// Layout written by `veritysetup format` (cryptsetup lib/verity), for a hash area starting at
// byte `hashOffset` of the hash device (Flatcar: the USR partition itself, 1065345024):
//   hashOffset:                 struct verity_sb (512 bytes; the rest of that hash block unused)
//   hashTreeTopOffset():        the tree, top level first; the top level is exactly one block
//                               holding the digests of the next level down (or of the data
//                               blocks, for a one-level tree)
//   ...                         lower levels, the bottom level last
// The root hash is the digest of that top block, salted: hash type 1 (the normal format)
// H(salt || block), hash type 0 (the Chrome OS format) H(block || salt).

import { escapeControls } from "../text.ts";
import { describeBytes, formatUuid } from "./bytes.ts";
import { createHash, getHashes } from "node:crypto";

/** A dm-verity superblock or hash block that cannot be used (lib/usr-verity.ts turns it into the boot failure). */
export class VeritySuperblockError extends Error {
  override name = "VeritySuperblockError";
}

export interface VeritySuperblock {
  version: number;
  /** 1: normal (salt first, digests padded to a power of two); 0: Chrome OS (salt last). */
  hashType: number;
  uuid: string;
  /** Hash name as veritysetup wrote it, e.g. "sha256"; also a node:crypto name. */
  algorithm: string;
  dataBlockSize: number;
  hashBlockSize: number;
  dataBlocks: bigint;
  salt: Uint8Array;
}

/** sizeof(struct verity_sb): signature[8] version hash_type uuid[16] algorithm[32] sizes salt[256] pad. */
export const VERITY_SUPERBLOCK_SIZE = 512;

const SIGNATURE = [0x76, 0x65, 0x72, 0x69, 0x74, 0x79, 0, 0]; // "verity\0\0"
const MAX_SALT = 256;

/** cryptsetup's VERITY_BLOCK_SIZE_OK: a power of two from 512 bytes to 512 KiB. */
function blockSizeOk(x: number): boolean {
  return x >= 512 && x <= 512 * 1024 && (x & (x - 1)) === 0;
}

const digestSizes = new Map<string, number>();

/** Digest length in bytes of a node:crypto hash, or undefined if node:crypto does not have it. */
function digestSize(algorithm: string): number | undefined {
  const known = digestSizes.get(algorithm);
  if (known !== undefined) return known;
  if (!getHashes().includes(algorithm)) return undefined;
  try {
    const n = createHash(algorithm).digest().length;
    digestSizes.set(algorithm, n);
    return n;
  } catch {
    return undefined;
  }
}

/**
 * Parse and check the verity superblock at the start of the hash area. `block` is at least the
 * first 512 bytes there (a whole hash block is fine). Every check names the field and the value,
 * since the usual cause is a wrong hash offset or a partition that was never formatted.
 */
export function parseVeritySuperblock(block: Uint8Array): VeritySuperblock {
  if (block.length < VERITY_SUPERBLOCK_SIZE) {
    throw new VeritySuperblockError(`verity superblock: need ${VERITY_SUPERBLOCK_SIZE} bytes, got ${block.length} (hash offset beyond the end of the device?)`);
  }
  if (!SIGNATURE.every((c, i) => block[i] === c)) {
    const head = block.subarray(0, 8);
    const zero = block.subarray(0, VERITY_SUPERBLOCK_SIZE).every((x) => x === 0);
    throw new VeritySuperblockError(
      `no dm-verity superblock at the hash offset: expected "verity\\0\\0", found ${describeBytes(head)}` +
        (zero ? " (all zero: nothing was written there)" : "") +
        `; the hash offset is probably wrong (it must be the --hash-offset given to veritysetup format), or the device has no hash tree`,
    );
  }
  const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
  const version = v.getUint32(8, true);
  if (version !== 1) throw new VeritySuperblockError(`verity superblock version ${version} is not supported (only version 1 exists)`);
  const hashType = v.getUint32(12, true);
  if (hashType > 1) throw new VeritySuperblockError(`verity hash type ${hashType} is not supported (0 = Chrome OS, 1 = normal)`);

  const algBytes = block.subarray(32, 64);
  const nul = algBytes.indexOf(0);
  if (nul <= 0) throw new VeritySuperblockError(nul === 0 ? "verity superblock has no hash algorithm" : "verity hash algorithm name is not NUL-terminated");
  const algorithm = String.fromCharCode(...algBytes.subarray(0, nul));
  // veritysetup writes the kernel crypto name in lower case; node:crypto knows the common ones.
  const dsize = digestSize(algorithm);
  if (dsize === undefined) throw new VeritySuperblockError(`verity hash algorithm "${escapeControls(algorithm)}" is not supported`);

  const dataBlockSize = v.getUint32(64, true);
  const hashBlockSize = v.getUint32(68, true);
  if (!blockSizeOk(dataBlockSize)) throw new VeritySuperblockError(`verity data block size ${dataBlockSize} is invalid (power of two, 512..524288)`);
  if (!blockSizeOk(hashBlockSize)) throw new VeritySuperblockError(`verity hash block size ${hashBlockSize} is invalid (power of two, 512..524288)`);
  // A hash block must hold at least two digests, or the tree never narrows to one block.
  if (Math.floor(hashBlockSize / dsize) < 2) {
    throw new VeritySuperblockError(`verity hash block size ${hashBlockSize} is too small for ${algorithm} digests of ${dsize} bytes`);
  }
  const dataBlocks = v.getBigUint64(72, true);
  if (dataBlocks === 0n) throw new VeritySuperblockError("verity superblock says there are 0 data blocks");
  if (dataBlocks * BigInt(dataBlockSize) >= 1n << 64n) throw new VeritySuperblockError(`verity data size overflows: ${dataBlocks} blocks of ${dataBlockSize}`);
  const saltSize = v.getUint16(80, true);
  if (saltSize > MAX_SALT) throw new VeritySuperblockError(`verity salt size ${saltSize} exceeds ${MAX_SALT}`);

  return {
    version,
    hashType,
    uuid: formatUuid(block.subarray(16, 32)),
    algorithm,
    dataBlockSize,
    hashBlockSize,
    dataBlocks,
    salt: block.slice(88, 88 + saltSize),
  };
}

function hashPerBlockBits(sb: VeritySuperblock): number {
  const dsize = digestSize(sb.algorithm);
  if (dsize === undefined) throw new VeritySuperblockError(`verity hash algorithm "${sb.algorithm}" is not supported`);
  // floor(log2(digests per block)): cryptsetup and the kernel (__fls) both round down, so a
  // block holds a power-of-two number of digests (128 for sha256 in 4 KiB).
  return Math.floor(Math.log2(Math.floor(sb.hashBlockSize / dsize)));
}

/**
 * Number of levels in the hash tree: the smallest L with (digests per block)^L >= data blocks,
 * as cryptsetup computes it. Each level holds the digests of the level below; the top level is a
 * single block, whose salted digest is the root hash. Examples with sha256 and 4 KiB blocks (128
 * digests per block): up to 128 data blocks (512 KiB) 1 level, up to 16384 (64 MiB) 2 levels,
 * up to 2097152 (8 GiB) 3 levels, so Flatcar's 260094 blocks make 3. A single data block makes
 * 0 levels: there is no tree and the root hash is the salted digest of the data block itself.
 */
export function hashTreeLevels(sb: VeritySuperblock): number {
  const bits = BigInt(hashPerBlockBits(sb));
  let levels = 0n;
  while (bits * levels < 64n && (sb.dataBlocks - 1n) >> (bits * levels) !== 0n) levels++;
  return Number(levels);
}

/** Total hash blocks of the tree (all levels, without the superblock), as `veritysetup dump` shows. */
export function hashTreeBlocks(sb: VeritySuperblock): bigint {
  const bits = BigInt(hashPerBlockBits(sb));
  let total = 0n;
  for (let i = 1n; i <= BigInt(hashTreeLevels(sb)); i++) {
    const shift = i * bits;
    total += (sb.dataBlocks + (1n << shift) - 1n) >> shift;
  }
  return total;
}

/**
 * Absolute byte offset of the top hash block, for a superblock found at byte `hashOffset`: the
 * tree starts at the first hash-block boundary after the 512-byte superblock (cryptsetup's
 * VERITY_hash_offset_block), i.e. hashOffset + hashBlockSize when hashOffset is block aligned,
 * as Flatcar's is.
 */
export function hashTreeTopOffset(sb: VeritySuperblock, hashOffset: number): number {
  const hbs = sb.hashBlockSize;
  return Math.ceil((hashOffset + VERITY_SUPERBLOCK_SIZE) / hbs) * hbs;
}

/**
 * Root hash (lower-case hex) from the top block of the tree, read at hashTreeTopOffset(). When
 * the tree has no levels (one data block) pass the data block instead; the expected length is
 * checked, since a short read would otherwise just produce a different, unhelpful hash.
 */
export function rootHashFromTop(sb: VeritySuperblock, topHashBlock: Uint8Array): string {
  const levels = hashTreeLevels(sb);
  const want = levels > 0 ? sb.hashBlockSize : sb.dataBlockSize;
  if (topHashBlock.length !== want) {
    throw new VeritySuperblockError(`verity ${levels > 0 ? "top hash" : "data"} block must be ${want} bytes, got ${topHashBlock.length}`);
  }
  const h = createHash(sb.algorithm);
  if (sb.hashType === 1) {
    h.update(sb.salt);
    h.update(topHashBlock);
  } else {
    h.update(topHashBlock);
    h.update(sb.salt);
  }
  return h.digest("hex");
}
