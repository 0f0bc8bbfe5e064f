// Property tests ("keep it fixed") for ip= and nameserver=: seeded random and
// adversarial values (colon soup, brackets, huge fields, control characters,
// bad UTF-8, signs and overflowing numbers). Only IpConfigError may come out,
// each message names ip=/nameserver= with no raw control character, every
// accepted value satisfies what the network code relies on, and every input
// completes in bounded time. The PRNG (mulberry32) and its seed are in each
// test's name, so a failure reproduces exactly.
import { Gen } from "../testing/prng.ts";
import { timed } from "../testing/timed.ts";
import { describe, expect, test } from "bun:test";
import net from "node:net";
import { IpConfigError, isIpv6, isValidIfaceName, parseIp, parseNameserver, splitFields } from "./ipconfig.ts";



const FIELD_ATOMS = [
  "", "", "10.0.2.15", "10.0.2.2", "255.255.255.0", "255.0.255.0", "0.0.0.0", "256.1.1.1", "010.0.0.1", "1.2.3",
  "[2001:db8::2]", "[::1]", "[:::::]", "[::ffff:1.2.3.4]", "[1::2::3]", "[fe80::1%eth0]", "[", "]", "[[", "]]",
  "24", "0", "32", "33", "64", "128", "129", "-1", "+24", "0x18", "1e2", "99999999999999999999", "4294967296",
  "eth0", "enp0s3", "-i", "--help", ".", "..", "a/b", "x".repeat(15), "x".repeat(16), "é", "\u00a0", "\x1b[2J",
  "\0", "\t", " ", "\ud800", "😀", "node1", "node-1.example.com", "a_b", "$(reboot)", ";", "\\",
  "none", "off", "dhcp", "dhcp6", "on", "any", "auto6", "both", "static", "ibft",
];

function field(g: Gen): string {
  let s = "";
  for (let n = 1 + g.int(2); n > 0; n--) s += g.chance(0.85) ? g.pick(FIELD_ATOMS) : String.fromCharCode(g.int(0x100));
  return s;
}

function ipValue(g: Gen): string {
  const r = g.next();
  if (r < 0.1) return field(g);
  if (r < 0.3) return `${field(g)}:${g.pick(["dhcp", "on", "none", "off", "dhcp6", field(g)])}${g.chance(0.3) ? `:${field(g)}:${field(g)}` : ""}`;
  const n = 2 + g.int(9);
  const fields: string[] = [];
  for (let i = 0; i < n; i++) fields.push(field(g));
  return fields.join(":");
}

const RAW_CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e]/;


/** parseIp, returning the IpConfigError instead of throwing it; any other exception fails the test. */
function attempt(value: string): ReturnType<typeof parseIp> | IpConfigError {
  try {
    return timed(() => parseIp(value), 50, JSON.stringify(value));
  } catch (e) {
    if (e instanceof IpConfigError) return e;
    throw new Error(`parseIp(${JSON.stringify(value)}) threw ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
  }
}

function isAddress(s: string, fam: 4 | 6): boolean {
  return fam === 4 ? net.isIPv4(s) : isIpv6(s);
}

describe("parseIp (property)", () => {
  test("mulberry32 seed 0x1b0001: only IpConfigError; accepted values are what the network code relies on", () => {
    const g = new Gen(0x1b0001);
    let accepted = 0;
    for (let i = 0; i < 4000; i++) {
      const value = ipValue(g);
      const r = attempt(value);
      if (r instanceof IpConfigError) {
        expect(r.param).toBe("ip");
        expect(r.message.startsWith("ip=")).toBe(true);
        expect(RAW_CONTROL.test(r.message)).toBe(false);
        expect(r.message.length).toBeLessThan(1200);
        continue;
      }
      accepted++;
      if (r.iface !== undefined) expect(isValidIfaceName(r.iface)).toBe(true);
      if (r.kind === "static") {
        expect(isAddress(r.address, r.family)).toBe(true);
        expect(Number.isInteger(r.prefix) && r.prefix >= 0 && r.prefix <= (r.family === 4 ? 32 : 128)).toBe(true);
        if (r.gateway !== undefined) expect(isAddress(r.gateway, r.family)).toBe(true);
        if (r.hostname !== undefined) expect(r.hostname).toMatch(/^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$/);
        for (const d of r.dns) expect(net.isIPv4(d) || isIpv6(d)).toBe(true);
      } else if (r.kind === "dhcp") {
        expect([4, 6]).toContain(r.family);
      }
    }
    // The generator must reach the accepting paths too, or the invariants above test nothing.
    expect(accepted).toBeGreaterThan(200);
  });

  test("mulberry32 seed 0x1b0002: huge and degenerate values give short messages in bounded time", () => {
    const g = new Gen(0x1b0002);
    for (let i = 0; i < 8; i++) {
      const unit = field(g) + g.pick([":", "[", "]", "::", ""]);
      const value = unit.repeat(Math.ceil((1 << 20) / Math.max(1, unit.length)));
      const r = timed(() => attempt(value), 300, `1 MB of ${JSON.stringify(unit)}`);
      if (r instanceof IpConfigError) expect(r.message.length).toBeLessThan(1200);
    }
    expect(attempt(":".repeat(1 << 20))).toBeInstanceOf(IpConfigError);
    expect(attempt("[".repeat(1 << 20))).toBeInstanceOf(IpConfigError);
  });

  test("mulberry32 seed 0x1b0003: splitFields is the inverse of joining bracket-free fields with ':'", () => {
    const g = new Gen(0x1b0003);
    for (let i = 0; i < 2000; i++) {
      const fields: string[] = [];
      for (let n = 1 + g.int(10); n > 0; n--) fields.push(field(g).replace(/[[\]:]/g, ""));
      expect(splitFields(fields.join(":"))).toEqual(fields);
    }
  });

  test("mulberry32 seed 0x1b0004: isIpv6 agrees with node:net for IPv6 text (no zones, no leading-zero IPv4 tails)", () => {
    const g = new Gen(0x1b0004);
    const parts = ["", "0", "1", "ffff", "FFFF", "12345", "g", ":", "::", "1.2.3.4", "255.255.255.255", "256.1.1.1", "1.2.3", "."];
    let valid = 0;
    for (let i = 0; i < 5000; i++) {
      let s = "";
      for (let n = g.int(10); n > 0; n--) s += g.pick(parts) + (g.chance(0.7) ? ":" : "");
      if (/(^|[.:])0\d/.test(s)) continue;
      const want = net.isIPv6(s);
      if (want) valid++;
      if (isIpv6(s) !== want) throw new Error(`isIpv6(${JSON.stringify(s)}) = ${!want}, node:net says ${want}`);
    }
    expect(valid).toBeGreaterThan(50);
  });

  test("mulberry32 seed 0x1b0005: interface names: exactly the kernel's dev_valid_name() rules plus no leading '-'", () => {
    const g = new Gen(0x1b0005);
    const chars = ["a", "Z", "0", "-", "_", ".", "/", ":", " ", "\t", "\x00", "\x1b", "\x7f", "\x85", "\u00a0", "à", "é", "😀", "\ud800"];
    const enc = new TextEncoder();
    for (let i = 0; i < 5000; i++) {
      let name = "";
      for (let n = g.int(18); n > 0; n--) name += g.pick(chars);
      const bytes = enc.encode(name);
      const kernel =
        bytes.length > 0 &&
        bytes.length < 16 &&
        name !== "." &&
        name !== ".." &&
        !bytes.some((b) => b === 0x2f || b === 0x3a || b === 0x20 || (b >= 0x09 && b <= 0x0d) || b === 0xa0 || b === 0);
      const ours = kernel && !name.startsWith("-") && !/[\u0000-\u001f\u007f-\u009f]/.test(name) && !/[\ud800-\udfff]/.test(name.replace(/[\ud800-\udbff][\udc00-\udfff]/g, ""));
      expect({ name, valid: isValidIfaceName(name) }).toEqual({ name, valid: ours });
    }
  });
});

describe("parseNameserver (property)", () => {
  test("mulberry32 seed 0x1b0101: returns an address or throws an IpConfigError naming nameserver=", () => {
    const g = new Gen(0x1b0101);
    for (let i = 0; i < 3000; i++) {
      const value = field(g);
      try {
        const v = parseNameserver(value);
        expect(net.isIPv4(v) || isIpv6(v)).toBe(true);
      } catch (e) {
        expect(e).toBeInstanceOf(IpConfigError);
        expect((e as IpConfigError).param).toBe("nameserver");
        expect((e as Error).message.startsWith("nameserver=")).toBe(true);
        expect(RAW_CONTROL.test((e as Error).message)).toBe(false);
      }
    }
  });
});
