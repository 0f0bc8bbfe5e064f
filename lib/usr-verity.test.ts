import { describe, expect, test } from "bun:test";
import { dmUuid, headerUnusable, isOurTable, verityTableFor } from "./usr-verity.ts";
import { DM_FLAG } from "./sys/dm.ts";
import { formatTarget, type DmTarget } from "./sys/dm.ts";
import type { VeritySuperblock } from "./devices/verity.ts";

const HASH = "54c6b38d075ef88d6408a410ff43cff7e34d16613a2186de021aed8123cd1ed2";
const SALT = "9c0a8ff3c7f0c2b0e4a3f3e1d2c4b5a69788796a5b4c3d2e1f00112233445566";
const FLATCAR_HASH_OFFSET = 1065345024;

/** Flatcar's USR partition: 260094 data blocks, the hash tree from byte 1065345024. */
const SB: VeritySuperblock = {
  version: 1,
  hashType: 1,
  uuid: "5a5a5a5a-1111-4222-8333-944444444444",
  algorithm: "sha256",
  dataBlockSize: 4096,
  hashBlockSize: 4096,
  dataBlocks: 260094n,
  salt: Buffer.from(SALT, "hex"),
};

const ours = verityTableFor(SB, "252:3", FLATCAR_HASH_OFFSET, HASH);
const live = (params: string, over: Partial<DmTarget> = {}): DmTarget[] => [{ start: 0n, length: 2080752n, type: "verity", params, ...over }];
const params = (dev: string, hash: string, opts: string) => `1 ${dev} ${dev} 4096 4096 260094 260095 sha256 ${hash} ${SALT}${opts ? ` ${opts}` : ""}`;

describe("the dm-verity table of /usr", () => {
  test("what veritysetup open --panic-on-corruption --hash-offset=1065345024 loads for Flatcar's USR partition", () => {
    expect(formatTarget(ours)).toBe(`0 2080752 verity ${params("252:3", HASH, "1 panic_on_corruption")}`);
  });

  test("the tree starts at the hash block after the superblock, wherever the superblock is", () => {
    expect(verityTableFor(SB, "8:3", 4096, HASH).params.split(" ")[6]).toBe("2");
    // An offset that is a multiple of 512 but not of the hash block: the first
    // boundary after the superblock's 512 bytes (cryptsetup's VERITY_hash_offset_block).
    expect(verityTableFor(SB, "8:3", 7680, HASH).params.split(" ")[6]).toBe("2");
    expect(verityTableFor(SB, "8:3", 7936, HASH).params.split(" ")[6]).toBe("3");
    expect(verityTableFor({ ...SB, hashBlockSize: 512 }, "8:3", 4096, HASH).params.split(" ")[6]).toBe("9");
  });

  test("the Chrome OS hash type and an empty salt come through as veritysetup writes them", () => {
    const t = verityTableFor({ ...SB, hashType: 0, salt: new Uint8Array() }, "252:3", FLATCAR_HASH_OFFSET, HASH);
    expect(t.params).toBe(`0 252:3 252:3 4096 4096 260094 260095 sha256 ${HASH} - 1 panic_on_corruption`);
  });

  test("the DM uuid is veritysetup's, so the full system sees the same mapping", () => {
    expect(dmUuid(SB)).toBe("CRYPT-VERITY-5a5a5a5a111142228333944444444444-usr");
  });
});

describe("reusing a dm-verity mapping from an earlier attempt", () => {
  test("the mapping this boot makes is reused", () => {
    expect(isOurTable([ours], ours)).toBe(true);
    expect(isOurTable(live(params("252:3", HASH, "1 panic_on_corruption")), ours)).toBe(true);
  });

  test("another data device, another root hash, or no panic on corruption is not", () => {
    expect(isOurTable(live(params("252:4", HASH, "1 panic_on_corruption")), ours)).toBe(false);
    expect(isOurTable(live(params("252:3", "0".repeat(64), "1 panic_on_corruption")), ours)).toBe(false);
    expect(isOurTable(live(params("252:3", HASH, "")), ours)).toBe(false);
    expect(isOurTable(live(params("252:3", HASH, "2 panic_on_corruption ignore_corruption")), ours)).toBe(false);
    expect(isOurTable(live(params("252:3", HASH, "1 ignore_corruption")), ours)).toBe(false);
    expect(isOurTable(live(params("252:3", HASH, "2 panic_on_corruption check_at_most_once")), ours)).toBe(false);
    // A count that does not match the options.
    expect(isOurTable(live(params("252:3", HASH, "2 panic_on_corruption")), ours)).toBe(false);
  });

  test("another geometry, salt or size is not", () => {
    expect(isOurTable(live(params("252:3", HASH, "1 panic_on_corruption").replace(" 260095 ", " 260096 ")), ours)).toBe(false);
    expect(isOurTable(live(params("252:3", HASH, "1 panic_on_corruption").replace(SALT, "-")), ours)).toBe(false);
    expect(isOurTable(live(params("252:3", HASH, "1 panic_on_corruption"), { length: 2080751n }), ours)).toBe(false);
  });

  test("not verity at all, no table, or more than one target", () => {
    expect(isOurTable([{ start: 0n, length: 2080752n, type: "linear", params: "252:3 0" }], ours)).toBe(false);
    expect(isOurTable([], ours)).toBe(false);
    expect(isOurTable([ours, { ...ours, start: 2080752n }], ours)).toBe(false);
  });
});

describe("headerUnusable: a mapping is reused only when live, read-only and not suspended", () => {
  test("flags", () => {
    const live = DM_FLAG.READONLY | DM_FLAG.ACTIVE_PRESENT;
    expect(headerUnusable(live)).toBeNull();
    expect(headerUnusable(live | DM_FLAG.SUSPEND)).toContain("suspended");
    expect(headerUnusable(DM_FLAG.ACTIVE_PRESENT)).toContain("writable");
    expect(headerUnusable(DM_FLAG.READONLY)).toContain("without a live table");
  });
});
