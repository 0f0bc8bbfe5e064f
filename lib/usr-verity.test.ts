import { describe, expect, test } from "bun:test";
import { isOurTable } from "./usr-verity.ts";

const HASH = "54c6b38d075ef88d6408a410ff43cff7e34d16613a2186de021aed8123cd1ed2";
const SALT = "9c0a8ff3c7f0c2b0e4a3f3e1d2c4b5a69788796a5b4c3d2e1f00112233445566";
const table = (dev: string, hash: string, opts: string) => `0 2080752 verity 1 ${dev} ${dev} 4096 4096 260094 260095 sha256 ${hash} ${SALT} ${opts}\n`;

describe("reusing a dm-verity mapping from an earlier attempt", () => {
  test("the mapping this boot makes is reused", () => {
    expect(isOurTable(table("252:3", HASH, "1 panic_on_corruption"), "252:3", HASH)).toBe(true);
  });
  test("another data device, another root hash, or no panic on corruption is not", () => {
    expect(isOurTable(table("252:4", HASH, "1 panic_on_corruption"), "252:3", HASH)).toBe(false);
    expect(isOurTable(table("252:3", "0".repeat(64), "1 panic_on_corruption"), "252:3", HASH)).toBe(false);
    expect(isOurTable(table("252:3", HASH, ""), "252:3", HASH)).toBe(false);
    expect(isOurTable(table("252:3", HASH, "2 panic_on_corruption ignore_corruption"), "252:3", HASH)).toBe(false);
    expect(isOurTable(table("252:3", HASH, "1 ignore_corruption"), "252:3", HASH)).toBe(false);
  });
  test("not verity at all", () => {
    expect(isOurTable("0 2080752 linear 252:3 0\n", "252:3", HASH)).toBe(false);
    expect(isOurTable("", "252:3", HASH)).toBe(false);
  });
});
