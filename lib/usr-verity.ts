// Opening dm-verity for /usr. The root hash is checked against the on-disk
// hash tree before the mapping exists: with panic-on-corruption, the first
// read through a mapping with a wrong root hash would panic the kernel, and
// the user would see a panic instead of "wrong verity.usrhash".
import fs from "node:fs";
import { log } from "./log.ts";
import { runChecked, run } from "./spawn.ts";
import { readAt } from "./devices/blockdevs.ts";
import { hashTreeLevels, hashTreeTopOffset, parseVeritySuperblock, rootHashFromTop } from "./devices/verity.ts";
import { MAPPER_USR } from "./plan.ts";
import { BootError, messageOf } from "./errors.ts";

export const VERITYSETUP = "/sbin/veritysetup";
export const DMSETUP = "/sbin/dmsetup";
const MAPPER_NAME = "usr";

export async function openUsrVerity(dataDev: string, rootHash: string, hashOffset: number): Promise<string> {
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

  // A retry after the emergency shell finds the mapping of the last attempt:
  // reuse it when it is the same table, otherwise replace it.
  if (fs.existsSync(`/dev/mapper/${MAPPER_NAME}`)) {
    const table = await run([DMSETUP, "table", MAPPER_NAME]);
    if (table.code === 0 && isOurTable(table.stdout, majorMinor(dataDev), rootHash)) {
      log.info(`reusing the existing ${MAPPER_USR} mapping from the previous attempt`);
      await checkVerified();
      ensureNode();
      return MAPPER_USR;
    }
    log.info(`replacing the existing ${MAPPER_USR} mapping (${table.stdout.trim() || "no table"})`);
    await runChecked([DMSETUP, "remove", "--retry", MAPPER_NAME], "removing the stale /dev/mapper/usr");
  }

  await runChecked(
    [VERITYSETUP, "open", "--panic-on-corruption", `--hash-offset=${hashOffset}`, dataDev, MAPPER_NAME, dataDev, rootHash],
    "veritysetup open",
  );
  await checkVerified();
  ensureNode();
  return MAPPER_USR;
}

function majorMinor(dev: string): string {
  const rdev = fs.statSync(dev).rdev;
  // glibc's gnu_dev_major/minor decoding of dev_t.
  const major = ((rdev >>> 8) & 0xfff) | (Math.floor(rdev / 2 ** 32) & ~0xfff);
  const minor = (rdev & 0xff) | ((rdev >>> 12) & ~0xff & 0xfffff);
  return `${major}:${minor}`;
}

/**
 * Whether a dm table is the mapping this boot would create: verity over the
 * same data and hash device with the same root hash, and corruption still
 * fatal. A mapping made by hand in the emergency shell with
 * ignore_corruption would pass unverified data, so it is never reused.
 */
export function isOurTable(table: string, dataDev: string, rootHash: string): boolean {
  const f = table.trim().split(/\s+/);
  // start len verity version data hash dbs hbs nblocks hashstart alg root salt [nopts opts...]
  if (f[2] !== "verity" || f[4] !== dataDev || f[5] !== dataDev || f[11] !== rootHash) return false;
  const opts = f.slice(14);
  return opts.includes("panic_on_corruption") && !opts.some((o) => o === "ignore_corruption" || o === "restart_on_corruption" || o === "ignore_zero_blocks");
}

// veritysetup can exit 0 with a table the kernel flags as corrupted: the
// device-mapper status line must end in V (verified), not C.
async function checkVerified(): Promise<void> {
  const st = await runChecked([DMSETUP, "status", MAPPER_NAME], "dmsetup status usr");
  const fields = st.stdout.trim().split(/\s+/);
  if (fields[2] !== "verity" || fields[3] !== "V") {
    throw new BootError(`dm-verity status of ${MAPPER_USR} is "${st.stdout.trim()}", expected "verity V" (verified)`, { param: "verity.usrhash" });
  }
  log.info(`dm-verity ${MAPPER_USR}: ${st.stdout.trim()}`);
}

function ensureNode(): void {
  const st = fs.statSync(MAPPER_USR, { throwIfNoEntry: false });
  if (!st || !st.isBlockDevice()) {
    throw new BootError(`${MAPPER_USR} is not a block device after veritysetup (libdevmapper did not create the node)`, { param: "verity.usr" });
  }
}
