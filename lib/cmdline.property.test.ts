// Property tests ("keep it fixed") for the command-line tokeniser and parser:
// seeded random and adversarial command lines (huge words, NULs, bad UTF-8,
// unbalanced quotes, `a=b=c`, repeated keys, negative and overflowing
// numbers, URLs with passwords). Deterministic: the PRNG (mulberry32) and
// its seed are in each test's name, so a failure reproduces exactly. The
// counts are bounded so that the file runs in well under 2 s.
import { Gen } from "./testing/prng.ts";
import { timed } from "./testing/timed.ts";
import { describe, expect, test } from "bun:test";
import {
  BREAKPOINTS,
  ParamError,
  TIMEOUT_MAX_SEC,
  parseBootParams,
  redactUrlPassword,
  splitCmdline,
  type CmdlineWord,
} from "./cmdline.ts";

// ---------------------------------------------------------------------------
// Deterministic randomness



// Pieces a command line is made of, hostile ones included.
const KEYS = [
  "verity.usr", "verity.usrhash", "mount.usr", "usr", "mount.usrfstype", "usrfstype", "mount.usrflags", "usrflags",
  "rd.earlyshell", "rd.earlytrace", "rd.debug", "rd.earlytimeout", "rd.break", "rd.shell", "rd.emergency",
  "rd.emergency.timeout", "rd.driver.pre", "rd.driver.blacklist", "modprobe.blacklist", "console", "rd.usr.url",
  "rd.usr.hash", "rd.usr.insecure", "ip", "BOOTIF", "nameserver", "rd.neednet", "proxy", "init",
  "root", "quiet", "--", "__proto__", "constructor", "", "=", "rd.usr.url=", "a=b",
] as const;

const ATOMS = [
  " ", "\t", "\n", "\r", "\v", "\f", "\u00a0", '"', '"', "=", "==", "\0", ",", ":", "::", "@", "%", "%zz", "%ff", "%00",
  "-", "--", "-1", "+1", "0", "1", "4294967296", "99999999999999999999", "1e3", "0x10", "NaN", "Infinity",
  "PARTUUID=", "LABEL=", "UUID=", "/dev/", "..", "/", "\\", "http://", "https://", "sftp://", "file:///", "u:pw@",
  "[", "]", "\x1b[2J", "\x7f", "\x9b", "\ufffd", "\ud800", "\udfff", "😀", "é", "\u202e", "\u2028",
  "sha256:", "0123456789abcdef", "ro", "dhcp", "pre-udev", "shell", "yes", "off",
] as const;

function atomString(g: Gen, maxAtoms: number): string {
  let s = "";
  const n = g.int(maxAtoms + 1);
  for (let i = 0; i < n; i++) s += g.chance(0.7) ? g.pick(ATOMS) : String.fromCharCode(g.int(0x80));
  return s;
}

/** A command line: words from KEYS with hostile values, stray quotes and blanks, sometimes huge. */
function cmdline(g: Gen): string {
  const words: string[] = [];
  const n = g.int(12);
  for (let i = 0; i < n; i++) {
    const key = g.pick(KEYS);
    const r = g.next();
    if (r < 0.15) words.push(key);
    else if (r < 0.25) words.push(`"${key}=${atomString(g, 6)}"`);
    else if (r < 0.35) words.push(`${key}="${atomString(g, 6)}`);
    else words.push(`${key}=${atomString(g, 8)}`);
  }
  let text = words.join(g.pick([" ", "  ", "\t", "\n", " \u00a0 "]));
  if (g.chance(0.1)) text += "\n";
  return text;
}

/** Random bytes decoded the two ways a caller may read /proc/cmdline: UTF-8 (bad sequences become U+FFFD) and latin1. */
function bytesText(g: Gen, len: number): string {
  const b = new Uint8Array(len);
  for (let i = 0; i < len; i++) b[i] = g.chance(0.3) ? g.pick([0x20, 0x22, 0x3d, 0x00, 0x0a, 0xa0, 0xc3, 0xe2]) : g.int(256);
  return g.chance(0.5) ? new TextDecoder().decode(b) : Buffer.from(b).toString("latin1");
}

// ---------------------------------------------------------------------------
// A literal port of the kernel's next_arg()/parse_args() (kernel/params.c),
// on an array of UTF-16 units with C-string semantics (a NUL ends a string,
// and next_arg writes NULs into the buffer), to compare splitCmdline against.

const isspace = (c: number) => c === 0x20 || (c >= 0x09 && c <= 0x0d) || c === 0xa0;

function kernelSplit(text: string): CmdlineWord[] {
  let t = text;
  const nul = t.indexOf("\0");
  if (nul >= 0) t = t.slice(0, nul);
  else if (t.endsWith("\n")) t = t.slice(0, -1);
  const buf: number[] = Array.from({ length: t.length + 1 }, (_, i) => (i < t.length ? t.charCodeAt(i) : 0));
  const cstr = (at: number) => {
    let end = at;
    while (buf[end] !== 0) end++;
    return String.fromCharCode(...buf.slice(at, end));
  };
  const words: CmdlineWord[] = [];
  let args = 0;
  while (isspace(buf[args]!)) args++;
  while (buf[args] !== 0) {
    let i = 0;
    let equals = 0;
    let inQuote = false;
    let quoted = false;
    if (buf[args] === 0x22) {
      args++;
      inQuote = true;
      quoted = true;
    }
    for (i = 0; buf[args + i] !== 0; i++) {
      if (isspace(buf[args + i]!) && !inQuote) break;
      if (equals === 0 && buf[args + i] === 0x3d) equals = i;
      if (buf[args + i] === 0x22) inQuote = !inQuote;
    }
    const param = args;
    let val: number | null = null;
    if (equals !== 0) {
      buf[args + equals] = 0;
      val = args + equals + 1;
      if (buf[val] === 0x22) {
        val++;
        if (buf[args + i - 1] === 0x22) buf[args + i - 1] = 0;
      }
    }
    if (quoted && i > 0 && buf[args + i - 1] === 0x22) buf[args + i - 1] = 0;
    // Read the strings before the terminating NUL is written over the blank.
    const next = buf[args + i] !== 0 ? args + i + 1 : args + i;
    const end = args + i;
    buf[end] = 0;
    words.push({ key: cstr(param), value: val === null ? null : cstr(val) });
    args = next;
    while (isspace(buf[args]!)) args++;
  }
  return words;
}

// ---------------------------------------------------------------------------


const RAW_CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e]/;

/** What every ParamError must look like, whatever the input. */
function checkError(e: ParamError, keys: Set<string>): void {
  expect(e).toBeInstanceOf(ParamError);
  expect(keys.has(e.param)).toBe(true);
  expect(e.message.startsWith(`${e.param}=`) || e.message === `${e.param}: expected ${e.expected}`).toBe(true);
  expect(e.message).toEndWith(`: expected ${e.expected}`);
  expect(RAW_CONTROL.test(e.message)).toBe(false);
  // The value part is shortened to 80 units (escaping may quadruple them) plus "…".
  expect(e.message.length).toBeLessThanOrEqual(e.param.length + 1 + 80 * 9 + 1 + `: expected ${e.expected}`.length);
  expect(e.stack === undefined || !e.message.includes("    at ")).toBe(true);
}

describe("splitCmdline (property)", () => {
  test("mulberry32 seed 0x5eed0001: equals a literal port of the kernel's next_arg() on 3000 hostile lines", () => {
    const g = new Gen(0x5eed0001);
    for (let i = 0; i < 3000; i++) {
      const text = g.chance(0.8) ? cmdline(g) : bytesText(g, g.int(64));
      const got = timed(() => splitCmdline(text), 50, JSON.stringify(text));
      const want = kernelSplit(text);
      if (JSON.stringify(got) !== JSON.stringify(want)) {
        throw new Error(`splitCmdline(${JSON.stringify(text)}) = ${JSON.stringify(got)}, kernel: ${JSON.stringify(want)}`);
      }
    }
  });

  test("mulberry32 seed 0x5eed0002: words never hold a NUL or anything after it, nor a blank without quotes", () => {
    const g = new Gen(0x5eed0002);
    for (let i = 0; i < 1000; i++) {
      const text = `${cmdline(g)}\0${cmdline(g)}`;
      const cut = text.slice(0, text.indexOf("\0"));
      for (const w of splitCmdline(text)) {
        expect(w.key.includes("\0")).toBe(false);
        expect(w.value?.includes("\0") ?? false).toBe(false);
        expect(cut.includes(w.key)).toBe(true);
        if (w.value !== null) expect(cut.includes(w.value)).toBe(true);
        // Only quoting keeps a blank inside a word.
        if (!cut.includes('"')) expect(/[ \t\n\v\f\r\u00a0]/.test(w.key + (w.value ?? ""))).toBe(false);
      }
    }
  });

  test("mulberry32 seed 0x5eed0003: plain words (no blanks, quotes or NULs) come back as they were", () => {
    const g = new Gen(0x5eed0003);
    const plain = "abcXYZ019.-_,:/@%=é😀";
    for (let i = 0; i < 1000; i++) {
      const words: CmdlineWord[] = [];
      for (let n = g.int(8); n > 0; n--) {
        let key = "";
        for (let k = 1 + g.int(8); k > 0; k--) key += g.pick([..."abcXYZ019.-_"]);
        let value: string | null = null;
        if (g.chance(0.7)) {
          value = "";
          for (let k = g.int(10); k > 0; k--) value += g.pick([...plain]);
        }
        words.push({ key, value });
      }
      const text = words.map((w) => (w.value === null ? w.key : `${w.key}=${w.value}`)).join(" ");
      expect(splitCmdline(text)).toEqual(words);
    }
  });

  test("mulberry32 seed 0x5eed0004: huge hostile lines stay linear (1 MB each, split and parsed in < 400 ms)", () => {
    const g = new Gen(0x5eed0004);
    for (let i = 0; i < 6; i++) {
      const unit = atomString(g, 6) || '"';
      const text = unit.repeat(Math.ceil((1 << 20) / unit.length));
      timed(() => parseBootParams(splitCmdline(text)), 400, `1 MB of ${JSON.stringify(unit)}`);
    }
  });
});

describe("parseBootParams (property)", () => {
  test("mulberry32 seed 0x5eed0101: never throws; only ParamErrors, each naming a parameter that was given", () => {
    const g = new Gen(0x5eed0101);
    for (let i = 0; i < 2000; i++) {
      const text = g.chance(0.85) ? cmdline(g) : bytesText(g, g.int(200));
      const words = splitCmdline(text);
      const keys = new Set(words.map((w) => w.key));
      const { params, errors } = timed(() => parseBootParams(words), 50, JSON.stringify(text));
      for (const e of errors) checkError(e, keys);

      // What the parser promises about the values it keeps.
      expect(Number.isInteger(params.earlyTimeoutSec) && params.earlyTimeoutSec >= 0 && params.earlyTimeoutSec <= TIMEOUT_MAX_SEC).toBe(true);
      expect(Number.isInteger(params.emergencyTimeoutSec) && params.emergencyTimeoutSec >= 0 && params.emergencyTimeoutSec <= TIMEOUT_MAX_SEC).toBe(true);
      expect(params.breakpoints.every((b) => BREAKPOINTS.includes(b))).toBe(true);
      expect(new Set(params.breakpoints).size).toBe(params.breakpoints.length);
      for (const m of [...params.driverPre, ...params.driverBlacklist]) expect(m).toMatch(/^[A-Za-z0-9_][A-Za-z0-9_-]*$/);
      if (params.verityUsrHash !== undefined) expect(params.verityUsrHash).toMatch(/^[0-9a-f]{64}$/);
      if (params.usrHash !== undefined) expect(params.usrHash).toMatch(/^sha256:[0-9a-f]{64}$/);
      if (params.bootif !== undefined) expect(params.bootif).toMatch(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
      if (params.init !== undefined) expect(params.init.startsWith("/")).toBe(true);
      expect(params.mountUsrFsType).toMatch(/^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$/);
      if (params.usrUrl !== undefined) {
        const u = new URL(params.usrUrl);
        expect(["http:", "https:", "sftp:", "file:"]).toContain(u.protocol);
        expect(u.password === "" || u.protocol.startsWith("http")).toBe(true);
        if (u.protocol === "file:" || u.protocol === "sftp:") {
          expect(() => decodeURIComponent(u.pathname)).not.toThrow();
          expect(() => decodeURIComponent(u.username)).not.toThrow();
        }
      }
      for (const k of ["verityUsr", "verityUsrHash", "usrUrl", "usrHash", "bootif", "proxy", "init"] as const) {
        if (Object.hasOwn(params, k)) expect(params[k]).not.toBeUndefined();
      }
    }
  });

  test("mulberry32 seed 0x5eed0102: words after a bare -- change nothing; unknown keys change nothing", () => {
    const g = new Gen(0x5eed0102);
    for (let i = 0; i < 500; i++) {
      const head = splitCmdline(cmdline(g));
      const tail = splitCmdline(cmdline(g));
      const cut = head.findIndex((w) => w.key === "--" && w.value === null);
      const before = cut < 0 ? head : head.slice(0, cut);
      const a = parseBootParams([...before, { key: "--", value: null }]);
      const b = parseBootParams([...before, { key: "--", value: null }, ...tail]);
      expect(b.params).toEqual(a.params);
      expect(b.errors.map((e) => e.message)).toEqual(a.errors.map((e) => e.message));
      const c = parseBootParams([{ key: "x.unknown", value: atomString(g, 4) }, ...before, { key: "quiet", value: null }]);
      expect(c.params).toEqual(parseBootParams(before).params);
    }
  });

  test("mulberry32 seed 0x5eed0103: repeated scalar keys: the last valid word decides", () => {
    const g = new Gen(0x5eed0103);
    for (let i = 0; i < 500; i++) {
      const values: string[] = [];
      for (let n = 1 + g.int(6); n > 0; n--) values.push(g.pick(["-1", "0", "7", "300", "4294967296", "99999999999", "1e3", "", "２"]) );
      const { params, errors } = parseBootParams(values.map((v) => ({ key: "rd.earlytimeout", value: v })));
      const last = values[values.length - 1]!;
      const valid = /^[0-9]{1,10}$/.test(last) && Number(last) <= TIMEOUT_MAX_SEC;
      expect(params.earlyTimeoutSec).toBe(valid ? Number(last) : 300);
      expect(errors.length).toBe(values.filter((v) => !(/^[0-9]{1,10}$/.test(v) && Number(v) <= TIMEOUT_MAX_SEC)).length);
    }
  });
});

describe("rd.usr.url passwords (property)", () => {
  const SECRET = "S3CR3T";
  const JUNK = ["", "a", "x1", ":", "@", "%", "%4", "%40", " ", "\t", "\\", "[", "]", "é", "\x1b", "?", "#", "/", ".", "-"];

  function junk(g: Gen): string {
    let s = "";
    for (let n = g.int(3); n > 0; n--) s += g.pick(JUNK);
    return s;
  }

  /** Whether redactUrlPassword's rule covers the secret: its /?#-free stretch has a ':' before it and an '@' after it. */
  function covered(url: string): boolean {
    const at = url.indexOf(SECRET);
    const before = url.slice(0, at);
    const start = Math.max(before.lastIndexOf("/"), before.lastIndexOf("?"), before.lastIndexOf("#")) + 1;
    const afterAt = url.slice(at + SECRET.length).search(/[/?#]/);
    const end = afterAt < 0 ? url.length : at + SECRET.length + afterAt;
    const stretch = url.slice(start, end);
    return stretch.indexOf(":") >= 0 && stretch.indexOf(":") < at - start && stretch.lastIndexOf("@") >= at + SECRET.length - start;
  }

  test("mulberry32 seed 0x5eed0201: a password the URL parser sees is in no message and no ParamError.value", () => {
    const g = new Gen(0x5eed0201);
    let seen = 0;
    for (let i = 0; i < 3000; i++) {
      const scheme = g.pick(["sftp", "SFTP", "http", "https", "file", "ftp", "sf tp", "", "s\x1bftp"]);
      const slashes = g.pick(["//", "/", "", "///", "\\\\"]);
      const user = g.pick(["core", "", "a%zz", "u@x"]) + junk(g);
      const password = junk(g) + SECRET + junk(g);
      const host = g.pick(["h", "10.0.0.1", "[fd00::1]", "", "h%zz"]) + junk(g);
      const path = g.pick(["/srv/usr.squashfs", "/", "", "/a%zz", "/a@b:c"]) + junk(g);
      const url = `${scheme}:${slashes}${user}:${password}@${host}${path}`;
      let parsed: URL | null = null;
      try {
        parsed = new URL(url);
      } catch {}
      const secretIsPassword = parsed !== null && parsed.password.includes(SECRET);
      if (secretIsPassword) {
        seen++;
        // The raw rule agrees with the URL parser about what a password is.
        expect(covered(url)).toBe(true);
      }
      const { params, errors } = parseBootParams([{ key: "rd.usr.url", value: url }]);
      if (covered(url)) {
        for (const e of errors) {
          expect(e.message).not.toContain(SECRET);
          expect(e.value).not.toContain(SECRET);
        }
      }
      // An accepted URL never carries an sftp password.
      if (params.usrUrl !== undefined && new URL(params.usrUrl).protocol === "sftp:") expect(new URL(params.usrUrl).password).toBe("");
    }
    expect(seen).toBeGreaterThan(100);
  });

  test("mulberry32 seed 0x5eed0202: redactUrlPassword hides every WHATWG password, keeps URLs without '@', and is linear", () => {
    const g = new Gen(0x5eed0202);
    let seen = 0;
    for (let i = 0; i < 3000; i++) {
      const bits = (max: number) => {
        let t = "";
        for (let n = g.int(max + 1); n > 0; n--) t += g.pick(["/", "u", ":", "@", "h", "?", "#", "%40", "8080", ".", "-"]);
        return t;
      };
      const text =
        g.pick(["http://", "sftp://", "https:", "http:/", "file:", ""]) +
        (g.chance(0.8) ? `${bits(2)}:${bits(1)}${SECRET}${bits(1)}@${bits(4)}` : bits(10));
      const shown = redactUrlPassword(text);
      if (!text.includes("@")) expect(shown).toBe(text);
      if (text.split(SECRET).length !== 2) continue;
      let parsed: URL | null = null;
      try {
        parsed = new URL(text);
      } catch {}
      if (parsed !== null && parsed.password.includes(SECRET)) {
        seen++;
        expect(shown).not.toContain(SECRET);
      }
      if (covered(text)) expect(shown).not.toContain(SECRET);
    }
    expect(seen).toBeGreaterThan(300);
    const big = `sftp://u:${"p".repeat(1 << 20)}@h/${"x".repeat(1 << 20)}`;
    const shownBig = timed(() => redactUrlPassword(big), 200, "2 MB URL");
    expect(shownBig).toBe(`sftp://u:***@h/${"x".repeat(1 << 20)}`);
    timed(() => redactUrlPassword(`${"a:".repeat(1 << 19)}@`), 200, "1 MB of a: then @");
    timed(() => redactUrlPassword("@".repeat(1 << 20)), 200, "1 MB of @");
    timed(() => parseBootParams([{ key: "rd.usr.url", value: `sftp://${"@:".repeat(1 << 19)}` }]), 300, "1 MB of @:");
  });
});
