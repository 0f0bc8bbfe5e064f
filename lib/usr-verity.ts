// Opening dm-verity for /usr. The root hash is checked against the on-disk
// hash tree before the mapping exists: with panic-on-corruption, the first
// read through a mapping with a wrong root hash would panic the kernel, and
// the user would see a panic instead of "wrong verity.usrhash".
//
// The mapping is made with device-mapper ioctls on /dev/mapper/control
// (lib/sys/dm.ts), with the table veritysetup would load, built from the
// superblock just read. veritysetup and dmsetup did the same at the cost of
// ~2.6 MiB of libraries in the initrd and a process per call, each loading a
// dozen libraries, which under slow emulation is most of this step.
import fs from "node:fs";
import { log } from "./log.ts";
import { readAt } from "./devices/blockdevs.ts";
import { hashTreeLevels, hashTreeTopOffset, parseVeritySuperblock, rootHashFromTop, type VeritySuperblock } from "./devices/verity.ts";
import { MAPPER_USR } from "./plan.ts";
import { BootError, messageOf } from "./errors.ts";
import { escapeControls } from "./text.ts";
import { close, DM_CONTROL, dmCreate, dmLoadTable, dmRemove, dmResume, dmTargets, errnoNameOf, mknod } from "./sys/index.ts";
import { decodeDev, DM_FLAG, formatDev, formatTarget, verityTarget, type DmTarget } from "./sys/dm.ts";

const MAPPER_NAME = "usr";
/**
 * What a corrupt block does. Either way it is never served.
 * - "panic" (a local disk, as Flatcar does): the machine stops at once; on
 *   the next boot the firmware or GRUB can fall back to the other slot.
 * - "eio" (a network source): the read fails with EIO and the kernel logs the
 *   block. Whoever can inject packets on the path to an NBD or NFS server (neither
 *   is authenticated) could otherwise panic every machine of a fleet in a loop
 *   by flipping one byte; failing the read protects the same, and keeps the
 *   machine up to report it.
 * A mapping with other options than the mode's is never reused.
 */
export type CorruptionMode = "panic" | "eio";
const VERITY_OPTIONS: Record<CorruptionMode, string[]> = { panic: ["panic_on_corruption"], eio: [] };
// Like dmsetup remove --retry: a mapping still held (a process of the
// emergency shell finishing) often lets go within moments.
const REMOVE_TRIES = 10;
const REMOVE_RETRY_MS = 200;

export async function openUsrVerity(dataDev: string, rootHash: string, hashOffset: number, mode: CorruptionMode = "panic"): Promise<string> {
  let sb;
  try {
    sb = parseVeritySuperblock(readAt(dataDev, hashOffset, 4096));
  } catch (e) {
    throw new BootError(
      `no dm-verity hash tree on ${dataDev} at byte offset ${hashOffset} (the offset this initrd was built with): ${messageOf(e)}. ` +
        `Check verity.usr= names the /usr partition, and that the image was formatted with --hash-offset=${hashOffset}.`,
      { param: "verity.usr" },
    );
  }
  // A one-block image has no tree: its root hash covers the data block itself.
  const top = hashTreeLevels(sb) > 0 ? readAt(dataDev, hashTreeTopOffset(sb, hashOffset), sb.hashBlockSize) : readAt(dataDev, 0, sb.dataBlockSize);
  const found = rootHashFromTop(sb, top);
  if (found !== rootHash) {
    throw new BootError(
      `verity.usrhash does not match the hash tree on ${dataDev}:\n  expected (verity.usrhash=): ${rootHash}\n  found on disk:              ${found}\n` +
        `Nothing was mounted. The command line and the /usr partition belong to different images (wrong slot or a stale boot entry?).`,
      { param: "verity.usrhash" },
    );
  }
  log.debug(`verity superblock: ${sb.algorithm}, ${sb.dataBlocks} data blocks of ${sb.dataBlockSize}, hash block ${sb.hashBlockSize}, root hash matches`);

  const target = verityTableFor(sb, formatDev(fs.statSync(dataDev).rdev), hashOffset, rootHash, mode);
  log.debug(`dm-verity table for ${MAPPER_NAME}: ${formatTarget(target)}`);

  const fd = openControl();
  try {
    // A retry after the emergency shell finds the mapping of the last attempt:
    // reuse it when it is the same table, otherwise replace it.
    const existing = dm("reading the existing usr mapping", () => dmTargets(fd, MAPPER_NAME, "table"));
    if (existing) {
      const unusable = headerUnusable(existing.header.flags);
      if (unusable) log.info(`the existing ${MAPPER_USR} mapping is ${unusable}`);
      if (!unusable && isOurTable(existing.targets, target)) {
        log.info(`reusing the existing ${MAPPER_USR} mapping from the previous attempt`);
        checkVerified(fd);
        ensureNode(existing.header.dev);
        return MAPPER_USR;
      }
      log.info(`replacing the existing ${MAPPER_USR} mapping (${escapeControls(existing.targets.map(formatTarget).join("; ")) || "no table"})`);
      await removeMapping(fd);
    }
    createMapping(fd, target, dmUuid(sb));
    return MAPPER_USR;
  } finally {
    close(fd);
  }
}

/**
 * The dm-verity target for the superblock at `hashOffset` of the data device
 * (data and hash tree on one partition, as Flatcar lays it out): the whole data
 * area, the tree starting at the hash block after the superblock, corruption
 * handled as `mode` says. The same table `veritysetup open
 * --panic-on-corruption` (or, for "eio", plain `veritysetup open`) loads.
 */
export function verityTableFor(sb: VeritySuperblock, dev: string, hashOffset: number, rootHash: string, mode: CorruptionMode = "panic"): DmTarget {
  return verityTarget({
    dataDev: dev,
    hashDev: dev,
    hashType: sb.hashType,
    dataBlockSize: sb.dataBlockSize,
    hashBlockSize: sb.hashBlockSize,
    dataBlocks: sb.dataBlocks,
    hashStartBlock: BigInt(hashTreeTopOffset(sb, hashOffset) / sb.hashBlockSize),
    algorithm: sb.algorithm,
    rootHash,
    salt: sb.salt,
    options: VERITY_OPTIONS[mode],
  });
}

/**
 * The DM uuid veritysetup gives the mapping (CRYPT-VERITY-<superblock uuid
 * without dashes>-<name>): the full system's tools recognise a cryptsetup
 * mapping by it (veritysetup status), and udev names the
 * /dev/disk/by-id/dm-uuid-* link after it, so both stay as they were.
 */
export function dmUuid(sb: VeritySuperblock): string {
  return `CRYPT-VERITY-${sb.uuid.replace(/-/g, "")}-${MAPPER_NAME}`;
}

/**
 * Whether a live table is the mapping this boot would create: one verity
 * target with the same devices, geometry, root hash and salt, and exactly the
 * same options (the corruption mode's, nothing else). A mapping made by hand in
 * the emergency shell with ignore_corruption or check_at_most_once would pass
 * unverified data, so it is never reused.
 */
export function isOurTable(found: readonly DmTarget[], want: DmTarget): boolean {
  if (found.length !== 1) return false;
  const t = found[0]!;
  if (t.start !== want.start || t.length !== want.length || t.type !== want.type) return false;
  // version data hash dbs hbs nblocks hashstart alg root salt [nopts opts...]
  const f = t.params.trim().split(/\s+/);
  const w = want.params.split(" ");
  if (f.slice(0, 10).join(" ") !== w.slice(0, 10).join(" ")) return false;
  const opts = f.slice(11);
  const wantOpts = w.slice(11);
  if ((f[10] ?? "0") !== String(opts.length)) return false;
  return opts.length === wantOpts.length && wantOpts.every((o) => opts.includes(o));
}

/**
 * Why a mapping with these device-mapper header flags cannot be reused even
 * when its table is ours: a suspended mapping blocks every read (the mount
 * would hang), and a writable one is not what this boot makes. Null: usable.
 */
export function headerUnusable(flags: number): string | null {
  if (flags & DM_FLAG.SUSPEND) return "suspended (reads through it would block)";
  if (!(flags & DM_FLAG.READONLY)) return "writable, not read-only";
  if (!(flags & DM_FLAG.ACTIVE_PRESENT)) return "without a live table";
  return null;
}

function openControl(): number {
  try {
    return fs.openSync(DM_CONTROL, "r+");
  } catch (e) {
    throw new BootError(
      errnoNameOf(e) === "ENOENT"
        ? `${DM_CONTROL} does not exist: device-mapper is not loaded (the dm_mod module; a modprobe warning above says why it failed) or not in this kernel`
        : `cannot open ${DM_CONTROL}: ${messageOf(e)}`,
      { param: "verity.usr" },
    );
  }
}

/** Runs one device-mapper operation; its failure becomes a BootError naming what was being done. */
function dm<T>(what: string, fn: () => T, hint = ""): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof BootError) throw e;
    throw new BootError(`device-mapper: ${what} failed: ${messageOf(e)}${hint}`, { param: "verity.usr" });
  }
}

function createMapping(fd: number, target: DmTarget, uuid: string): void {
  // Read-only from the start: the kernel opens the data device read-only for a
  // read-only table, and the mapped device is read-only once resumed.
  const created = dm(`creating ${MAPPER_NAME}`, () => dmCreate(fd, MAPPER_NAME, uuid, DM_FLAG.READONLY));
  try {
    dm(
      `loading the verity table into ${MAPPER_NAME}`,
      () => dmLoadTable(fd, MAPPER_NAME, [target], DM_FLAG.READONLY),
      " (the kernel log says why: look for device-mapper lines in dmesg)",
    );
    dm(`resuming ${MAPPER_NAME}`, () => dmResume(fd, MAPPER_NAME));
    checkVerified(fd);
    ensureNode(created.dev);
  } catch (e) {
    // A half-made mapping would be found by the retry; take it away now.
    try {
      dmRemove(fd, MAPPER_NAME);
    } catch (inner) {
      log.warn(`could not remove the half-made ${MAPPER_USR} mapping: ${messageOf(inner)}`);
    }
    removeNode();
    throw e;
  }
}

async function removeMapping(fd: number): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      dmRemove(fd, MAPPER_NAME);
      break;
    } catch (e) {
      const code = errnoNameOf(e);
      // Gone in the meantime: nothing left to remove.
      if (code === "ENXIO") break;
      if (code !== "EBUSY" || attempt >= REMOVE_TRIES) {
        throw new BootError(
          `cannot remove the existing ${MAPPER_USR} mapping: ${messageOf(e)}` +
            (code === "EBUSY" ? ` (still in use after ${REMOVE_TRIES} tries: mounted, or held open by a process started from the emergency shell?)` : ""),
          { param: "verity.usr" },
        );
      }
      if (attempt === 1) log.debug(`${MAPPER_USR} is still in use; retrying the removal for up to ${(REMOVE_TRIES * REMOVE_RETRY_MS) / 1000} s`);
      await Bun.sleep(REMOVE_RETRY_MS);
    }
  }
  removeNode();
}

// The ioctls succeed for a table the kernel already flags as corrupted: the
// target's status must be V (verified), not C.
function checkVerified(fd: number): void {
  const st = dm(`reading the status of ${MAPPER_NAME}`, () => dmTargets(fd, MAPPER_NAME, "status"));
  const line = escapeControls((st?.targets ?? []).map(formatTarget).join("; "));
  const t = st?.targets ?? [];
  if (t.length !== 1 || t[0]!.type !== "verity" || t[0]!.params.trim().split(/\s+/)[0] !== "V") {
    throw new BootError(`dm-verity status of ${MAPPER_USR} is "${st ? line : "no such device"}", expected "verity V" (verified)`, { param: "verity.usrhash" });
  }
  log.info(`dm-verity ${MAPPER_USR}: ${line}`);
}

/**
 * /dev/mapper/usr as a block node of the mapping's device number (libdevmapper
 * made it before; devtmpfs only makes /dev/dm-N). A node left by an earlier
 * mapping may carry another number, so only a node of the right one is kept.
 */
function ensureNode(dev: bigint): void {
  const { major, minor } = decodeDev(dev);
  dm(`creating ${MAPPER_USR} (${major}:${minor})`, () => {
    fs.mkdirSync("/dev/mapper", { recursive: true });
    const st = fs.statSync(MAPPER_USR, { throwIfNoEntry: false });
    if (st?.isBlockDevice() && formatDev(st.rdev) === `${major}:${minor}`) return;
    if (st) fs.unlinkSync(MAPPER_USR);
    mknod(MAPPER_USR, "block", 0o600, major, minor);
  });
}

/** Removes the node of a mapping that is gone; anything else at that path is left for ensureNode to report. */
function removeNode(): void {
  const st = fs.lstatSync(MAPPER_USR, { throwIfNoEntry: false });
  if (st?.isBlockDevice()) {
    try {
      fs.unlinkSync(MAPPER_USR);
    } catch (e) {
      log.warn(`could not remove ${MAPPER_USR}: ${messageOf(e)}`);
    }
  }
}
