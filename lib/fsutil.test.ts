import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readOptional, readSysValue } from "./fsutil.ts";

const dir = mkdtempSync(join(tmpdir(), "bunboot-fsutil-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("readOptional returns the text as it is, or null when missing or unreadable", () => {
  writeFileSync(join(dir, "a"), " key\n");
  expect(readOptional(join(dir, "a"))).toBe(" key\n");
  expect(readOptional(join(dir, "missing"))).toBeNull();
  expect(readOptional(dir)).toBeNull();
});

test("readSysValue trims the attribute's newline", () => {
  writeFileSync(join(dir, "carrier"), "1\n");
  expect(readSysValue(join(dir, "carrier"))).toBe("1");
  expect(readSysValue(join(dir, "missing"))).toBeNull();
});
