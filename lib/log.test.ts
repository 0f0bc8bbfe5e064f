// bestEffort: what it ignores reaches the boot log, and nothing it runs can
// throw. The log is observed through its file copy (persistTo); no sinks are
// opened, as in the host commands and before /dev is mounted.
import { describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { bestEffort, persistTo } from "./log.ts";

describe("bestEffort", () => {
  test("returns what the function returns", () => {
    expect(bestEffort("adding", () => 1 + 1)).toBe(2);
    expect(bestEffort("nothing", () => {})).toBeUndefined();
  });

  test("a failure is not thrown: undefined, and a debug line names what was ignored", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bunboot-log-"));
    try {
      const file = path.join(dir, "log");
      persistTo(file);
      const r = bestEffort("detaching /sys", () => {
        throw new Error("umount(/sys): device or resource busy (EBUSY)");
      });
      expect(r).toBeUndefined();
      expect(bestEffort("a thrown string", () => {
        throw "plain text";
      })).toBeUndefined();
      const text = fs.readFileSync(file, "utf8");
      expect(text).toContain("debug: bunboot[init]: detaching /sys: ignored umount(/sys): device or resource busy (EBUSY)\n");
      expect(text).toContain("debug: bunboot[init]: a thrown string: ignored plain text\n");
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
