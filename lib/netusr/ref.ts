// Network sources of /usr, as the command line names them. Pure.
//
//   verity.usr=nbd://HOST[:PORT]/EXPORT      an NBD export holding the verity image
//   verity.usr=nfs://HOST[:PORT]/PATH/FILE   a verity image file on an NFSv4 export
//   mount.usr=HOST:/EXPORT (mount.usrfstype=nfs4), mount.usr=nfs4:HOST:/EXPORT
//                                            a plain NFSv4 /usr (rd.usr.insecure=1 only)
//
// HOST is a DNS name or an IPv4 address; the network step's resolver turns a
// name into an address.
import { ParamError } from "../param-error.ts";

export const NBD_DEFAULT_PORT = 10809;
export const NFS_DEFAULT_PORT = 2049;

export type NetworkUsr =
  | { kind: "nbd"; host: string; port: number; exportName: string }
  /** `dir` is the path mounted (the file's directory), `file` the image's name in it. */
  | { kind: "nfs"; host: string; port: number; dir: string; file: string };

/** A plain NFS /usr (mount.usr=). */
export interface NfsExport {
  kind: "nfs-export";
  host: string;
  path: string;
  /** Written as nfs4:HOST:/EXPORT (which names the type itself). */
  typed: boolean;
}

export const NBD_URL_EXPECTED = "nbd://HOST[:PORT]/EXPORT with a host name or IPv4 address and a non-empty export name";
export const NFS_URL_EXPECTED = "nfs://HOST[:PORT]/PATH/FILE with a host name or IPv4 address and the path of the image file on the export";
export const NFS_EXPORT_EXPECTED = "HOST:/EXPORT (with mount.usrfstype=nfs4) or nfs4:HOST:/EXPORT, with a host name or IPv4 address and an absolute path";

// A DNS name (letters, digits, '-', '_', dots) or an IPv4 address; IPv6
// literals are not taken (the network step brings up IPv4 only).
const HOST_RE = /^[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,251}[A-Za-z0-9_])?$/;
const CONTROL_OR_BLANK_RE = /[\s\u0000-\u001f\u007f-\u009f\\]/;
// What a decoded path may not hold: controls, and the bidirectional and
// line-separator characters that could make a log line lie about itself.
const UNSHOWABLE_RE = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

/** A DNS name, or an IPv4 address whose four parts are 0 to 255 (a dotted quad is never taken for a name). */
function isHost(text: string): boolean {
  if (/^[0-9.]+$/.test(text)) return /^(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$/.test(text);
  return HOST_RE.test(text);
}
const PATH_MAX = 1024;

export function isNetworkUsrUrl(text: string): boolean {
  return /^(?:nbd|nfs):\/\//i.test(text);
}

/** host[:port]: the port 1 to 65535, written without leading zeros or sign. */
function hostPort(param: string, value: string, authority: string, defaultPort: number, expected: string): { host: string; port: number } {
  const m = /^([^:]*)(?::([0-9]{1,5}))?$/.exec(authority);
  if (!m || !isHost(m[1]!)) throw new ParamError(param, value, expected);
  const port = m[2] === undefined ? defaultPort : Number(m[2]);
  if (port < 1 || port > 65535 || (m[2] !== undefined && m[2].startsWith("0"))) throw new ParamError(param, value, `${expected} (the port is 1 to 65535)`);
  return { host: m[1]!.toLowerCase(), port };
}

/** Decodes %-escapes; a bad escape or a control character after decoding is an error. */
function decodePath(param: string, value: string, raw: string, expected: string): string {
  if (/%(?![0-9A-Fa-f]{2})/.test(raw)) throw new ParamError(param, value, expected);
  let text: string;
  try {
    text = decodeURIComponent(raw);
  } catch {
    throw new ParamError(param, value, expected);
  }
  if (UNSHOWABLE_RE.test(text)) throw new ParamError(param, value, expected);
  return text;
}

/** verity.usr= with nbd:// or nfs://. */
export function parseNetworkUsr(param: string, value: string): NetworkUsr {
  if (CONTROL_OR_BLANK_RE.test(value) || value.includes("?") || value.includes("#") || value.includes("@")) {
    throw new ParamError(param, value, `${value.toLowerCase().startsWith("nfs") ? NFS_URL_EXPECTED : NBD_URL_EXPECTED}, without user, query or fragment`);
  }
  const m = /^(nbd|nfs):\/\/([^/]*)(\/.*)?$/i.exec(value);
  if (!m) throw new ParamError(param, value, `${NBD_URL_EXPECTED}, or ${NFS_URL_EXPECTED}`);
  const scheme = m[1]!.toLowerCase();
  const rest = m[3] ?? "";
  if (scheme === "nbd") {
    const { host, port } = hostPort(param, value, m[2]!, NBD_DEFAULT_PORT, NBD_URL_EXPECTED);
    // The export name is everything after the first '/', as nbd-client's URI form has it.
    const exportName = decodePath(param, value, rest.slice(1), NBD_URL_EXPECTED);
    if (exportName === "" || new TextEncoder().encode(exportName).length > 4096) throw new ParamError(param, value, NBD_URL_EXPECTED);
    return { kind: "nbd", host, port, exportName };
  }
  const { host, port } = hostPort(param, value, m[2]!, NFS_DEFAULT_PORT, NFS_URL_EXPECTED);
  const path = decodePath(param, value, rest, NFS_URL_EXPECTED);
  const parts = path.split("/").slice(1);
  if (path.length > PATH_MAX || parts.length === 0 || parts.some((p) => p === "" || p === "." || p === "..")) throw new ParamError(param, value, NFS_URL_EXPECTED);
  const file = parts.pop()!;
  return { kind: "nfs", host, port, dir: "/" + parts.join("/"), file };
}

/** The command-line spelling, for messages (parseNetworkUsr reads it back). */
export function formatNetworkUsr(n: NetworkUsr): string {
  const path = (s: string) => s.split("/").map(encodeURIComponent).join("/");
  if (n.kind === "nbd") return `nbd://${n.host}${n.port === NBD_DEFAULT_PORT ? "" : `:${n.port}`}/${path(n.exportName)}`;
  return `nfs://${n.host}${n.port === NFS_DEFAULT_PORT ? "" : `:${n.port}`}${path(n.dir === "/" ? "" : n.dir)}/${path(n.file)}`;
}

/** Whether mount.usr= names an NFS export rather than a device: nfs4:… or HOST:/…. */
export function isNfsExportRef(text: string): boolean {
  // HOST:/PATH, but not a URL's scheme://.
  return /^nfs4?:/i.test(text) || /^[^/=:]+:\/(?!\/)/.test(text);
}

/** mount.usr=HOST:/EXPORT or nfs4:HOST:/EXPORT (nfs: too, which dracut also takes). */
export function parseNfsExport(param: string, value: string): NfsExport {
  const typedMatch = /^nfs4?:(.*)$/i.exec(value);
  const rest = typedMatch ? typedMatch[1]! : value;
  const m = /^([^:/]+):(\/.*)$/.exec(rest);
  if (!m || !isHost(m[1]!) || CONTROL_OR_BLANK_RE.test(m[2]!) || UNSHOWABLE_RE.test(m[2]!) || m[2]!.length > PATH_MAX) throw new ParamError(param, value, NFS_EXPORT_EXPECTED);
  if (m[2]!.split("/").some((p) => p === "." || p === "..")) throw new ParamError(param, value, NFS_EXPORT_EXPECTED);
  return { kind: "nfs-export", host: m[1]!.toLowerCase(), path: m[2]!, typed: typedMatch !== null };
}

export function formatNfsExport(e: NfsExport): string {
  return `${e.typed ? "nfs4:" : ""}${e.host}:${e.path}`;
}
