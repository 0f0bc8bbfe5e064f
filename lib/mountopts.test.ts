// parseMountOptions() turns mount.usrflags= into mount(2) flags and the
// filesystem's data string. Flags the kernel gets wrong fail far from the
// cause (a writable /usr, a mount refused with EINVAL), so every word class
// is pinned here: flag words, their inverses, userspace-only words, x-
// comments and filesystem data.
import { describe, expect, test } from "bun:test";
import { MountOptionError, parseMountOptions } from "./mountopts.ts";
import { BootError } from "./errors.ts";
import { MS_FLAGS } from "./msflags.ts";

const F = MS_FLAGS;

function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(MountOptionError);
    return e as Error;
  }
  throw new Error("expected a MountOptionError");
}

describe("flags", () => {
  test("ro alone", () => {
    expect(parseMountOptions("ro")).toEqual({ flags: F.RDONLY, data: "", readOnly: true });
  });

  test("rw alone", () => {
    expect(parseMountOptions("rw")).toEqual({ flags: 0, data: "", readOnly: false });
  });

  test("every flag word sets its MS_ bit", () => {
    const words: [string, number][] = [
      ["ro", F.RDONLY],
      ["nosuid", F.NOSUID],
      ["nodev", F.NODEV],
      ["noexec", F.NOEXEC],
      ["sync", F.SYNCHRONOUS],
      ["dirsync", F.DIRSYNC],
      ["noatime", F.NOATIME],
      ["nodiratime", F.NODIRATIME],
      ["relatime", F.RELATIME],
      ["strictatime", F.STRICTATIME],
      ["lazytime", F.LAZYTIME],
      ["silent", F.SILENT],
      ["nosymfollow", F.NOSYMFOLLOW],
    ];
    for (const [word, bit] of words) {
      expect({ word, ...parseMountOptions(word) }).toEqual({ word, flags: bit, data: "", readOnly: bit === F.RDONLY });
    }
  });

  test("flags combine", () => {
    expect(parseMountOptions("ro,nosuid,nodev,noexec,noatime")).toEqual({
      flags: F.RDONLY | F.NOSUID | F.NODEV | F.NOEXEC | F.NOATIME,
      data: "",
      readOnly: true,
    });
  });

  test("each inverse word clears its flag", () => {
    const pairs: [string, string][] = [
      ["ro", "rw"],
      ["nosuid", "suid"],
      ["nodev", "dev"],
      ["noexec", "exec"],
      ["sync", "async"],
      ["noatime", "atime"],
      ["nodiratime", "diratime"],
      ["relatime", "norelatime"],
      ["lazytime", "nolazytime"],
      ["silent", "loud"],
    ];
    for (const [set, clear] of pairs) {
      expect({ set, clear, ...parseMountOptions(`${set},${clear}`) }).toEqual({ set, clear, flags: 0, data: "", readOnly: false });
    }
  });

  test("ro/rw: the last one wins, as in mount(8)", () => {
    expect(parseMountOptions("ro,rw").readOnly).toBe(false);
    expect(parseMountOptions("rw,ro").readOnly).toBe(true);
    expect(parseMountOptions("ro,rw,ro").flags).toBe(F.RDONLY);
    expect(parseMountOptions("rw,noatime,ro")).toEqual({ flags: F.RDONLY | F.NOATIME, data: "", readOnly: true });
  });

  test("clearing one flag leaves the others alone", () => {
    expect(parseMountOptions("ro,nodev,noexec,exec").flags).toBe(F.RDONLY | F.NODEV);
  });

  test("a repeated word is harmless", () => {
    expect(parseMountOptions("ro,ro,ro")).toEqual({ flags: F.RDONLY, data: "", readOnly: true });
  });

  test("words are case-sensitive, as for mount(8): RO is not ro but goes to the filesystem", () => {
    expect(parseMountOptions("RO")).toEqual({ flags: 0, data: "RO", readOnly: false });
  });
});

describe("data", () => {
  test("filesystem options go to data, in order, flags taken out", () => {
    expect(parseMountOptions("ro,compress=zstd,noatime,subvol=/usr,user_xattr")).toEqual({
      flags: F.RDONLY | F.NOATIME,
      data: "compress=zstd,subvol=/usr,user_xattr",
      readOnly: true,
    });
  });

  test("values with '=' and ':' are kept whole", () => {
    expect(parseMountOptions("compress=zstd:3,rescue=nologreplay,uid=0").data).toBe("compress=zstd:3,rescue=nologreplay,uid=0");
  });

  test("unknown words are left for the kernel to judge", () => {
    expect(parseMountOptions("frobnicate").data).toBe("frobnicate");
  });

  test("words that only contain an x- further on are not comments", () => {
    // Only a leading x-/X- marks a userspace comment.
    expect(parseMountOptions("max-y=1,box-x").data).toBe("max-y=1,box-x");
  });
});

describe("dropped words", () => {
  test("x- and X- options never reach the kernel", () => {
    expect(parseMountOptions("ro,x-systemd.device-timeout=0,X-mount.mkdir,x-initrd.mount")).toEqual({
      flags: F.RDONLY,
      data: "",
      readOnly: true,
    });
  });

  test("userspace-only words are accepted and dropped", () => {
    for (const word of ["defaults", "auto", "noauto", "nofail", "user", "nouser", "_netdev"]) {
      expect({ word, ...parseMountOptions(word) }).toEqual({ word, flags: 0, data: "", readOnly: false });
    }
  });

  test("defaults does not undo an earlier ro (libmount treats it as a no-op)", () => {
    expect(parseMountOptions("ro,defaults").readOnly).toBe(true);
  });

  test("empty items (doubled or trailing commas) are skipped", () => {
    expect(parseMountOptions(",ro,,compress=zstd,")).toEqual({ flags: F.RDONLY, data: "compress=zstd", readOnly: true });
  });

  test("blanks around an option are trimmed", () => {
    expect(parseMountOptions(" ro , compress=zstd ")).toEqual({ flags: F.RDONLY, data: "compress=zstd", readOnly: true });
  });
});

describe("empty", () => {
  test("the empty string: no flags, no data, writable", () => {
    expect(parseMountOptions("")).toEqual({ flags: 0, data: "", readOnly: false });
  });

  test("only commas and blanks: the same", () => {
    expect(parseMountOptions(" , ,")).toEqual({ flags: 0, data: "", readOnly: false });
  });
});

describe("rejected", () => {
  // The data string goes to the kernel unquoted; a quote or blank in it means
  // the user's quoting went wrong, and the kernel's error would not say so.
  test("a space inside an option", () => {
    expect(thrown(() => parseMountOptions("ro,a b", "mount.usrflags")).message).toBe(
      'mount.usrflags=ro,a b: option "a b" contains a space, quote or backslash',
    );
  });

  test("a tab inside an option: refused, and shown escaped", () => {
    expect(thrown(() => parseMountOptions("a\tb", "mount.usrflags")).message).toBe(
      'mount.usrflags=a\\x09b: option "a\\x09b" contains a space, quote or backslash',
    );
  });

  test("double quote", () => {
    expect(thrown(() => parseMountOptions('ro,"noatime"', "mount.usrflags")).message).toBe(
      'mount.usrflags=ro,"noatime": option ""noatime"" contains a space, quote or backslash',
    );
  });

  test("single quote", () => {
    expect(thrown(() => parseMountOptions("subvol='usr'", "usrflags")).message).toBe(
      `usrflags=subvol='usr': option "subvol='usr'" contains a space, quote or backslash`,
    );
  });

  test("backslash", () => {
    expect(thrown(() => parseMountOptions("ro,a\\,b", "mount.usrflags")).message).toBe(
      'mount.usrflags=ro,a\\,b: option "a\\" contains a space, quote or backslash',
    );
  });

  test("the first bad option is named, even after good ones", () => {
    expect(thrown(() => parseMountOptions("ro,noatime,x y,'z'", "mount.usrflags")).message).toBe(
      `mount.usrflags=ro,noatime,x y,'z': option "x y" contains a space, quote or backslash`,
    );
  });

  test("an x- option is checked too: it is rejected, not silently dropped", () => {
    expect(thrown(() => parseMountOptions("x-a b")).message).toBe('mount.usrflags=x-a b: option "x-a b" contains a space, quote or backslash');
  });

  test("without a parameter name the message names mount.usrflags=, the only source of options", () => {
    const e = thrown(() => parseMountOptions("a b")) as MountOptionError;
    expect(e.message).toBe('mount.usrflags=a b: option "a b" contains a space, quote or backslash');
    expect(e.param).toBe("mount.usrflags");
  });

  test("MountOptionError is a BootError: the failure screen names its parameter", () => {
    expect(thrown(() => parseMountOptions("'"))).toBeInstanceOf(BootError);
  });
});

// Regression: messages carried raw control characters (an escape sequence in
// mount.usrflags= could clear or recolour the failure screen) and the error
// had no parameter name for the failure screen and the emergency policy.
describe("MountOptionError: parameter name and escaping", () => {
  test("the error names the parameter, in the message and in .param", () => {
    for (const param of ["mount.usrflags", "usrflags", "mount.usrfstype"] as const) {
      const e = thrown(() => parseMountOptions("ro,a b", param)) as MountOptionError;
      expect(e.param).toBe(param);
      expect(e.message.startsWith(`${param}=`)).toBe(true);
      expect(e.name).toBe("MountOptionError");
    }
  });

  test("control characters are refused as options and escaped as \\xNN in the message", () => {
    const e = thrown(() => parseMountOptions("ro,a\x1b[2Jb", "mount.usrflags")) as MountOptionError;
    expect(e.message).toBe('mount.usrflags=ro,a\\x1b[2Jb: option "a\\x1b[2Jb" contains a control character');
    expect(e.param).toBe("mount.usrflags");
    for (const c of ["\x00", "\x07", "\x7f", "\x85", "\x9b"]) {
      const m = thrown(() => parseMountOptions(`x${c}y`, "usrflags")).message;
      expect(m).not.toContain(c);
      expect(m).toContain(`\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
    }
  });

  test("no raw control character or line break reaches any message", () => {
    for (const text of ["a\nb", "a\rb", "\x1b]0;title\x07", "ro,a\u2028b", "a\u202eb c"]) {
      const m = thrown(() => parseMountOptions(text, "mount.usrflags")).message;
      expect(m).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u2028\u202e]/);
    }
  });

  test("a huge option string gives a short message", () => {
    const e = thrown(() => parseMountOptions(`${"a".repeat(1 << 20)} b`, "mount.usrflags"));
    expect(e.message.length).toBeLessThan(300);
  });
});
