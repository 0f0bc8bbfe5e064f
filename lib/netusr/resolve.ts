// The server of a network /usr by address: an IPv4 literal as it is, a name
// through the resolver the network step configured (DHCP's DNS servers or
// nameserver=). A name that does not resolve is a boot failure naming the
// parameter that holds it.
import { lookup } from "node:dns/promises";
import { BootError, messageOf, type BootParam } from "../errors.ts";
import { escapeControls } from "../text.ts";

export async function resolveHost(host: string, param: BootParam, what: string): Promise<string> {
  if (/^\d+\.\d+\.\d+\.\d+$/.test(host)) return host;
  try {
    return (await lookup(host, { family: 4 })).address;
  } catch (e) {
    throw new BootError(`${param}: cannot resolve the ${what} name ${escapeControls(host)}: ${messageOf(e)} (no DNS server from DHCP or nameserver=?)`, { param });
  }
}
