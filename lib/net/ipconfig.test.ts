import { describe, expect, test } from "bun:test";
import { IpConfigError, parseIp, parseNameserver, splitFields } from "./ipconfig.ts";

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
