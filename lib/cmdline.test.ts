import { describe, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import {
  BREAKPOINTS,
  PARAMS,
  ParamError,
  TIMEOUT_MAX_SEC,
  defaultBootParams,
  parseBootParams,
  parseFlag,
  renderParamTable,
  splitCmdline,
} from "./cmdline.ts";
import type { BootParams, CmdlineWord } from "./cmdline.ts";
import { DEVICE_EXPECTED } from "./devices/ref.ts";

// The texts that end error messages ("expected …"): each parameter's from its
// row of the table, the more precise ones as the user reads them.
const FLAG_EXPECTED = PARAMS["rd.earlyshell"].expected;
const TIMEOUT_EXPECTED = PARAMS["rd.earlytimeout"].expected;
const VERITY_HASH_EXPECTED = PARAMS["verity.usrhash"].expected;
const FSTYPE_EXPECTED = PARAMS["mount.usrfstype"].expected;
const MOUNT_FLAGS_EXPECTED = PARAMS["mount.usrflags"].expected;
const BREAKPOINT_EXPECTED = PARAMS["rd.break"].expected;
const EMERGENCY_EXPECTED = PARAMS["rd.emergency"].expected;
const MODULE_EXPECTED = PARAMS["rd.driver.pre"].expected;
const INIT_EXPECTED = PARAMS.init.expected;
const USR_URL_EXPECTED = PARAMS["rd.usr.url"].expected;
const USR_HASH_EXPECTED = PARAMS["rd.usr.hash"].expected;
const IP_EXPECTED = PARAMS.ip.expected;
const BOOTIF_EXPECTED = PARAMS.BOOTIF.expected;
const NAMESERVER_EXPECTED = PARAMS.nameserver.expected;
const PROXY_EXPECTED = PARAMS.proxy.expected;
const CONSOLE_EXPECTED = PARAMS.console.expected;
const USR_URL_ESCAPE_EXPECTED =
  "a URL whose %-escapes are % and two hex digits that decode to UTF-8 text without control characters (write a literal % as %25)";
const USR_URL_PASSWORD_EXPECTED =
  "an sftp URL without a password: the command line is readable by every process and ends up in logs (ship it in /etc/bunboot/sftp/password in an appended cpio)";
const USR_URL_SFTP_USER_EXPECTED = "an sftp URL with a user name: sftp://user@host[:port]/path";
const USR_URL_QUERY_EXPECTED = "a file://, sftp:// or tftp:// URL without ?query or #fragment (write ? as %3F and # as %23)";
const USR_URL_TFTP_EXPECTED = "a tftp URL with a host and a file, without user or password (TFTP has none): tftp://host[:port]/path";
const USR_URL_TFTP_MODE_EXPECTED = "a tftp URL without ;mode= (the image is always read in octet mode)";
// The texts of errors from inside a device reference (lib/devices/ref.ts).
const PARTUUID_EXPECTED =
  "PARTUUID= with a GPT partition UUID (such as 7130c94a-213a-4e5a-8e26-6cce9662f132) or an MBR one (such as 1234abcd-01)";
const DEV_PATH_EXPECTED = "a path below /dev/ without spaces, control characters, empty, . or .. components";

/** [key, value] pairs: easier to read in expectations than objects. */
function split(text: string): [string, string | null][] {
  return splitCmdline(text).map((w) => [w.key, w.value]);
}

function parse(text: string): { params: BootParams; errors: ParamError[] } {
  return parseBootParams(splitCmdline(text));
}

/** Parses a command line that must be valid. */
function ok(text: string): BootParams {
  const { params, errors } = parse(text);
  expect(errors.map((e) => e.message)).toEqual([]);
  return params;
}

function messages(text: string): string[] {
  return parse(text).errors.map((e) => e.message);
}

const HASH = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const USR_A = "7130c94a-213a-4e5a-8e26-6cce9662f132";

// ---------------------------------------------------------------------------

describe("splitCmdline: kernel next_arg() tokenisation", () => {
  // Every expectation below was also checked against the kernel's next_arg()
  // compiled from lib/cmdline.c (with its ctype isspace()).
  const cases: [string, [string, string | null][]][] = [
    ["", []],
    ["   \t  ", []],
    ["a b c", [["a", null], ["b", null], ["c", null]]],
    ["  a   b  ", [["a", null], ["b", null]]],
    ["key=value", [["key", "value"]]],
    // Quoted value: both quotes dropped.
    ['key="a b"', [["key", "a b"]]],
    // The closing quote is not last: only the opening one is dropped.
    ['key="a b"c', [["key", 'a b"c']]],
    // Quotes that do not start the value are kept (but still protect the space).
    ['key=a" b"', [["key", 'a" b"']]],
    // Whole word in quotes.
    ['"a b"', [["a b", null]]],
    // next_arg() finds the '=' regardless of quoting.
    ['"a=b c"', [["a", "b c"]]],
    // A quoted key keeps its closing quote, which is not at the end of the word.
    ['"key"=val', [['key"', "val"]]],
    // Only one trailing quote is ever removed.
    ['"key="val""', [["key", 'val"']]],
    ['key="a"b"', [["key", 'a"b']]],
    ['a="b"c"d e', [["a", 'b"c"d e']]],
    ['a""b', [['a""b', null]]],
    ['"a"b c', [['a"b', null], ["c", null]]],
    // Unbalanced quotes: the rest of the line is one word.
    ['a="b c d=e', [["a", "b c d=e"]]],
    ['"abc', [["abc", null]]],
    ['" a b', [[" a b", null]]],
    ['x=1 y="2 3', [["x", "1"], ["y", "2 3"]]],
    // Empty values.
    ["key=", [["key", ""]]],
    ['key=""', [["key", ""]]],
    ['key="', [["key", ""]]],
    ['"a="', [["a", ""]]],
    ['x="" y', [["x", ""], ["y", null]]],
    // Only the first '=' splits.
    ["a=b=c", [["a", "b=c"]]],
    ['a=="b"', [["a", '="b"']]],
    // An '=' in the first position does not count (the kernel uses 0 as "none").
    ["=foo", [["=foo", null]]],
    ["=a=b", [["=a", "b"]]],
    ['"=x', [["=x", null]]],
    // Empty words from lone quotes, as the kernel produces them.
    ['""', [["", null]]],
    ['"', [["", null]]],
    // All kernel whitespace separates: \t \n \v \f \r, space, 0xA0.
    ["a\tb\nc\vd\fe\rf g\u00a0h", [["a", null], ["b", null], ["c", null], ["d", null], ["e", null], ["f", null], ["g", null], ["h", null]]],
    // ...but not inside quotes.
    ['k="a\tb\nc"', [["k", "a\tb\nc"]]],
    // "--" is returned like any word (parseBootParams stops there).
    ["a -- b=c", [["a", null], ["--", null], ["b", "c"]]],
  ];
  for (const [input, expected] of cases) {
    test(JSON.stringify(input), () => {
      expect(split(input)).toEqual(expected);
    });
  }

  test("one trailing newline from /proc/cmdline is removed", () => {
    expect(split("a b=c\n")).toEqual([["a", null], ["b", "c"]]);
    // It matters inside an unbalanced quote: the kernel never saw the newline.
    expect(split('a="b c\n')).toEqual([["a", "b c"]]);
    // Only one: a second newline was part of the kernel's line.
    expect(split('a="b c\n\n')).toEqual([["a", "b c\n"]]);
    expect(split("a\n\n")).toEqual([["a", null]]);
    expect(split("\n")).toEqual([]);
  });

  test("the line ends at a NUL, like the kernel's C string", () => {
    expect(split("a\0b c")).toEqual([["a", null]]);
    expect(split('k="x\0y"')).toEqual([["k", "x"]]);
    expect(split("\0")).toEqual([]);
  });

  test("non-ASCII text passes through unchanged", () => {
    expect(split("LABEL=données 日本=語 e=😀 \u00e0")).toEqual([
      ["LABEL", "données"],
      ["日本", "語"],
      ["e", "😀"],
      ["\u00e0", null],
    ]);
    // Latin-1 decoded bytes (how a byte-exact caller would decode): 0xA0 splits.
    expect(split("x=\u00c3\u00a0y")).toEqual([["x", "\u00c3"], ["y", null]]);
    // Lone surrogates and replacement characters are just characters.
    expect(split("a=\ud800 b=\ufffd")).toEqual([["a", "\ud800"], ["b", "\ufffd"]]);
  });

  test("control characters other than whitespace are part of words", () => {
    expect(split("a=\x1b[2J b=\x07\x00c")).toEqual([["a", "\x1b[2J"], ["b", "\x07"]]);
    expect(split("\x01\x02=\x7f")).toEqual([["\x01\x02", "\x7f"]]);
  });
});

describe("splitCmdline: hostile input", () => {
  test("1 MB value", () => {
    const big = "x".repeat(1 << 20);
    const t0 = performance.now();
    const words = splitCmdline(`a=${big} b`);
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(words.length).toBe(2);
    expect(words[0]?.value?.length).toBe(1 << 20);
    expect(words[1]).toEqual({ key: "b", value: null });
  });

  test("1 MB unbalanced quoted value swallows the rest of the line", () => {
    const big = "y ".repeat(1 << 19);
    const words = splitCmdline(`a="${big}\n`);
    expect(words).toEqual([{ key: "a", value: big }]);
  });

  test("1 MB of quotes, '=' and spaces stays linear", () => {
    for (const unit of ['"', "=", '"=', ' "', "= ", 'a"b=c "']) {
      const text = unit.repeat(Math.ceil((1 << 20) / unit.length));
      const t0 = performance.now();
      splitCmdline(text);
      expect(performance.now() - t0).toBeLessThan(2000);
    }
  });

  test("many words: time grows linearly", () => {
    const line = (n: number) => "rd.driver.pre=a,b ".repeat(n);
    const time = (text: string) => {
      const t0 = performance.now();
      splitCmdline(text);
      return performance.now() - t0;
    };
    time(line(10_000)); // warm up the JIT
    const small = Math.max(time(line(25_000)), 1);
    const large = time(line(200_000));
    // 8x the input; quadratic would be 64x. Generous bound for noisy machines.
    expect(large).toBeLessThan(small * 30 + 200);
    expect(splitCmdline(line(200_000)).length).toBe(200_000);
  });
});

// ---------------------------------------------------------------------------

describe("ParamError", () => {
  test("message, fields and name", () => {
    const e = new ParamError("rd.earlytimeout", "abc", "a number");
    expect(e).toBeInstanceOf(Error);
    expect(e.name).toBe("ParamError");
    expect(e.message).toBe("rd.earlytimeout=abc: expected a number");
    expect([e.param, e.value, e.expected]).toEqual(["rd.earlytimeout", "abc", "a number"]);
  });

  test("a bare word shows the name alone", () => {
    const e = new ParamError("rd.emergency", null, EMERGENCY_EXPECTED);
    expect(e.message).toBe("rd.emergency: expected prompt, shell, reboot, poweroff or halt");
    expect(e.value).toBe("");
  });

  test("an empty value shows the '='", () => {
    expect(new ParamError("x", "", "y").message).toBe("x=: expected y");
  });

  test("huge values are shortened to 80 characters and an ellipsis; .value keeps all", () => {
    const big = "A".repeat(1 << 20);
    const e = new ParamError("verity.usr", big, DEVICE_EXPECTED);
    expect(e.message).toBe(`verity.usr=${"A".repeat(80)}…: expected ${DEVICE_EXPECTED}`);
    expect(e.value.length).toBe(1 << 20);
    // Exactly 80 is not shortened.
    expect(new ParamError("p", "B".repeat(80), "x").message).toBe(`p=${"B".repeat(80)}: expected x`);
  });

  test("shortening never splits a surrogate pair", () => {
    const e = new ParamError("p", `${"a".repeat(79)}😀tail`, "x");
    expect(e.message).toBe(`p=${"a".repeat(79)}…: expected x`);
  });

  test("line separators, bidi overrides and lone surrogates are escaped too", () => {
    const e = new ParamError("p", "a\u202eb\u2028c\ud800d\udc00e😀", "x");
    expect(e.message).toBe("p=a\\u{202e}b\\u{2028}c\\u{d800}d\\u{dc00}e😀: expected x");
  });

  test("control characters are escaped so they cannot garble the console", () => {
    const e = new ParamError("p", "a\x1b[2Jb\rc\td\x7f\x9b", "x");
    expect(e.message).toBe("p=a\\x1b[2Jb\\x0dc\\x09d\\x7f\\x9b: expected x");
    expect(e.value).toBe("a\x1b[2Jb\rc\td\x7f\x9b");
  });
});

// ---------------------------------------------------------------------------

describe("parseFlag", () => {
  test("bare word is on", () => {
    expect(parseFlag("rd.earlyshell", null)).toBe(true);
  });
  for (const v of ["1", "yes", "on", "true", "YES", "True", "ON"]) {
    test(`${v} is on`, () => expect(parseFlag("rd.earlyshell", v)).toBe(true));
  }
  for (const v of ["0", "no", "off", "false", "NO", "False", "OFF"]) {
    test(`${v} is off`, () => expect(parseFlag("rd.earlyshell", v)).toBe(false));
  }
  for (const v of ["", "2", "y", "n", "enable", " 1", "1 ", "00"]) {
    test(`${JSON.stringify(v)} is an error`, () => {
      expect(() => parseFlag("rd.earlyshell", v)).toThrow(`rd.earlyshell=${v}: expected ${FLAG_EXPECTED}`);
    });
  }
  test("the flag message text", () => {
    expect(() => parseFlag("rd.debug", "maybe")).toThrow(
      "rd.debug=maybe: expected no value, 1, yes, on or true to enable; 0, no, off or false to disable",
    );
  });
});

// ---------------------------------------------------------------------------

describe("parseBootParams: defaults", () => {
  test("empty command line", () => {
    const { params, errors } = parseBootParams([]);
    expect(errors).toEqual([]);
    expect(params).toEqual({
      mountUsrFsType: "auto",
      mountUsrFlags: "ro",
      mountUsrFlagsParam: "mount.usrflags",
      earlyShell: false,
      earlyTrace: false,
      debug: false,
      earlyTimeoutSec: 300,
      breakpoints: [],
      shellAllowed: true,
      emergency: "prompt",
      emergencyTimeoutSec: 60,
      driverPre: [],
      driverBlacklist: [],
      console: [],
      usrInsecure: false,
      ip: [],
      nameservers: [],
      neednet: false,
    });
    // Optional fields are absent, not present-and-undefined.
    for (const k of ["verityUsr", "verityUsrHash", "mountUsr", "usrUrl", "usrHash", "bootif", "proxy", "init"]) {
      expect(Object.hasOwn(params, k)).toBe(false);
    }
  });

  test("defaultBootParams returns fresh arrays", () => {
    const a = defaultBootParams();
    a.console.push("tty0");
    expect(defaultBootParams().console).toEqual([]);
  });

  test("unknown keys (kernel's, stage 2's) are ignored", () => {
    const p = ok("root=LABEL=ROOT rootflags=rw quiet systemd.unit=x.target flatcar.first_boot=detected ignition.platform.id=qemu");
    expect(p).toEqual(defaultBootParams());
  });

  test("accepts a readonly word array", () => {
    const words: readonly CmdlineWord[] = Object.freeze([{ key: "rd.debug", value: null }]);
    expect(parseBootParams(words).params.debug).toBe(true);
  });
});

describe("parseBootParams: exact key matching", () => {
  test("near-miss keys do nothing", () => {
    const p = ok(
      "rd.earlyshellx rd.earlyshel xrd.earlyshell RD.EARLYSHELL rd_earlyshell rd-earlyshell " +
        "verity.usrx=/dev/sda verity.usrhashx=zz mount.usr.x=/dev/sda usrx=/dev/sda " +
        "rd.breakx=bogus rd.debugging rd.shellx=0 bootif=01-aa-bb-cc-dd-ee-ff consoles=tty0 ips=dhcp",
    );
    expect(p).toEqual(defaultBootParams());
  });

  test("a key with a value is not the bare flag of another key", () => {
    // "rd.earlyshell.x" is a different key, not rd.earlyshell with a suffix.
    expect(ok("rd.earlyshell.x=1").earlyShell).toBe(false);
  });
});

describe("parseBootParams: the Flatcar default command line", () => {
  const line =
    `mount.usr=/dev/mapper/usr verity.usr=PARTUUID=${USR_A} rootflags=rw mount.usrflags=ro ` +
    `consoleblank=0 root=LABEL=ROOT console=ttyS0,115200n8 verity.usrhash=${HASH}\n`;

  test("tokens", () => {
    expect(split(line)).toEqual([
      ["mount.usr", "/dev/mapper/usr"],
      ["verity.usr", `PARTUUID=${USR_A}`],
      ["rootflags", "rw"],
      ["mount.usrflags", "ro"],
      ["consoleblank", "0"],
      ["root", "LABEL=ROOT"],
      ["console", "ttyS0,115200n8"],
      ["verity.usrhash", HASH],
    ]);
  });

  test("parameters", () => {
    expect(ok(line)).toEqual({
      ...defaultBootParams(),
      verityUsr: { kind: "partuuid", value: USR_A },
      verityUsrHash: HASH,
      mountUsr: { kind: "path", value: "/dev/mapper/usr" },
      mountUsrFsType: "auto",
      mountUsrFlags: "ro",
      console: ["ttyS0,115200n8"],
    });
  });

  test("with GRUB's additions and a debug request", () => {
    const p = ok(`BOOT_IMAGE=/flatcar/vmlinuz-a ${line.trim()} flatcar.first_boot=detected rd.earlyshell=0 rd.debug`);
    expect(p.earlyShell).toBe(false);
    expect(p.debug).toBe(true);
    expect(p.verityUsrHash).toBe(HASH);
  });
});

describe("parseBootParams: verity and /usr", () => {
  test("verity.usr kinds", () => {
    expect(ok("verity.usr=PARTLABEL=USR-A").verityUsr).toEqual({ kind: "partlabel", value: "USR-A" });
    expect(ok('verity.usr="LABEL=my usr"').verityUsr).toEqual({ kind: "label", value: "my usr" });
    expect(ok('verity.usr=LABEL="my usr"').verityUsr).toEqual({ kind: "label", value: 'LABEL="my usr"'.slice(6) });
  });

  test("verity.usrhash is lower-cased", () => {
    expect(ok(`verity.usrhash=${HASH.toUpperCase()}`).verityUsrHash).toBe(HASH);
  });

  test("verity.usrhash errors", () => {
    expect(messages("verity.usrhash=abc")).toEqual([`verity.usrhash=abc: expected ${VERITY_HASH_EXPECTED}`]);
    expect(messages(`verity.usrhash=${HASH}0`)).toEqual([`verity.usrhash=${HASH}0: expected ${VERITY_HASH_EXPECTED}`]);
    expect(messages(`verity.usrhash=${HASH.slice(1)}g`)).toEqual([
      `verity.usrhash=${HASH.slice(1)}g: expected 64 hex digits (the sha256 dm-verity root hash)`,
    ]);
    expect(messages("verity.usrhash")).toEqual([`verity.usrhash: expected ${VERITY_HASH_EXPECTED}`]);
    expect(messages("verity.usrhash=")).toEqual([`verity.usrhash=: expected ${VERITY_HASH_EXPECTED}`]);
    expect(messages(`verity.usrhash=sha256:${HASH}`)).toHaveLength(1);
  });

  test("verity.usr errors", () => {
    expect(messages("verity.usr=FOO=bar")).toEqual([
      "verity.usr=FOO=bar: expected PARTUUID=, PARTLABEL=, UUID=, LABEL= or a /dev/ path",
    ]);
    expect(messages("verity.usr")).toEqual([`verity.usr: expected ${DEVICE_EXPECTED}, or nbd://HOST[:PORT]/EXPORT or nfs://HOST[:PORT]/PATH/FILE`]);
    expect(messages("verity.usr=PARTUUID=nope")).toEqual([`verity.usr=PARTUUID=nope: expected ${PARTUUID_EXPECTED}`]);
    expect(messages("mount.usr=/dev/")).toEqual([`mount.usr=/dev/: expected ${DEV_PATH_EXPECTED}`]);
    expect(messages("usr=sda")).toEqual([`usr=sda: expected ${DEVICE_EXPECTED}`]);
  });

  test("the last occurrence wins", () => {
    const p = ok(`verity.usr=PARTLABEL=USR-A verity.usr=PARTUUID=${USR_A} mount.usrfstype=ext4 mount.usrfstype=btrfs`);
    expect(p.verityUsr).toEqual({ kind: "partuuid", value: USR_A });
    expect(p.mountUsrFsType).toBe("btrfs");
  });

  test("an invalid last occurrence leaves the default, not an earlier value", () => {
    const { params, errors } = parse(`verity.usrhash=${HASH} verity.usrhash=bad verity.usr=/dev/sda verity.usr=bad`);
    expect(params.verityUsrHash).toBeUndefined();
    expect(params.verityUsr).toBeUndefined();
    expect(Object.hasOwn(params, "verityUsrHash")).toBe(false);
    expect(errors.map((e) => e.param)).toEqual(["verity.usrhash", "verity.usr"]);
  });

  test("an invalid earlier occurrence is reported even when a later one is valid", () => {
    const { params, errors } = parse(`verity.usrhash=bad verity.usrhash=${HASH}`);
    expect(params.verityUsrHash).toBe(HASH);
    expect(errors.map((e) => e.message)).toEqual([`verity.usrhash=bad: expected ${VERITY_HASH_EXPECTED}`]);
  });

  test("legacy names usr=, usrfstype=, usrflags=", () => {
    const p = ok("usr=PARTLABEL=USR-B usrfstype=ext4 usrflags=ro,noatime");
    expect(p.mountUsr).toEqual({ kind: "partlabel", value: "USR-B" });
    expect(p.mountUsrFsType).toBe("ext4");
    expect(p.mountUsrFlags).toBe("ro,noatime");
  });

  test("Flatcar names win over legacy names in either order", () => {
    for (const line of [
      "usr=/dev/sdb usrfstype=ext4 usrflags=rw mount.usr=/dev/sda mount.usrfstype=btrfs mount.usrflags=ro,x",
      "mount.usr=/dev/sda mount.usrfstype=btrfs mount.usrflags=ro,x usr=/dev/sdb usrfstype=ext4 usrflags=rw",
    ]) {
      const p = ok(line);
      expect(p.mountUsr).toEqual({ kind: "path", value: "/dev/sda" });
      expect(p.mountUsrFsType).toBe("btrfs");
      expect(p.mountUsrFlags).toBe("ro,x");
    }
  });

  test("an invalid Flatcar name still wins over a valid legacy one (and is reported)", () => {
    const { params, errors } = parse("usr=/dev/sdb mount.usr=bogus usrfstype=ext4 mount.usrfstype=");
    expect(params.mountUsr).toBeUndefined();
    expect(params.mountUsrFsType).toBe("auto");
    expect(errors.map((e) => e.message)).toEqual([
      `mount.usr=bogus: expected ${DEVICE_EXPECTED}`,
      `mount.usrfstype=: expected ${FSTYPE_EXPECTED}`,
    ]);
  });

  test("mount.usrfstype validation", () => {
    expect(ok("mount.usrfstype=squashfs").mountUsrFsType).toBe("squashfs");
    expect(ok("mount.usrfstype=fuse.sshfs").mountUsrFsType).toBe("fuse.sshfs");
    expect(messages("mount.usrfstype")).toEqual([`mount.usrfstype: expected ${FSTYPE_EXPECTED}`]);
    expect(messages("mount.usrfstype=ext4,btrfs")).toEqual([
      "mount.usrfstype=ext4,btrfs: expected a filesystem type such as auto, ext4, btrfs or squashfs",
    ]);
    expect(messages("usrfstype=-t")).toEqual([`usrfstype=-t: expected ${FSTYPE_EXPECTED}`]);
  });

  test("mountUsrFlagsParam names the parameter the flags came from, for errors at mount time", () => {
    expect(ok("usrflags=ro,noatime").mountUsrFlagsParam).toBe("usrflags");
    expect(ok("mount.usrflags=ro").mountUsrFlagsParam).toBe("mount.usrflags");
    expect(ok("usrflags=rw mount.usrflags=ro").mountUsrFlagsParam).toBe("mount.usrflags");
    expect(ok("mount.usrflags=ro usrflags=rw").mountUsrFlagsParam).toBe("mount.usrflags");
    expect(ok("").mountUsrFlagsParam).toBe("mount.usrflags");
    // An invalid legacy word leaves the default, which belongs to no one.
    expect(parse("usrflags").params.mountUsrFlagsParam).toBe("mount.usrflags");
  });

  test("mount.usrflags is kept raw (validated at mount time)", () => {
    expect(ok('mount.usrflags="ro,x=a b,,=="').mountUsrFlags).toBe("ro,x=a b,,==");
    expect(ok("mount.usrflags=").mountUsrFlags).toBe("");
    expect(messages("mount.usrflags")).toEqual([`mount.usrflags: expected ${MOUNT_FLAGS_EXPECTED}`]);
    expect(messages("usrflags")).toEqual(["usrflags: expected mount options such as ro"]);
  });
});

describe("parseBootParams: debugging flags", () => {
  const flags: [string, keyof BootParams, boolean][] = [
    ["rd.earlyshell", "earlyShell", false],
    ["rd.earlytrace", "earlyTrace", false],
    ["rd.debug", "debug", false],
    ["rd.shell", "shellAllowed", true],
    ["rd.usr.insecure", "usrInsecure", false],
    ["rd.neednet", "neednet", false],
  ];
  for (const [key, field, def] of flags) {
    test(key, () => {
      expect(ok("")[field]).toBe(def);
      expect(ok(key)[field]).toBe(true);
      expect(ok(`${key}=1`)[field]).toBe(true);
      expect(ok(`${key}=0`)[field]).toBe(false);
      expect(ok(`${key}=off`)[field]).toBe(false);
      expect(ok(`${key}=0 ${key}`)[field]).toBe(true);
      expect(ok(`${key} ${key}=no`)[field]).toBe(false);
      const { params, errors } = parse(`${key}=1 ${key}=maybe`);
      expect(params[field]).toBe(def);
      expect(errors.map((e) => e.message)).toEqual([`${key}=maybe: expected ${FLAG_EXPECTED}`]);
    });
  }

  test("rd.earlyshell=0 is off (Flatcar's script turns it on)", () => {
    expect(ok("rd.earlyshell=0").earlyShell).toBe(false);
  });

  test("rd.shell=0 forbids the shell", () => {
    expect(ok("rd.shell=0").shellAllowed).toBe(false);
  });
});

describe("parseBootParams: timeouts", () => {
  test("rd.earlytimeout", () => {
    expect(ok("rd.earlytimeout=10").earlyTimeoutSec).toBe(10);
    expect(ok("rd.earlytimeout=0").earlyTimeoutSec).toBe(0);
    expect(ok("rd.earlytimeout=007").earlyTimeoutSec).toBe(7);
    expect(ok(`rd.earlytimeout=${TIMEOUT_MAX_SEC}`).earlyTimeoutSec).toBe(2147483);
    expect(ok("rd.earlytimeout=5 rd.earlytimeout=6").earlyTimeoutSec).toBe(6);
  });

  test("rd.emergency.timeout", () => {
    expect(ok("rd.emergency.timeout=5").emergencyTimeoutSec).toBe(5);
    expect(ok("rd.emergency.timeout=0").emergencyTimeoutSec).toBe(0);
  });

  for (const bad of ["-1", "+5", "1.5", "1e3", "0x10", " 5", "5s", "", "abc", "2147484", "99999999999", "٣"]) {
    test(`timeout ${JSON.stringify(bad)} is an error and keeps the default`, () => {
      const { params, errors } = parse(`rd.earlytimeout=${JSON.stringify(bad)} rd.emergency.timeout=${JSON.stringify(bad)}`);
      expect(params.earlyTimeoutSec).toBe(300);
      expect(params.emergencyTimeoutSec).toBe(60);
      expect(errors.map((e) => e.message)).toEqual([
        `rd.earlytimeout=${bad}: expected ${TIMEOUT_EXPECTED}`,
        `rd.emergency.timeout=${bad}: expected ${TIMEOUT_EXPECTED}`,
      ]);
    });
  }

  test("timeout message text and bare word", () => {
    expect(messages("rd.earlytimeout")).toEqual([
      "rd.earlytimeout: expected a whole number of seconds from 0 to 2147483 (0 = wait forever)",
    ]);
  });
});

describe("parseBootParams: breakpoints", () => {
  test("BREAKPOINTS in boot order, frozen", () => {
    expect(BREAKPOINTS).toEqual(["pre-udev", "pre-verity", "pre-mount", "pre-switch-root"]);
    expect(Object.isFrozen(BREAKPOINTS)).toBe(true);
  });

  test("bare rd.break is pre-switch-root", () => {
    expect(ok("rd.break").breakpoints).toEqual(["pre-switch-root"]);
  });

  test("repeatable, comma lists, deduplicated", () => {
    expect(ok("rd.break=pre-mount rd.break=pre-udev,pre-verity, rd.break=pre-mount rd.break").breakpoints).toEqual([
      "pre-mount",
      "pre-udev",
      "pre-verity",
      "pre-switch-root",
    ]);
  });

  test("each of the four names", () => {
    for (const b of BREAKPOINTS) expect(ok(`rd.break=${b}`).breakpoints).toEqual([b]);
  });

  test("unknown names are errors listing the valid names; valid ones are kept", () => {
    const { params, errors } = parse("rd.break=pre-udev,bogus,pre-pivot");
    expect(params.breakpoints).toEqual(["pre-udev"]);
    expect(errors.map((e) => e.message)).toEqual([
      "rd.break=bogus: expected one of pre-udev, pre-verity, pre-mount, pre-switch-root",
      "rd.break=pre-pivot: expected one of pre-udev, pre-verity, pre-mount, pre-switch-root",
    ]);
  });

  test("names are case-sensitive", () => {
    expect(messages("rd.break=PRE-UDEV")).toEqual([`rd.break=PRE-UDEV: expected ${BREAKPOINT_EXPECTED}`]);
  });

  test("rd.break= with nothing named is an error", () => {
    expect(messages("rd.break=")).toEqual([`rd.break=: expected ${BREAKPOINT_EXPECTED}`]);
    expect(messages("rd.break=,,")).toEqual([`rd.break=,,: expected ${BREAKPOINT_EXPECTED}`]);
    expect(parse("rd.break=").params.breakpoints).toEqual([]);
  });
});

describe("parseBootParams: emergency", () => {
  for (const a of ["prompt", "shell", "reboot", "poweroff", "halt"] as const) {
    test(a, () => expect(ok(`rd.emergency=${a}`).emergency).toBe(a));
  }
  test("last wins", () => {
    expect(ok("rd.emergency=reboot rd.emergency=halt").emergency).toBe("halt");
  });
  test("errors", () => {
    expect(messages("rd.emergency=explode")).toEqual([
      "rd.emergency=explode: expected prompt, shell, reboot, poweroff or halt",
    ]);
    expect(messages("rd.emergency")).toEqual([`rd.emergency: expected ${EMERGENCY_EXPECTED}`]);
    expect(messages("rd.emergency=Reboot")).toEqual([`rd.emergency=Reboot: expected ${EMERGENCY_EXPECTED}`]);
    expect(parse("rd.emergency=reboot rd.emergency=x").params.emergency).toBe("prompt");
  });
});

describe("parseBootParams: drivers", () => {
  test("rd.driver.pre accumulates, comma lists, deduplicated", () => {
    expect(ok("rd.driver.pre=virtio_blk,dm-verity rd.driver.pre=nvme, rd.driver.pre=virtio_blk").driverPre).toEqual([
      "virtio_blk",
      "dm-verity",
      "nvme",
    ]);
  });

  test("rd.driver.blacklist and modprobe.blacklist merge", () => {
    expect(ok("rd.driver.blacklist=floppy modprobe.blacklist=pcspkr,floppy rd.driver.blacklist=nouveau").driverBlacklist).toEqual([
      "floppy",
      "pcspkr",
      "nouveau",
    ]);
  });

  test("empty lists are fine", () => {
    const p = ok("rd.driver.pre= modprobe.blacklist=,");
    expect(p.driverPre).toEqual([]);
    expect(p.driverBlacklist).toEqual([]);
  });

  test("bad module names are errors; good ones in the same value are kept", () => {
    const { params, errors } = parse('rd.driver.pre=ok1,-r,a/b,"x y",ok2 modprobe.blacklist rd.driver.blacklist=a.b');
    expect(params.driverPre).toEqual(["ok1", "ok2"]);
    expect(params.driverBlacklist).toEqual([]);
    expect(errors.map((e) => e.message)).toEqual([
      "rd.driver.pre=-r: expected kernel module names (letters, digits, _ and -) separated by commas",
      `rd.driver.pre=a/b: expected ${MODULE_EXPECTED}`,
      // Quotes inside a word are kept by the kernel, so the item is '"x y"'.
      `rd.driver.pre="x y": expected ${MODULE_EXPECTED}`,
      `modprobe.blacklist: expected ${MODULE_EXPECTED}`,
      `rd.driver.blacklist=a.b: expected ${MODULE_EXPECTED}`,
    ]);
  });
});

describe("parseBootParams: console, network, remote /usr, init", () => {
  test("console= accumulates in order", () => {
    expect(ok("console=tty0 console=ttyS0,115200n8 console=tty0").console).toEqual(["tty0", "ttyS0,115200n8", "tty0"]);
    expect(messages("console")).toEqual([`console: expected ${CONSOLE_EXPECTED}`]);
    expect(messages("console=")).toEqual(["console=: expected a console such as tty0 or ttyS0,115200n8"]);
  });

  test("rd.usr.url schemes", () => {
    for (const url of [
      "http://10.0.0.1/flatcar_production_image.squashfs",
      "https://example.com:8443/a/usr.cpio.gz?sig=abc&x=1",
      "HTTPS://example.com/usr.squashfs",
      "sftp://core@10.0.0.1:2222/srv/usr.squashfs",
      "sftp://core@host/usr.squashfs",
      "file:///usr.squashfs",
      "http://[fd00::1]:8080/usr.squashfs",
      "tftp://10.0.2.2/usr.squashfs",
      "tftp://pxe.example.com:6969/flatcar/usr.squashfs",
      "TFTP://[fd00::1]/usr.squashfs",
      "tftp://h//srv/tftp/usr.squashfs",
      "tftp://h/usr%20image.squashfs",
    ]) {
      expect(ok(`rd.usr.url=${url}`).usrUrl).toBe(url);
    }
  });

  for (const url of [
    "ftp://host/usr",
    "tftp:host/usr",
    "tftp:///usr.squashfs",
    "tftp://host:99999/usr",
    "http:host/usr",
    "http://",
    "https:///path",
    "sftp://host",
    "sftp://host/",
    "file://host/usr.squashfs",
    "file:/usr.squashfs",
    "file:///",
    "/usr.squashfs",
    "",
    "http://host/a b",
    "http://host/a\tb",
    "http://host\\evil/x",
    "https:host/x",
    "sftp:///path",
    "javascript:alert(1)",
  ]) {
    test(`rd.usr.url=${JSON.stringify(url)} is an error`, () => {
      const { params, errors } = parseBootParams([{ key: "rd.usr.url", value: url }]);
      expect(params.usrUrl).toBeUndefined();
      expect(errors.map((e) => e.expected)).toEqual([USR_URL_EXPECTED]);
    });
  }

  test("rd.usr.url message text", () => {
    expect(messages("rd.usr.url=ftp://h/x")).toEqual([
      "rd.usr.url=ftp://h/x: expected an http://, https://, sftp://user@host[:port]/path, tftp://host[:port]/path or file:///path URL",
    ]);
    expect(messages("rd.usr.url")).toEqual([`rd.usr.url: expected ${USR_URL_EXPECTED}`]);
  });

  // Regression: a malformed %-escape in a file:// or sftp:// URL used to pass
  // the parser and fail at fetch time with a bare "URI error"; an sftp
  // password was accepted and then shown in every message and log line.
  describe("rd.usr.url: %-escapes, user names and passwords", () => {
    /** The single error a rd.usr.url= value must produce. */
    function urlError(url: string): ParamError {
      const { params, errors } = parseBootParams([{ key: "rd.usr.url", value: url }]);
      expect(params.usrUrl).toBeUndefined();
      expect(errors).toHaveLength(1);
      expect(errors[0]!.param).toBe("rd.usr.url");
      return errors[0]!;
    }

    for (const url of [
      "file:///usr%zz.squashfs",
      "file:///usr.squashfs%",
      "file:///usr%2.squashfs",
      "file:///usr%ff.squashfs", // not UTF-8
      "file:///usr%c3.squashfs", // truncated UTF-8 sequence
      "file:///usr%00.squashfs", // NUL: no such path can exist
      "file:///usr%0a.squashfs",
      "sftp://core@h/srv/usr%zz",
      "sftp://core@h/srv/usr%e2%82",
      "sftp://co%zzre@h/srv/usr.squashfs",
      "sftp://co%ffre@h/srv/usr.squashfs",
      "sftp://co%00re@h/srv/usr.squashfs",
      "http://h/usr%zz.squashfs",
      "https://h/usr.squashfs?sig=%g0",
    ]) {
      test(`bad %-escape: ${url}`, () => {
        const e = urlError(url);
        expect(e.expected).toBe(USR_URL_ESCAPE_EXPECTED);
        expect(e.message).toBe(`rd.usr.url=${url}: expected ${USR_URL_ESCAPE_EXPECTED}`);
        expect(e.message).not.toContain("URI error");
      });
    }

    test("well-formed escapes, including UTF-8 and %25, are accepted and kept as given", () => {
      for (const url of [
        "file:///srv/usr%20image.squashfs",
        "file:///srv/%C3%A4.squashfs",
        "file:///srv/100%25.squashfs",
        "sftp://co%2Dre@h/srv/usr%2esquashfs",
        "http://h/usr%ff.squashfs", // an http server may use non-UTF-8 paths: only the syntax is checked
      ]) {
        expect(ok(`rd.usr.url=${url}`).usrUrl).toBe(url);
      }
    });

    test("an sftp password is refused, and the message does not repeat it", () => {
      for (const [url, shown] of [
        ["sftp://core:hunter2@h/srv/usr.squashfs", "sftp://core:***@h/srv/usr.squashfs"],
        ["sftp://core:hun@ter2@h:2222/srv/usr.squashfs", "sftp://core:***@h:2222/srv/usr.squashfs"],
        ["SFTP://core:hunter2@[fd00::1]/x", "SFTP://core:***@[fd00::1]/x"],
      ] as const) {
        const e = urlError(url);
        expect(e.expected).toBe(USR_URL_PASSWORD_EXPECTED);
        expect(e.message).toBe(`rd.usr.url=${shown}: expected ${USR_URL_PASSWORD_EXPECTED}`);
        expect(e.message).not.toContain("hunter2");
        expect(e.message).not.toContain("ter2");
        expect(e.value).toBe(shown);
      }
      expect(USR_URL_PASSWORD_EXPECTED).toContain("/etc/bunboot/sftp/password");
    });

    test("an sftp URL without a user is refused by the parser, not at fetch time", () => {
      expect(urlError("sftp://h/srv/usr.squashfs").expected).toBe(USR_URL_SFTP_USER_EXPECTED);
    });

    test("sftp hosts must be host names or addresses", () => {
      expect(urlError("sftp://core@h%zz/srv/usr.squashfs").param).toBe("rd.usr.url");
      expect(urlError("sftp://core@h!x/srv/usr.squashfs").expected).toBe(USR_URL_EXPECTED);
    });

    test("tftp URLs: a host and a file, no user, no password, no port 0, no ;mode=", () => {
      for (const url of ["tftp://h", "tftp://h/", "tftp://core@h/usr.squashfs", "tftp://h:0/usr.squashfs", "tftp://h!x/usr.squashfs"]) {
        const e = urlError(url);
        expect(e.expected).toBe(USR_URL_TFTP_EXPECTED);
        expect(e.message).toBe(`rd.usr.url=${url}: expected ${USR_URL_TFTP_EXPECTED}`);
      }
      const e = urlError("tftp://core:hunter2@h/usr.squashfs");
      expect(e.expected).toBe(USR_URL_TFTP_EXPECTED);
      expect(e.message).not.toContain("hunter2");
      expect(e.value).toBe("tftp://core:***@h/usr.squashfs");
      for (const url of ["tftp://h/usr.squashfs;mode=octet", "tftp://h/usr.squashfs%3Bmode=netascii"]) expect(urlError(url).expected).toBe(USR_URL_TFTP_MODE_EXPECTED);
      for (const url of ["tftp://h/usr%zz", "tftp://h/usr%00"]) expect(urlError(url).expected).toBe(USR_URL_ESCAPE_EXPECTED);
      for (const url of ["tftp://h/usr.squashfs?x", "tftp://h/usr#1"]) expect(urlError(url).expected).toBe(USR_URL_QUERY_EXPECTED);
    });

    test("file: and sftp: URLs have no ?query or #fragment (the fetcher would silently drop them)", () => {
      for (const url of ["file:///usr.squashfs?x=1", "file:///usr#1.squashfs", "sftp://core@h/usr.squashfs?a"]) {
        expect(urlError(url).expected).toBe(USR_URL_QUERY_EXPECTED);
      }
      expect(ok("rd.usr.url=file:///usr%231.squashfs").usrUrl).toBe("file:///usr%231.squashfs");
    });

    test("a password is never shown, whatever else is wrong with the URL", () => {
      for (const url of [
        "sftp://core:hunter2@h/", // no path
        "sftp://core:hunter2@h/x%zz", // bad escape
        "sftp:core:hunter2@h/x", // no "//"
        "ftp://core:hunter2@h/x", // unsupported scheme
        "http://core:hunter2@h/a b", // blank
        "core:hunter2@h/x", // no scheme at all
        "http:/core:hunter2@h/x", // one slash: WHATWG would still read a password
        `sftp://core:hunter2${"x".repeat(200)}@h/x`, // longer than what a message shows
      ]) {
        const { errors } = parseBootParams([{ key: "rd.usr.url", value: url }]);
        expect(errors).toHaveLength(1);
        expect(errors[0]!.message).not.toContain("hunter2");
        expect(errors[0]!.value).not.toContain("hunter2");
      }
    });

    test("http(s) user names and passwords are redacted in messages too", () => {
      const e = urlError("http://u:secret@h/x%zz");
      expect(e.message).toBe(`rd.usr.url=http://u:***@h/x%zz: expected ${USR_URL_ESCAPE_EXPECTED}`);
    });

    test("http(s) URLs still need a host", () => {
      for (const url of ["http://", "https:///x", "http://@/x", "http://u@/x"]) {
        expect(parseBootParams([{ key: "rd.usr.url", value: url }]).errors).toHaveLength(1);
      }
    });
  });

  test("rd.usr.hash", () => {
    expect(ok(`rd.usr.hash=sha256:${HASH}`).usrHash).toBe(`sha256:${HASH}`);
    expect(ok(`rd.usr.hash=SHA256:${HASH.toUpperCase()}`).usrHash).toBe(`sha256:${HASH}`);
    for (const bad of [HASH, `sha512:${HASH}`, `sha256:${HASH.slice(2)}`, `sha256:${HASH}00`, "sha256:", `sha256=${HASH}`]) {
      expect(messages(`rd.usr.hash=${bad}`)).toEqual([`rd.usr.hash=${bad}: expected ${USR_HASH_EXPECTED}`]);
    }
    expect(messages("rd.usr.hash")).toEqual([
      "rd.usr.hash: expected sha256:<64 hex digits> (the digest of the whole image)",
    ]);
  });

  test("rd.usr.insecure", () => {
    expect(ok("rd.usr.insecure=1").usrInsecure).toBe(true);
  });

  test("ip= and nameserver= are kept raw, in order", () => {
    const p = ok("ip=dhcp ip=eth1:dhcp ip=[fd00::2]::[fd00::1]:64:host:eth0:none:[fd00::53] nameserver=1.1.1.1 nameserver=fd00::53");
    expect(p.ip).toEqual(["dhcp", "eth1:dhcp", "[fd00::2]::[fd00::1]:64:host:eth0:none:[fd00::53]"]);
    expect(p.nameservers).toEqual(["1.1.1.1", "fd00::53"]);
    expect(messages("ip ip= nameserver nameserver=")).toEqual([
      `ip: expected ${IP_EXPECTED}`,
      "ip=: expected dhcp, <interface>:dhcp or <client>:<peer>:<gateway>:<netmask>:<hostname>:<interface>:none",
      `nameserver: expected ${NAMESERVER_EXPECTED}`,
      "nameserver=: expected a name server address",
    ]);
  });

  test("rd.neednet is kept as given (the caller adds 'rd.usr.url implies it')", () => {
    expect(ok("rd.usr.url=http://h/u").neednet).toBe(false);
    expect(ok("rd.neednet=1").neednet).toBe(true);
  });

  test("BOOTIF", () => {
    expect(ok("BOOTIF=01-AA-bb-cc-dd-ee-0F").bootif).toBe("aa:bb:cc:dd:ee:0f");
    // The MAC alone is accepted too, as dracut does.
    expect(ok("BOOTIF=aa-bb-cc-dd-ee-ff").bootif).toBe("aa:bb:cc:dd:ee:ff");
    expect(ok("BOOTIF=aa:bb:cc:dd:ee:ff").bootif).toBe("aa:bb:cc:dd:ee:ff");
    for (const bad of [
      "",
      "02-aa-bb-cc-dd-ee-ff-00",
      "01-aa-bb-cc-dd-ee-f",
      "01-aa-bb-cc-dd-ee-ff-00",
      "01:aa:bb:cc:dd:ee:ff",
      "aa-bb:cc-dd-ee-ff",
      "01-gg-bb-cc-dd-ee-ff",
      "20-aa-bb-cc-dd-ee-ff-00-11-22-33-44-55-66-77-88-99-aa-bb-cc-dd",
    ]) {
      expect(messages(`BOOTIF=${bad}`)).toEqual([`BOOTIF=${bad}: expected ${BOOTIF_EXPECTED}`]);
    }
    expect(messages("BOOTIF=x")).toEqual([
      "BOOTIF=x: expected 01-aa-bb-cc-dd-ee-ff (01 = Ethernet, then the MAC address, as pxelinux IPAPPEND 2 writes it)",
    ]);
    expect(messages("BOOTIF")).toEqual([`BOOTIF: expected ${BOOTIF_EXPECTED}`]);
  });

  test("proxy", () => {
    expect(ok("proxy=http://proxy:3128 proxy=http://other:8080").proxy).toBe("http://other:8080");
    expect(messages("proxy=")).toEqual([`proxy=: expected ${PROXY_EXPECTED}`]);
    expect(messages("proxy")).toEqual(["proxy: expected a proxy URL such as http://proxy.example:3128"]);
  });

  test("init", () => {
    expect(ok("init=/usr/lib/systemd/systemd").init).toBe("/usr/lib/systemd/systemd");
    expect(messages("init=sbin/init")).toEqual(["init=sbin/init: expected an absolute path such as /init"]);
    expect(messages("init")).toEqual([`init: expected ${INIT_EXPECTED}`]);
    expect(parse("init=/a init=b").params.init).toBeUndefined();
  });

  test("a PXE command line", () => {
    const p = ok(
      "initrd=flatcar_production_pxe_image.cpio.gz flatcar.first_boot=1 BOOTIF=01-52-54-00-12-34-56 " +
        `ip=dhcp rd.usr.url=https://boot.example/usr.squashfs rd.usr.hash=sha256:${HASH} proxy=http://proxy:3128 console=ttyS0`,
    );
    expect(p).toEqual({
      ...defaultBootParams(),
      bootif: "52:54:00:12:34:56",
      ip: ["dhcp"],
      usrUrl: "https://boot.example/usr.squashfs",
      usrHash: `sha256:${HASH}`,
      proxy: "http://proxy:3128",
      console: ["ttyS0"],
    });
  });
});

describe("parseBootParams: '--' ends the parameters", () => {
  test("words after -- are init's arguments", () => {
    const p = ok("rd.debug -- rd.earlyshell verity.usr=bogus");
    expect(p.debug).toBe(true);
    expect(p.earlyShell).toBe(false);
  });
  test('a quoted "--" also counts (the kernel compares after unquoting); --=x does not', () => {
    expect(ok('"--" rd.earlyshell').earlyShell).toBe(false);
    expect(ok("--=x rd.earlyshell").earlyShell).toBe(true);
  });
});

describe("parseBootParams: collects every error and keeps going", () => {
  test("many errors at once, in command-line order", () => {
    const { params, errors } = parse(
      `verity.usr=FOO=bar verity.usrhash=xyz rd.earlytimeout=soon rd.break=later rd.emergency=panic ` +
        `rd.earlyshell=maybe rd.driver.pre=-x BOOTIF=zz rd.usr.url=gopher://h/x rd.usr.hash=md5:1 init=x ` +
        `rd.debug console=tty0 mount.usr=/dev/sda`,
    );
    expect(errors.map((e) => e.param)).toEqual([
      "verity.usr",
      "verity.usrhash",
      "rd.earlytimeout",
      "rd.break",
      "rd.emergency",
      "rd.earlyshell",
      "rd.driver.pre",
      "BOOTIF",
      "rd.usr.url",
      "rd.usr.hash",
      "init",
    ]);
    for (const e of errors) expect(e).toBeInstanceOf(ParamError);
    // Valid parameters after the errors are still applied; bad ones keep defaults.
    expect(params).toEqual({
      ...defaultBootParams(),
      debug: true,
      console: ["tty0"],
      mountUsr: { kind: "path", value: "/dev/sda" },
    });
  });
});

describe("parseBootParams: hostile input", () => {
  test("10k repeated keys: last wins, lists accumulate, fast", () => {
    const parts: string[] = [];
    for (let i = 0; i < 10_000; i++) parts.push(`rd.earlytimeout=${i} console=tty${i} rd.driver.pre=m${i % 100} rd.earlyshell`);
    const t0 = performance.now();
    const p = ok(parts.join(" "));
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(p.earlyTimeoutSec).toBe(9999);
    expect(p.console.length).toBe(10_000);
    expect(p.driverPre.length).toBe(100);
    expect(p.earlyShell).toBe(true);
  });

  test("10k repeated invalid keys: one error each, messages stay short", () => {
    const big = "z".repeat(10_000);
    const { errors } = parse(Array(10_000).fill(`verity.usrhash=${big}`).join(" "));
    expect(errors.length).toBe(10_000);
    for (const e of errors.slice(0, 5)) expect(e.message.length).toBeLessThan(200);
  });

  test("1 MB values are reported shortened", () => {
    const big = "Q".repeat(1 << 20);
    const { errors } = parse(`verity.usr=${big} rd.usr.url=${big} rd.break=${big}`);
    expect(errors.map((e) => e.message)).toEqual([
      `verity.usr=${"Q".repeat(80)}…: expected ${DEVICE_EXPECTED}`,
      `rd.usr.url=${"Q".repeat(80)}…: expected ${USR_URL_EXPECTED}`,
      `rd.break=${"Q".repeat(80)}…: expected ${BREAKPOINT_EXPECTED}`,
    ]);
  });

  test("mount.usr= with an nbd:// or nfs:// URL says where such an image goes", () => {
    expect(messages("mount.usr=nbd://10.0.2.2/usr")).toEqual([
      "mount.usr=nbd://10.0.2.2/usr: expected a device or an NFS export (nfs4:HOST:/EXPORT); an nbd:// or nfs:// image is read through verity: verity.usr=URL with verity.usrhash=",
    ]);
  });

  test("1 MB label and path are accepted or rejected without trouble", () => {
    const big = "L".repeat(1 << 20);
    expect(ok(`verity.usr=LABEL=${big}`).verityUsr).toEqual({ kind: "label", value: big });
    expect(ok(`verity.usr=/dev/${big}`).verityUsr).toEqual({ kind: "path", value: `/dev/${big}` });
    expect(messages(`verity.usr=UUID=${"a".repeat(1 << 20)}`)).toHaveLength(1);
    expect(messages(`verity.usr=PARTUUID=${"a".repeat(1 << 20)}`)).toHaveLength(1);
  });

  test("control characters in values are escaped in messages", () => {
    expect(messages("rd.emergency=\x1b[31mred")).toEqual([`rd.emergency=\\x1b[31mred: expected ${EMERGENCY_EXPECTED}`]);
  });

  test("an unbalanced quote swallows the following parameters, as in the kernel", () => {
    const { params, errors } = parse('console="ttyS0 rd.earlyshell verity.usr=/dev/sda\n');
    expect(params.console).toEqual(["ttyS0 rd.earlyshell verity.usr=/dev/sda"]);
    expect(params.earlyShell).toBe(false);
    expect(params.verityUsr).toBeUndefined();
    expect(errors).toEqual([]);
  });

  test("keys that look like Object.prototype members are ignored", () => {
    expect(ok("__proto__=x constructor toString=1 hasOwnProperty")).toEqual(defaultBootParams());
  });
});

describe("the parameter table is the documentation's", () => {
  const repo = path.resolve(import.meta.dir, "..");

  test("README.md holds renderParamTable() verbatim", () => {
    // To update it: node_modules/.bin/bun -e 'import { renderParamTable } from "./lib/cmdline.ts"; process.stdout.write(renderParamTable())'
    const readme = fs.readFileSync(path.join(repo, "README.md"), "utf8");
    expect(readme).toContain(`\n${renderParamTable()}\n`);
  });

  test("docs/command-line.md names every parameter, aliases included", () => {
    const doc = fs.readFileSync(path.join(repo, "docs/command-line.md"), "utf8");
    const missing = Object.entries(PARAMS)
      .flatMap(([name, row]) => [name, ...row.aliases])
      .filter((name) => !doc.includes(`\`${name}=`) && !doc.includes(`\`${name}\``));
    expect(missing).toEqual([]);
  });

  test("one row per parameter: flags bare, aliases of a list after a comma, of one value in parentheses", () => {
    const table = renderParamTable();
    expect(table.split("\n").length).toBe(Object.keys(PARAMS).length + 3);
    expect(table).toContain("\n| `rd.earlyshell` | ");
    expect(table).toContain("\n| `rd.driver.blacklist=`, `modprobe.blacklist=` | ");
    expect(table).toContain("\n| `mount.usr=` (`usr=`) | ");
    expect(table).toMatch(/\n\| `rd\.earlytimeout=` \| [^\n]* \| 300 \|\n/);
    expect(table).toMatch(/\n\| `rd\.shell` \| [^\n]* \| on \|\n/);
    expect(table).toMatch(/\n\| `mount\.usrfstype=` \(`usrfstype=`\) \| [^\n]* \| `auto` \|\n/);
  });
});
