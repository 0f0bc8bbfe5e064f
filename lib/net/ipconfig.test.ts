import { describe, expect, test } from "bun:test";
import { IpConfigError, parseIp, parseNameserver, splitFields } from "./ipconfig.ts";
import { BootError } from "../errors.ts";

describe("ip=", () => {
  test("DHCP forms", () => {
    expect(parseIp("dhcp")).toEqual({ kind: "dhcp", family: 4 });
    expect(parseIp("on")).toEqual({ kind: "dhcp", family: 4 });
    expect(parseIp("dhcp6")).toEqual({ kind: "dhcp", family: 6 });
    expect(parseIp("eth0:dhcp")).toEqual({ kind: "dhcp", iface: "eth0", family: 4 });
    expect(parseIp("enp1s0:dhcp:1500:52:54:00:12:34:56")).toEqual({ kind: "dhcp", iface: "enp1s0", family: 4 });
    expect(parseIp(":::::eth1:dhcp")).toEqual({ kind: "dhcp", iface: "eth1", family: 4 });
    expect(parseIp("off")).toEqual({ kind: "off" });
  });

  test("static IPv4 in kernel syntax, with DNS servers", () => {
    expect(parseIp("10.0.2.15::10.0.2.2:255.255.255.0:node1:eth0:none:10.0.2.3:1.1.1.1")).toEqual({
      kind: "static", iface: "eth0", family: 4, address: "10.0.2.15", prefix: 24, gateway: "10.0.2.2", hostname: "node1", dns: ["10.0.2.3", "1.1.1.1"],
    });
    expect(parseIp("192.168.1.5::192.168.1.1:16::eth0:off")).toMatchObject({ address: "192.168.1.5", prefix: 16, gateway: "192.168.1.1" });
    expect(parseIp("10.1.2.3:::255.255.255.252")).toMatchObject({ kind: "static", prefix: 30, iface: undefined, gateway: undefined });
  });

  test("static IPv6 in brackets", () => {
    expect(splitFields("[2001:db8::2]::[2001:db8::1]:64::eth0:none")).toEqual(["[2001:db8::2]", "", "[2001:db8::1]", "64", "", "eth0", "none"]);
    expect(parseIp("[2001:db8::2]::[2001:db8::1]:64::eth0:none:[2001:db8::53]")).toEqual({
      kind: "static", iface: "eth0", family: 6, address: "2001:db8::2", prefix: 64, gateway: "2001:db8::1", hostname: undefined, dns: ["2001:db8::53"],
    });
  });

  test.each([
    ["bogus", "ip=bogus: expected dhcp, dhcp6, on, any, none, off"],
    ["10.0.2.300::10.0.2.2:24::eth0:none", 'client address "10.0.2.300" is not an IPv4 address'],
    ["10.0.2.15::10.0.2.2:255.0.255.0::eth0:none", "netmask 255.0.255.0 is not contiguous"],
    ["10.0.2.15::10.0.2.2:33::eth0:none", "prefix length 33 is too long for IPv4"],
    ["10.0.2.15::[2001:db8::1]:24::eth0:none", 'gateway "[2001:db8::1]" is not an IPv4 address'],
    ["10.0.2.15::10.0.2.2:24::eth0:static", 'autoconf field "static" must be none'],
    ["10.0.2.15::10.0.2.2:24::eth0:none:dns.example", 'DNS server "dns.example" is not an IP address'],
  ])("%s is rejected by name", (value, message) => {
    expect(() => parseIp(value)).toThrow(IpConfigError);
    expect(() => parseIp(value)).toThrow(message);
  });

  test("nameserver=", () => {
    expect(parseNameserver("10.0.2.3")).toBe("10.0.2.3");
    expect(parseNameserver("[2001:db8::53]")).toBe("2001:db8::53");
    expect(() => parseNameserver("dns")).toThrow("nameserver=dns: expected an IPv4 or IPv6 address");
  });
});

// Regression: the interface name of ip= was not validated at all, so "-i"
// (an option to `ip` and udhcpc) or a bracketed "[:::::]" reached the tools;
// and the other fields of the static form let hostile text through.
describe("ip=: interface names, as the kernel's dev_valid_name() plus no leading '-'", () => {
  /** The IpConfigError a value must produce. */
  function ipError(value: string): IpConfigError {
    let caught: unknown;
    try {
      parseIp(value);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(IpConfigError);
    const e = caught as IpConfigError;
    expect(e.param).toBe("ip");
    expect(e.message.startsWith("ip=")).toBe(true);
    return e;
  }

  const BAD_NAMES = ["-i", "--help", "[:::::]", "[a:b]", ".", "..", "a/b", "e\x1bth", "eth\x7f", "eth\u0085", "eth\u00a0", "x".repeat(16), "é".repeat(8)];
  for (const name of BAD_NAMES) {
    test(`static form: interface ${JSON.stringify(name)} is refused by name`, () => {
      const e = ipError(`10.0.2.15::10.0.2.2:24::${name}:none`);
      expect(e.message).toContain("interface");
      expect(e.message).toContain("1 to 15 bytes");
    });
    test(`kernel DHCP form: interface ${JSON.stringify(name)} is refused`, () => {
      expect(ipError(`:::::${name}:dhcp`).message).toContain("interface");
    });
  }

  for (const name of ["-i", "x".repeat(16), "a/b", "..", "e\x1bth"]) {
    test(`dracut form: ${JSON.stringify(name)}:dhcp names the interface, not a client address`, () => {
      const e = ipError(`${name}:dhcp`);
      expect(e.message).toContain("interface");
      expect(e.message).not.toContain("client address");
    });
  }

  test("valid names pass, up to 15 bytes", () => {
    for (const name of ["eth0", "enp0s31f6", "br-lan", "wlan0.100", "x".repeat(15), "é".repeat(7), "eth_1", "0eth"]) {
      expect(parseIp(`10.0.2.15::10.0.2.2:24::${name}:none`)).toMatchObject({ kind: "static", iface: name });
      expect(parseIp(`:::::${name}:dhcp`)).toMatchObject({ kind: "dhcp", iface: name });
    }
    expect(parseIp("0eth:dhcp")).toEqual({ kind: "dhcp", iface: "0eth", family: 4 });
    expect(parseIp("eth0:off")).toEqual({ kind: "off", iface: "eth0" });
    // An address first is the kernel form, whose second field is the peer address.
    expect(() => parseIp("10.0.0.2:none")).toThrow('peer "none" is not an IPv4 address');
  });

  test("control characters in the value are escaped in the message", () => {
    const e = ipError("10.0.2.15::10.0.2.2:24::e\x1b[2Jth:none");
    expect(e.message).not.toContain("\x1b");
    expect(e.message).toContain("\\x1b[2J");
  });

  test("a 1 MB value gives a short message, quickly", () => {
    const t0 = performance.now();
    const e = ipError(`10.0.2.15::10.0.2.2:24::${"x".repeat(1 << 20)}:none`);
    expect(e.message.length).toBeLessThan(600);
    expect(performance.now() - t0).toBeLessThan(500);
  });
});

describe("ip=: the other fields of the static form", () => {
  function message(value: string): string {
    try {
      parseIp(value);
    } catch (e) {
      expect(e).toBeInstanceOf(IpConfigError);
      return (e as Error).message;
    }
    throw new Error(`ip=${value} was accepted`);
  }

  test("IPv6 addresses are checked for real, not by alphabet", () => {
    for (const bad of ["[:::::]", "[::::::::]", "[1:2:3:4:5:6:7:8:9]", "[1::2::3]", "[12345::]", "[:1]", "[1:]", "[::1.2.3]", "[::1.2.3.256]", "[1:2:3:4:5:6:7:1.2.3.4]", "[.]", "[:]"]) {
      expect(message(`${bad}::::h:eth0:none`)).toContain("client address");
    }
    for (const [good, addr] of [
      ["[::1]", "::1"],
      ["[2001:db8::2]", "2001:db8::2"],
      ["[::ffff:10.0.0.1]", "::ffff:10.0.0.1"],
      ["[1:2:3:4:5:6:7:8]", "1:2:3:4:5:6:7:8"],
      ["[1:2:3:4:5:6::]", "1:2:3:4:5:6::"],
      ["[::]", "::"],
      ["[1:2:3:4:5:6:1.2.3.4]", "1:2:3:4:5:6:1.2.3.4"],
    ] as const) {
      expect(parseIp(`${good}::::h:eth0:none`)).toMatchObject({ kind: "static", family: 6, address: addr });
    }
  });

  test("IPv4 octets with leading zeros are refused (octal to inet_aton, decimal to the kernel)", () => {
    expect(message("010.0.2.15::10.0.2.2:24::eth0:none")).toContain("client address");
    expect(message("10.0.2.15::10.0.2.02:24::eth0:none")).toContain("gateway");
    expect(message("[::ffff:10.0.2.015]::::h:eth0:none")).toContain("client address");
    expect(parseIp("10.0.0.0::10.0.2.2:24::eth0:none")).toMatchObject({ address: "10.0.0.0" });
  });

  test("gateway, peer and DNS servers must be addresses of the right kind", () => {
    expect(message("10.0.2.15::[:::::]:24::eth0:none")).toContain("gateway");
    expect(message("[2001:db8::2]::[1::2::3]:64::eth0:none")).toContain("gateway");
    expect(message("10.0.2.15:-x:10.0.2.2:24::eth0:none")).toContain("peer");
    expect(message("10.0.2.15::10.0.2.2:24::eth0:none:[:::]")).toContain("DNS server");
    expect(parseIp("10.0.2.15:10.0.2.1:10.0.2.2:24::eth0:none")).toMatchObject({ kind: "static", address: "10.0.2.15" });
  });

  test("netmask: digits or a dotted mask only; no sign, hex, blanks or overflow", () => {
    for (const bad of ["-1", "+24", "0x18", "24 ", "1e1", "2.4", "[6 4]", "255.255.255.0.0"]) {
      expect(message(`10.0.2.15::10.0.2.2:${bad}::eth0:none`)).toContain("netmask");
    }
    const huge = "9".repeat(400);
    const m = message(`10.0.2.15::10.0.2.2:${huge}::eth0:none`);
    expect(m).toContain("too long for IPv4");
    expect(m).not.toContain("Infinity");
    expect(message("[2001:db8::2]::[2001:db8::1]:129::eth0:none")).toContain("too long for IPv6");
    expect(parseIp("10.0.2.15::10.0.2.2:0024::eth0:none")).toMatchObject({ prefix: 24 });
    expect(parseIp("10.0.2.15::10.0.2.2:0.0.0.0::eth0:none")).toMatchObject({ prefix: 0 });
    expect(parseIp("10.0.2.15::10.0.2.2:255.255.255.255::eth0:none")).toMatchObject({ prefix: 32 });
  });

  test("hostname: letters, digits, '.' and '-' only, at most 253, no leading '-' or '.'", () => {
    for (const bad of ["a_b", "-rf", ".x", "host name", "e\x1b]0;pwn\x07", "x".repeat(254), "h\u00e9", "a;reboot", "$(id)"]) {
      expect(message(`10.0.2.15::10.0.2.2:24:${bad}:eth0:none`)).toContain("hostname");
    }
    for (const good of ["node1", "node-1.example.com", "x".repeat(253), "1host"]) {
      expect(parseIp(`10.0.2.15::10.0.2.2:24:${good}:eth0:none`)).toMatchObject({ hostname: good });
    }
  });

  test("IpConfigError names the parameter it came from, as a BootError for the failure screen", () => {
    expect(() => parseNameserver("dns")).toThrow(IpConfigError);
    try {
      parseNameserver("[::::::]");
    } catch (e) {
      expect(e).toBeInstanceOf(BootError);
      expect((e as IpConfigError).param).toBe("nameserver");
      expect((e as Error).message).toBe("nameserver=[::::::]: expected an IPv4 or IPv6 address");
    }
    expect.assertions(4);
  });
});
