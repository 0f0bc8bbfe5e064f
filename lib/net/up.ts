// Bringing the network up for a diskless boot: NIC drivers come through the
// device manager like disk drivers; addresses are set with busybox `ip`, and
// DHCP runs busybox udhcpc whose script only hands the lease back (the init
// configures address, route and resolv.conf itself, so every step is logged).
// The network is left up for stage 2, as configured here.
import fs from "node:fs";
import { boundDriver, readSysValue } from "../fsutil.ts";
import type { BootParams } from "../cmdline.ts";
import { log } from "../log.ts";
import { runChecked, run } from "../spawn.ts";
import type { DeviceManager } from "../uevent/manager.ts";
import { parseIp, parseNameserver, type IpConfig } from "./ipconfig.ts";
import { BootError } from "../errors.ts";

import { BUSYBOX, UDHCPC_SCRIPT } from "../paths.ts";
const LEASE_DIR = "/run/bunboot";

/** The udhcpc hook shipped in the initrd: it records the lease, nothing else. */
export const UDHCPC_SCRIPT_TEXT = `#!/bin/busybox sh
# Called by udhcpc with the lease in the environment. The init applies it.
case "$1" in
  bound|renew)
    {
      echo "ip=$ip"
      echo "mask=$mask"
      echo "router=$router"
      echo "dns=$dns"
      echo "hostname=$hostname"
      echo "domain=$domain"
    } > ${LEASE_DIR}/lease.$interface
    ;;
esac
exit 0
`;

export interface NetState {
  iface: string;
  address: string;
  prefix: number;
  gateway?: string;
  dns: string[];
  how: "dhcp" | "static";
}

function interfaces(): string[] {
  try {
    return fs.readdirSync("/sys/class/net").filter((n) => n !== "lo").sort();
  } catch {
    return [];
  }
}

/** "eth0 (driver e1000, mac 52:54:00:12:34:56, carrier up)". */
function describeInterface(n: string): string {
  return `${n} (driver ${boundDriver(`/sys/class/net/${n}/device`) ?? "none"}, mac ${readSysValue(`/sys/class/net/${n}/address`) ?? "?"}, carrier ${readSysValue(`/sys/class/net/${n}/carrier`) === "1" ? "up" : "down"})`;
}

function describeInterfaces(): string {
  const names = interfaces();
  if (names.length === 0) return "none (no network driver found a NIC)";
  return names.map(describeInterface).join(", ");
}

async function ip(...args: string[]): Promise<void> {
  await runChecked([BUSYBOX, "ip", ...args], `ip ${args.join(" ")}`);
}

async function waitFor<T>(what: string, timeoutMs: number, devices: DeviceManager, probe: () => T | null): Promise<T | null> {
  const t0 = performance.now();
  let lastReport = t0;
  for (;;) {
    const v = probe();
    if (v !== null) return v;
    const now = performance.now();
    if (now - t0 >= timeoutMs) return null;
    if (now - lastReport >= 5000) {
      lastReport = now;
      log.info(`still waiting for ${what}; interfaces: ${describeInterfaces()}`);
      devices.coldplug();
    }
    await devices.nextEvent(250);
  }
}

export async function bringUpNetwork(p: BootParams, devices: DeviceManager): Promise<NetState> {
  // A bad value throws an IpConfigError, a BootError naming ip= or nameserver=.
  const configs = p.ip.map(parseIp);
  if (configs.length > 0 && configs.every((c) => c.kind === "off")) {
    throw new BootError("ip=off, but the network is needed (rd.usr.url= or rd.neednet=1)", { param: "ip" });
  }
  const config = (configs.find((c) => c.kind !== "off") ?? { kind: "dhcp", family: 4 }) as Exclude<IpConfig, { kind: "off" }>;
  const extraDns = p.nameservers.map(parseNameserver);
  const appearMs = (p.earlyTimeoutSec > 0 ? Math.min(p.earlyTimeoutSec, 120) : 120) * 1000;

  // Which interface: named by ip=, else the one whose MAC is BOOTIF=, else
  // the first that gets a carrier.
  let wantedName: string | undefined = config.iface;
  if (!wantedName && p.bootif) {
    const mac = p.bootif.toLowerCase();
    const found = await waitFor(`the interface with BOOTIF=${mac}`, appearMs, devices, () => interfaces().find((n) => readSysValue(`/sys/class/net/${n}/address`)?.toLowerCase() === mac) ?? null);
    if (!found) throw new BootError(`no interface has the MAC address of BOOTIF=${p.bootif} after ${appearMs / 1000} s; interfaces: ${describeInterfaces()}`, { param: "BOOTIF" });
    wantedName = found;
  }
  if (wantedName) {
    const name = wantedName;
    if (!(await waitFor(`interface ${name}`, appearMs, devices, () => (interfaces().includes(name) ? name : null)))) {
      throw new BootError(`interface ${name} (from ip=) did not appear within ${appearMs / 1000} s; interfaces: ${describeInterfaces()}`, { param: "ip" });
    }
  } else if (!(await waitFor("a network interface", appearMs, devices, () => (interfaces().length > 0 ? true : null)))) {
    throw new BootError(`no network interface appeared within ${appearMs / 1000} s: no driver for the NIC in this initrd? Interfaces: ${describeInterfaces()}`, { param: "ip" });
  }
  await run([BUSYBOX, "ip", "link", "set", "dev", "lo", "up"]);
  const candidates = wantedName ? [wantedName] : interfaces();
  for (const n of candidates) await ip("link", "set", "dev", n, "up");
  const carrierMs = 15_000;
  const iface = await waitFor(`carrier on ${candidates.join(", ")}`, carrierMs, devices, () => candidates.find((n) => readSysValue(`/sys/class/net/${n}/carrier`) === "1") ?? null);
  if (!iface) throw new BootError(`no carrier on ${candidates.join(", ")} after ${carrierMs / 1000} s (cable, switch port?); interfaces: ${describeInterfaces()}`, { param: "ip" });

  // Which NIC and driver the boot goes through: the first thing to compare
  // with the kernel's own lines when a NIC model misbehaves.
  log.info(`using ${describeInterface(iface)}`);
  let state: NetState;
  // A retry after the emergency shell finds the last attempt's address:
  // start from a clean interface, and replace rather than add the route.
  await ip("addr", "flush", "dev", iface);
  if (config.kind === "static") {
    await ip("addr", "add", `${config.address}/${config.prefix}`, "dev", iface);
    if (config.gateway) await ip("route", "replace", "default", "via", config.gateway, "dev", iface);
    state = { iface, address: config.address, prefix: config.prefix, gateway: config.gateway, dns: config.dns, how: "static" };
  } else {
    if (config.family === 6) throw new BootError("ip=dhcp6: DHCPv6 is not supported yet; use a static IPv6 address", { param: "ip" });
    state = await dhcp(iface);
  }
  const dns = [...new Set([...state.dns, ...extraDns])];
  if (dns.length > 0) {
    fs.mkdirSync("/etc", { recursive: true });
    fs.writeFileSync("/etc/resolv.conf", dns.map((d) => `nameserver ${d}\n`).join(""));
  }
  state.dns = dns;
  log.info(`network: ${state.iface} ${state.address}/${state.prefix}${state.gateway ? ` via ${state.gateway}` : ""} (${state.how})${dns.length ? `, dns ${dns.join(" ")}` : ""}`);
  return state;
}

async function dhcp(iface: string): Promise<NetState> {
  fs.mkdirSync(LEASE_DIR, { recursive: true });
  const leaseFile = `${LEASE_DIR}/lease.${iface}`;
  fs.rmSync(leaseFile, { force: true });
  // -f foreground, -q quit once bound, -n fail instead of backgrounding;
  // 6 discovers 2 s apart, 3 rounds: about 40 s before we give up.
  for (let round = 1; round <= 3; round++) {
    const r = await run([BUSYBOX, "udhcpc", "-i", iface, "-f", "-q", "-n", "-t", "6", "-T", "2", "-s", UDHCPC_SCRIPT]);
    if (r.code === 0 && fs.existsSync(leaseFile)) break;
    log.info(`DHCP on ${iface}: no lease yet (round ${round} of 3)${r.stderr.trim() ? `: ${r.stderr.trim().split("\n").at(-1)}` : ""}`);
    if (round === 3) throw new BootError(`DHCP on ${iface} got no lease; use ip=<client>::<gateway>:<netmask>::${iface}:none for a static address`, { param: "ip" });
  }
  const lease: Record<string, string> = {};
  for (const line of fs.readFileSync(leaseFile, "utf8").split("\n")) {
    const eq = line.indexOf("=");
    if (eq > 0) lease[line.slice(0, eq)] = line.slice(eq + 1).trim();
  }
  const prefix = Number(lease.mask ?? "24") || 24;
  if (!lease.ip) throw new BootError(`DHCP on ${iface}: the lease has no address`, { param: "ip" });
  await ip("addr", "add", `${lease.ip}/${prefix}`, "dev", iface);
  const gateway = lease.router?.split(/\s+/)[0] || undefined;
  if (gateway) await ip("route", "replace", "default", "via", gateway, "dev", iface);
  return { iface, address: lease.ip, prefix, gateway, dns: (lease.dns ?? "").split(/\s+/).filter(Boolean), how: "dhcp" };
}
