// The boot failure type and messageOf. The parameter list is checked
// against the command-line reference: a parameter the init reads but the
// list lacks could not be named on the failure screen.
import { describe, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { parseBootParams, splitCmdline } from "./cmdline.ts";
import { BOOT_PARAMS, BootError, isBootParam, messageOf } from "./errors.ts";

describe("BootError", () => {
  test("is an Error with the message as given and the parameter attached", () => {
    const e = new BootError("verity.usrhash= is missing", { param: "verity.usrhash" });
    expect(e).toBeInstanceOf(Error);
    expect(e.message).toBe("verity.usrhash= is missing");
    expect(e.param).toBe("verity.usrhash");
    expect(e.name).toBe("BootError");
  });

  test("the parameter and the cause are optional; a cause is kept when given", () => {
    const plain = new BootError("no /usr");
    expect(plain.param).toBeUndefined();
    expect("cause" in plain).toBe(false);
    const inner = new Error("EIO");
    expect(new BootError("reading failed", { cause: inner }).cause).toBe(inner);
  });

  test("the parameter is checked by the compiler", () => {
    // @ts-expect-error a misspelt parameter does not compile
    expect(new BootError("x", { param: "verity.usrhsh" }).param).toBe("verity.usrhsh");
  });
});

describe("messageOf", () => {
  test("an Error gives its message, anything else its text", () => {
    expect(messageOf(new TypeError("bad"))).toBe("bad");
    expect(messageOf(new BootError("failed", { param: "ip" }))).toBe("failed");
    expect(messageOf("plain text")).toBe("plain text");
    expect(messageOf(42)).toBe("42");
    expect(messageOf(undefined)).toBe("undefined");
    expect(messageOf(null)).toBe("null");
  });
});

describe("BOOT_PARAMS", () => {
  /** Parameter names in the reference: the first column of the parameter tables, and the accepted-but-unused ones. */
  function documentedParams(): Set<string> {
    const text = fs.readFileSync(path.join(import.meta.dir, "../docs/command-line.md"), "utf8");
    const section = text.slice(text.indexOf("\n## Parameters"), text.indexOf("\n## Device references"));
    const names = new Set<string>();
    for (const line of section.split("\n")) {
      const firstCell = line.startsWith("| `") ? line.split("|")[1]! : line.startsWith("`console=`") ? line : "";
      for (const m of firstCell.matchAll(/`([A-Za-z][A-Za-z.]*)=?`/g)) names.add(m[1]!);
    }
    return names;
  }

  test("are exactly the parameters docs/command-line.md documents", () => {
    const documented = documentedParams();
    expect(documented.size).toBeGreaterThan(20);
    expect([...documented].sort()).toEqual([...BOOT_PARAMS].sort());
  });

  test("isBootParam knows each, and nothing else", () => {
    for (const p of BOOT_PARAMS) expect(isBootParam(p)).toBe(true);
    for (const p of ["", "root", "quiet", "mount.usr=", "__proto__", "constructor", "VERITY.USR"]) expect(isBootParam(p)).toBe(false);
  });

  test("each is a key the command-line parser knows, spelt the same: an invalid value is reported under that name", () => {
    for (const p of BOOT_PARAMS) {
      const { errors } = parseBootParams(splitCmdline(`${p} ${p}= ${p}=\x01bad ${p}=/`));
      expect(errors.length).toBeGreaterThan(0);
      for (const e of errors) expect(e.param).toBe(p);
    }
  });
});
