// ip=, BOOTIF= and nameserver= in kernel and dracut syntax. Pure. Kernels of
// this kind are built without CONFIG_IP_PNP, so the init does this itself.

export type IpConfig =
  | { kind: "dhcp"; iface?: string; family: 4 | 6 }
  | { kind: "static"; iface?: string; family: 4 | 6; address: string; prefix: number; gateway?: string; hostname?: string; dns: string[] }
  | { kind: "off"; iface?: string };

export class IpConfigError extends Error {
  readonly param = "ip";
}

const DHCP_WORDS = new Set(["dhcp", "on", "any", "auto6", "dhcp6", "both"]);
const OFF_WORDS = new Set(["none", "off", ""]);

/** Splits on ':' outside [brackets] (IPv6 addresses are bracketed). */
export function splitFields(text: string): string[] {
  const out: string[] = [];
  let cur = "";
  let depth = 0;
  for (const ch of text) {
    if (ch === "[") depth++;
    if (ch === "]") depth = Math.max(0, depth - 1);
    if (ch === ":" && depth === 0) {
      out.push(cur);
      cur = "";
    } else cur += ch;
  }
  out.push(cur);
  return out;
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/;

function unbracket(s: string): string {
  return s.startsWith("[") && s.endsWith("]") ? s.slice(1, -1) : s;
}

function isIpv6(s: string): boolean {
  return /^[0-9a-fA-F:.]+$/.test(s) && s.includes(":");
}

function family(addr: string): 4 | 6 | null {
  if (IPV4.test(addr)) return 4;
  if (isIpv6(addr)) return 6;
  return null;
}

function prefixFromNetmask(mask: string, fam: 4 | 6, whole: string): number {
  if (/^\d+$/.test(mask)) {
    const n = Number(mask);
    if (n > (fam === 4 ? 32 : 128)) throw new IpConfigError(`ip=${whole}: prefix length ${n} is too long for IPv${fam}`);
    return n;
  }
  if (fam === 4 && IPV4.test(mask)) {
    const bits = mask.split(".").map(Number).reduce((acc, o) => (acc << 8) | o, 0) >>> 0;
    const prefix = 32 - Math.log2((~bits >>> 0) + 1);
    if (!Number.isInteger(prefix)) throw new IpConfigError(`ip=${whole}: netmask ${mask} is not contiguous`);
    return prefix;
  }
  throw new IpConfigError(`ip=${whole}: netmask "${mask}" is neither a prefix length nor a dotted IPv4 mask`);
}

export function parseIp(value: string): IpConfig {
  const f = splitFields(value);
  if (f.length === 1) {
    const w = f[0]!;
    if (DHCP_WORDS.has(w)) return { kind: "dhcp", family: w === "dhcp6" || w === "auto6" ? 6 : 4 };
    if (OFF_WORDS.has(w)) return { kind: "off" };
    throw new IpConfigError(`ip=${value}: expected dhcp, dhcp6, on, any, none, off, <interface>:dhcp or <client>:<peer>:<gateway>:<netmask>:<hostname>:<interface>:none[:<dns1>[:<dns2>]]`);
  }
  // dracut: ip=<interface>:{dhcp|on|any|dhcp6|auto6}[:[<mtu>][:<macaddr>]]
  if (/^[A-Za-z][\w.-]*$/.test(f[0]!) && (DHCP_WORDS.has(f[1]!) || f[1] === "none" || f[1] === "off")) {
    if (f[1] === "none" || f[1] === "off") return { kind: "off", iface: f[0] };
    return { kind: "dhcp", iface: f[0], family: f[1] === "dhcp6" || f[1] === "auto6" ? 6 : 4 };
  }
  const [client = "", , gateway = "", netmask = "", hostname = "", iface = "", autoconf = "", dns1 = "", dns2 = ""] = f;
  if (DHCP_WORDS.has(autoconf)) return { kind: "dhcp", iface: iface || undefined, family: autoconf === "dhcp6" || autoconf === "auto6" ? 6 : 4 };
  if (!OFF_WORDS.has(autoconf)) throw new IpConfigError(`ip=${value}: autoconf field "${autoconf}" must be none, off, dhcp, dhcp6, on or any`);
  const address = unbracket(client);
  const fam = family(address);
  if (!fam) throw new IpConfigError(`ip=${value}: client address "${client}" is not an IPv4 address or a bracketed IPv6 address`);
  const gw = unbracket(gateway);
  if (gw && family(gw) !== fam) throw new IpConfigError(`ip=${value}: gateway "${gateway}" is not an IPv${fam} address`);
  const prefix = netmask ? prefixFromNetmask(unbracket(netmask), fam, value) : fam === 4 ? 24 : 64;
  const dns = [dns1, dns2].map(unbracket).filter(Boolean);
  for (const d of dns) if (!family(d)) throw new IpConfigError(`ip=${value}: DNS server "${d}" is not an IP address`);
  return { kind: "static", iface: iface || undefined, family: fam, address, prefix, gateway: gw || undefined, hostname: hostname || undefined, dns };
}

export function parseNameserver(value: string): string {
  const v = unbracket(value);
  if (!family(v)) throw new IpConfigError(`nameserver=${value}: expected an IPv4 or IPv6 address`);
  return v;
}
