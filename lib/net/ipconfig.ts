// ip=, BOOTIF= and nameserver= in kernel and dracut syntax. Pure. Kernels of
// this kind are built without CONFIG_IP_PNP, so the init does this itself.
//
// Every field that reaches a tool (busybox ip, udhcpc) or a file is checked
// here: interface names as the kernel's dev_valid_name() does, addresses by
// their real syntax, the hostname by its alphabet. Messages show the value
// escaped and shortened (showValue), as the command-line parser does.
import { showValue } from "../cmdline.ts";
import { BootError } from "../errors.ts";

export type IpConfig =
  | { kind: "dhcp"; iface?: string; family: 4 | 6 }
  | { kind: "static"; iface?: string; family: 4 | 6; address: string; prefix: number; gateway?: string; hostname?: string; dns: string[] }
  | { kind: "off"; iface?: string };

/** A bad ip= or nameserver= value, a boot failure naming the parameter it came from. */
export class IpConfigError extends BootError {
  override name = "IpConfigError";
  constructor(
    message: string,
    override readonly param: "ip" | "nameserver" = "ip",
  ) {
    super(message, { param });
  }
}

const DHCP_WORDS = new Set(["dhcp", "on", "any", "auto6", "dhcp6", "both"]);
const OFF_WORDS = new Set(["none", "off", ""]);

/** Splits on ':' outside [brackets] (IPv6 addresses are bracketed). Linear: one scan, one slice per field. */
export function splitFields(text: string): string[] {
  const out: string[] = [];
  let start = 0;
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x5b) depth++; // [
    else if (c === 0x5d) depth = Math.max(0, depth - 1); // ]
    else if (c === 0x3a && depth === 0) {
      out.push(text.slice(start, i));
      start = i + 1;
    }
  }
  out.push(text.slice(start));
  return out;
}

// Dotted decimal without leading zeros: inet_aton() would read "010" as
// octal 8 where the kernel's in_aton() reads 10, so it is refused rather
// than configured as one or the other.
const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const HEX_GROUP = /^[0-9A-Fa-f]{1,4}$/;

function unbracket(s: string): string {
  return s.startsWith("[") && s.endsWith("]") ? s.slice(1, -1) : s;
}

/** RFC 4291 text form: eight groups of 1-4 hex digits, at most one "::", optionally an IPv4 tail. No zone. */
export function isIpv6(s: string): boolean {
  if (s.length < 2 || s.length > 45 || !/^[0-9A-Fa-f:.]+$/.test(s)) return false;
  let text = s;
  const lastColon = s.lastIndexOf(":");
  if (lastColon < 0) return false;
  const tail = s.slice(lastColon + 1);
  if (tail.includes(".")) {
    // An embedded IPv4 address takes the place of the last two groups.
    if (!IPV4.test(tail)) return false;
    text = `${s.slice(0, lastColon + 1)}0:0`;
  }
  const dbl = text.indexOf("::");
  if (dbl < 0) {
    const groups = text.split(":");
    return groups.length === 8 && groups.every((g) => HEX_GROUP.test(g));
  }
  if (text.indexOf("::", dbl + 1) >= 0) return false;
  const left = text.slice(0, dbl);
  const right = text.slice(dbl + 2);
  const groups = [...(left === "" ? [] : left.split(":")), ...(right === "" ? [] : right.split(":"))];
  return groups.length <= 7 && groups.every((g) => HEX_GROUP.test(g));
}

function family(addr: string): 4 | 6 | null {
  if (IPV4.test(addr)) return 4;
  if (isIpv6(addr)) return 6;
  return null;
}

// What dev_valid_name() (net/core/dev.c) accepts, plus no leading '-'
// (busybox ip and udhcpc would read the name as an option).
export const IFACE_EXPECTED = 'an interface name of 1 to 15 bytes, not "." or "..", without "/", ":", blanks or control characters, not starting with "-"';
const IFNAMSIZ = 16;
const utf8 = new TextEncoder();
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/**
 * The kernel's dev_valid_name(): non-empty, shorter than IFNAMSIZ bytes, not
 * "." or "..", and no '/', ':' or isspace() byte (the kernel's ctype also
 * counts 0xA0 as a space, so a UTF-8 character containing that byte is
 * refused too). Control characters (C0, DEL, C1) and a leading '-' are
 * refused on top of that.
 */
export function isValidIfaceName(name: string): boolean {
  // Cheap bound first: more than 15 UTF-16 units is more than 15 bytes.
  if (name.length === 0 || name.length >= IFNAMSIZ) return false;
  if (name === "." || name === ".." || name.startsWith("-")) return false;
  if (/[\u0080-\u009f]/.test(name) || LONE_SURROGATE.test(name)) return false;
  const bytes = utf8.encode(name);
  if (bytes.length >= IFNAMSIZ) return false;
  for (const b of bytes) {
    if (b <= 0x20 || b === 0x7f || b === 0xa0 || b === 0x2f || b === 0x3a) return false;
  }
  return true;
}

// Host names as DNS spells them; the leading character may not be '-' (an
// option to the tools) nor '.'.
export const HOSTNAME_EXPECTED = 'a host name of at most 253 characters: letters, digits, "." and "-", starting with a letter or digit';
const HOSTNAME_RE = /^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$/;

function quoted(field: string): string {
  return `"${showValue(field)}"`;
}

function checkIface(iface: string, whole: string): string {
  if (!isValidIfaceName(iface)) throw new IpConfigError(`ip=${showValue(whole)}: interface ${quoted(iface)} is not valid: expected ${IFACE_EXPECTED}`);
  return iface;
}

function prefixFromNetmask(mask: string, fam: 4 | 6, whole: string): number {
  const max = fam === 4 ? 32 : 128;
  if (/^\d+$/.test(mask)) {
    // Compare without Number() so that 400 digits do not become "Infinity" in the message.
    const digits = mask.replace(/^0+(?=\d)/, "");
    const n = digits.length > 3 ? Infinity : Number(digits);
    if (n > max) throw new IpConfigError(`ip=${showValue(whole)}: prefix length ${showValue(mask)} is too long for IPv${fam} (at most ${max})`);
    return n;
  }
  if (fam === 4 && IPV4.test(mask)) {
    const bits = mask.split(".").map(Number).reduce((acc, o) => (acc << 8) | o, 0) >>> 0;
    const prefix = 32 - Math.log2((~bits >>> 0) + 1);
    if (!Number.isInteger(prefix)) throw new IpConfigError(`ip=${showValue(whole)}: netmask ${mask} is not contiguous`);
    return prefix;
  }
  throw new IpConfigError(
    `ip=${showValue(whole)}: netmask ${quoted(mask)} is neither a prefix length (0 to ${max}) nor a dotted IPv4 mask such as 255.255.255.0`,
  );
}

export function parseIp(value: string): IpConfig {
  const f = splitFields(value);
  const shown = showValue(value);
  if (f.length === 1) {
    const w = f[0]!;
    if (DHCP_WORDS.has(w)) return { kind: "dhcp", family: w === "dhcp6" || w === "auto6" ? 6 : 4 };
    if (OFF_WORDS.has(w)) return { kind: "off" };
    throw new IpConfigError(`ip=${shown}: expected dhcp, dhcp6, on, any, none, off, <interface>:dhcp or <client>:<peer>:<gateway>:<netmask>:<hostname>:<interface>:none[:<dns1>[:<dns2>]]`);
  }
  // dracut: ip=<interface>:{dhcp|on|any|dhcp6|auto6}[:[<mtu>][:<macaddr>]].
  // In the kernel form the second field is the peer address, never one of
  // these words, so the word says which form this is (unless the first
  // field is an address: then it is a kernel form with a bad peer).
  if (f[0] !== "" && (DHCP_WORDS.has(f[1]!) || f[1] === "none" || f[1] === "off") && family(unbracket(f[0]!)) === null) {
    const iface = checkIface(f[0]!, value);
    if (f[1] === "none" || f[1] === "off") return { kind: "off", iface };
    return { kind: "dhcp", iface, family: f[1] === "dhcp6" || f[1] === "auto6" ? 6 : 4 };
  }
  const [client = "", peer = "", gateway = "", netmask = "", hostname = "", iface = "", autoconf = "", dns1 = "", dns2 = ""] = f;
  if (iface !== "") checkIface(iface, value);
  if (DHCP_WORDS.has(autoconf)) return { kind: "dhcp", iface: iface || undefined, family: autoconf === "dhcp6" || autoconf === "auto6" ? 6 : 4 };
  if (!OFF_WORDS.has(autoconf)) throw new IpConfigError(`ip=${shown}: autoconf field ${quoted(autoconf)} must be none, off, dhcp, dhcp6, on or any`);
  const address = unbracket(client);
  const fam = family(address);
  if (!fam) throw new IpConfigError(`ip=${shown}: client address ${quoted(client)} is not an IPv4 address or a bracketed IPv6 address`);
  const pr = unbracket(peer);
  if (pr && family(pr) !== fam) throw new IpConfigError(`ip=${shown}: peer ${quoted(peer)} is not an IPv${fam} address`);
  const gw = unbracket(gateway);
  if (gw && family(gw) !== fam) throw new IpConfigError(`ip=${shown}: gateway ${quoted(gateway)} is not an IPv${fam} address`);
  const prefix = netmask ? prefixFromNetmask(unbracket(netmask), fam, value) : fam === 4 ? 24 : 64;
  if (hostname && !HOSTNAME_RE.test(hostname)) throw new IpConfigError(`ip=${shown}: hostname ${quoted(hostname)} is not valid: expected ${HOSTNAME_EXPECTED}`);
  const dns = [dns1, dns2].map(unbracket).filter(Boolean);
  for (const d of dns) if (!family(d)) throw new IpConfigError(`ip=${shown}: DNS server ${quoted(d)} is not an IP address`);
  return { kind: "static", iface: iface || undefined, family: fam, address, prefix, gateway: gw || undefined, hostname: hostname || undefined, dns };
}

export function parseNameserver(value: string): string {
  const v = unbracket(value);
  if (!family(v)) throw new IpConfigError(`nameserver=${showValue(value)}: expected an IPv4 or IPv6 address`, "nameserver");
  return v;
}
