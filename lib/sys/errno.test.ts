// The errno table and SysError's code and message. Importing lib/sys does
// not load libc (dlopen is lazy), so this runs anywhere.
import { describe, expect, test } from "bun:test";
import fs from "node:fs";
import { ERRNO, errnoNameOf, SysError, type ErrnoName } from "./index.ts";

const HEADERS = ["/usr/include/asm-generic/errno-base.h", "/usr/include/asm-generic/errno.h"];

describe("ERRNO", () => {
  test("names every value from 1 to 133 but the two alias slots, each number once", () => {
    const numbers: number[] = Object.values(ERRNO).sort((a, b) => a - b);
    expect(new Set(numbers).size).toBe(numbers.length);
    const expected = Array.from({ length: 133 }, (_, i) => i + 1).filter((n) => n !== 41 && n !== 58);
    expect(numbers).toEqual(expected);
    expect(ERRNO.EINTR).toBe(4);
    expect(ERRNO.EINVAL).toBe(22);
    expect(ERRNO.EKEYREJECTED).toBe(129);
  });

  test.skipIf(!HEADERS.every((h) => fs.existsSync(h)))("agrees with the kernel's asm-generic headers", () => {
    const fromHeaders: Record<string, number> = {};
    for (const h of HEADERS) {
      for (const m of fs.readFileSync(h, "utf8").matchAll(/^#define\s+(E[A-Z0-9]+)\s+(\d+)\b/gm)) fromHeaders[m[1]!] = Number(m[2]);
    }
    expect(Object.keys(fromHeaders).length).toBeGreaterThanOrEqual(131);
    expect({ ...ERRNO } as Record<string, number>).toEqual(fromHeaders);
  });
});

describe("SysError", () => {
  test("a known errno: the name as code, the human text in the message", () => {
    const e = new SysError("mount", ERRNO.EINVAL, "/dev/vda3 on /sysusr/usr type ext4");
    expect(e.code).toBe("EINVAL");
    expect(e.message).toBe("mount(/dev/vda3 on /sysusr/usr type ext4): invalid argument (EINVAL)");
  });

  test("a named errno without a text shows its name", () => {
    const e = new SysError("kexec_file_load", ERRNO.EKEYREJECTED, "vmlinuz");
    expect(e.code).toBe("EKEYREJECTED");
    expect(e.message).toBe("kexec_file_load(vmlinuz): EKEYREJECTED (EKEYREJECTED)");
  });

  test("an errno outside the table is shown by number", () => {
    const e = new SysError("ioctl", 512, "fd 3");
    expect(e.code).toBe("errno 512");
    expect(e.message).toBe("ioctl(fd 3): errno 512 (errno 512)");
  });

  test("comparisons with a misspelt name do not compile", () => {
    const e = new SysError("mount", ERRNO.EBUSY, "x");
    // @ts-expect-error "EBUSSY" is not an errno name
    expect(e.code === "EBUSSY").toBe(false);
    const name: ErrnoName = "EBUSY";
    expect(e.code).toBe(name);
  });
});

describe("errnoNameOf", () => {
  test("reads a SysError and a Node fs error; anything else has no name", () => {
    expect(errnoNameOf(new SysError("umount", ERRNO.EBUSY, "/sysusr"))).toBe("EBUSY");
    let nodeError: unknown;
    try {
      fs.readFileSync("/nonexistent/bunboot-errno-test");
    } catch (e) {
      nodeError = e;
    }
    expect(errnoNameOf(nodeError)).toBe("ENOENT");
    expect(errnoNameOf(Object.assign(new Error("x"), { code: "ERR_INVALID_ARG_TYPE" }))).toBeUndefined();
    expect(errnoNameOf(Object.assign(new Error("x"), { code: "toString" }))).toBeUndefined();
    expect(errnoNameOf(new SysError("ioctl", 512, "fd 3"))).toBeUndefined();
    expect(errnoNameOf("ENOENT")).toBeUndefined();
    expect(errnoNameOf(null)).toBeUndefined();
    expect(errnoNameOf(undefined)).toBeUndefined();
  });
});
