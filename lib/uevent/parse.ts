// Pure parsing of kernel uevent payloads (netlink datagrams and the
// KEY=VALUE text of /sys/.../uevent files).

export interface Uevent {
  action: string;
  devpath: string;
  env: Record<string, string>;
}

/**
 * Parses one kernel netlink datagram: "ACTION@DEVPATH\0KEY=VALUE\0...".
 * Returns null for messages that are not from the kernel (libudev
 * re-broadcasts start with "libudev" and a binary header).
 */
export function parseNetlinkUevent(buf: Uint8Array): Uevent | null {
  const text = new TextDecoder().decode(buf);
  const parts = text.split("\0");
  const head = parts[0] ?? "";
  const at = head.indexOf("@");
  if (at <= 0 || head.startsWith("libudev")) return null;
  const env: Record<string, string> = {};
  for (const p of parts.slice(1)) {
    const eq = p.indexOf("=");
    if (eq > 0) env[p.slice(0, eq)] = p.slice(eq + 1);
  }
  return { action: env.ACTION ?? head.slice(0, at), devpath: env.DEVPATH ?? head.slice(at + 1), env };
}

/** Parses the KEY=VALUE lines of a sysfs uevent file. */
export function parseUeventFile(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const eq = line.indexOf("=");
    if (eq > 0) env[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return env;
}
