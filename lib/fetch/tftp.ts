// TFTP packets (RFC 1350) with option negotiation (RFC 2347: blksize 2348,
// tsize 2349, windowsize 7440), and the tftp:// URL form (RFC 3617).
// Encoding, decoding and negotiation only, free of effects: the transfer
// loop over a UDP socket is in tftp-client.ts. Every malformed input is a
// TftpError, never another exception.

import { redactUrl } from "../redact.ts";
import { escapeControls, showValue } from "../text.ts";

export class TftpError extends Error {
  constructor(
    message: string,
    /** The TFTP error code to send back to the peer, when one fits (RFC 1350, 2347). */
    readonly code = 0,
  ) {
    super(message);
    this.name = "TftpError";
  }
}

export const OP_RRQ = 1;
export const OP_WRQ = 2;
export const OP_DATA = 3;
export const OP_ACK = 4;
export const OP_ERROR = 5;
export const OP_OACK = 6;

/** Error codes (RFC 1350 section 5, RFC 2347). */
export const ERR_UNDEFINED = 0;
export const ERR_NOT_FOUND = 1;
export const ERR_ACCESS = 2;
export const ERR_ILLEGAL = 4;
export const ERR_UNKNOWN_TID = 5;
export const ERR_OPTIONS = 8;

/** The block size without options (RFC 1350), and the bounds of RFC 2348. */
export const DEFAULT_BLKSIZE = 512;
export const MIN_BLKSIZE = 8;
export const MAX_BLKSIZE = 65464;
/** RFC 7440's bounds. */
export const MAX_WINDOWSIZE = 65535;

export type TftpPacket =
  | { op: "RRQ"; filename: string; mode: string; options: Map<string, string> }
  | { op: "DATA"; block: number; data: Uint8Array }
  | { op: "ACK"; block: number }
  | { op: "ERROR"; code: number; message: string }
  | { op: "OACK"; options: Map<string, string> };

const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: false });

function u16(op: number, n: number): Uint8Array {
  return new Uint8Array([op >> 8, op & 0xff, (n >> 8) & 0xff, n & 0xff]);
}

function strings(op: number, parts: string[]): Uint8Array {
  const bytes = parts.map((p) => enc.encode(p));
  const out = new Uint8Array(2 + bytes.reduce((n, b) => n + b.length + 1, 0));
  out[1] = op;
  let at = 2;
  for (const b of bytes) {
    out.set(b, at);
    at += b.length + 1; // the NUL is already there
  }
  return out;
}

function checkBlock(block: number): void {
  if (!Number.isInteger(block) || block < 0 || block > 0xffff) throw new TftpError(`block number ${block} is not 0-65535`);
}

/** A read request in octet mode with the given options (name, value) in order. */
export function encodeRrq(filename: string, options: ReadonlyArray<readonly [string, string]> = []): Uint8Array {
  for (const s of [filename, ...options.flat()]) {
    if (s === "" || s.includes("\0")) throw new TftpError(`a read request field may be neither empty nor contain NUL: ${JSON.stringify(s.slice(0, 80))}`);
  }
  const packet = strings(OP_RRQ, [filename, "octet", ...options.flat()]);
  // RFC 2347: the request must fit in 512 bytes.
  if (packet.length > 512) throw new TftpError(`the read request is ${packet.length} bytes, more than the 512 a TFTP request may have (the file name is too long)`);
  return packet;
}

export function encodeAck(block: number): Uint8Array {
  checkBlock(block);
  return u16(OP_ACK, block);
}

export function encodeData(block: number, data: Uint8Array): Uint8Array {
  checkBlock(block);
  const out = new Uint8Array(4 + data.length);
  out.set(u16(OP_DATA, block));
  out.set(data, 4);
  return out;
}

export function encodeError(code: number, message: string): Uint8Array {
  const msg = enc.encode(message.replaceAll("\0", " "));
  const packet = new Uint8Array(4 + msg.length + 1);
  packet.set(u16(OP_ERROR, code & 0xffff));
  packet.set(msg, 4);
  return packet;
}

export function encodeOack(options: ReadonlyArray<readonly [string, string]>): Uint8Array {
  return strings(OP_OACK, options.flat());
}

/** NUL-terminated strings from `at` to the end; every one must be terminated. */
function readStrings(buf: Uint8Array, at: number, what: string): string[] {
  const out: string[] = [];
  while (at < buf.length) {
    const nul = buf.indexOf(0, at);
    if (nul < 0) throw new TftpError(`${what}: a string without its terminating NUL`, ERR_ILLEGAL);
    out.push(dec.decode(buf.subarray(at, nul)));
    at = nul + 1;
  }
  return out;
}

function optionMap(pairs: string[], what: string): Map<string, string> {
  if (pairs.length % 2 !== 0) throw new TftpError(`${what}: option "${showValue(pairs.at(-1)!)}" has no value`, ERR_OPTIONS);
  const map = new Map<string, string>();
  for (let i = 0; i < pairs.length; i += 2) {
    const name = pairs[i]!.toLowerCase();
    if (name === "") throw new TftpError(`${what}: an option with an empty name`, ERR_OPTIONS);
    if (map.has(name)) throw new TftpError(`${what}: option "${showValue(name)}" given twice`, ERR_OPTIONS);
    map.set(name, pairs[i + 1]!);
  }
  return map;
}

/** One packet as received; anything malformed is a TftpError. */
export function decodePacket(buf: Uint8Array): TftpPacket {
  if (buf.length < 2) throw new TftpError(`a ${buf.length}-byte packet is too short for a TFTP opcode`, ERR_ILLEGAL);
  const op = (buf[0]! << 8) | buf[1]!;
  const need = (n: number, name: string) => {
    if (buf.length < n) throw new TftpError(`a ${buf.length}-byte ${name} packet is too short (at least ${n})`, ERR_ILLEGAL);
  };
  switch (op) {
    case OP_RRQ: {
      const parts = readStrings(buf, 2, "RRQ");
      if (parts.length < 2) throw new TftpError("RRQ: no file name and mode", ERR_ILLEGAL);
      return { op: "RRQ", filename: parts[0]!, mode: parts[1]!.toLowerCase(), options: optionMap(parts.slice(2), "RRQ") };
    }
    case OP_DATA:
      need(4, "DATA");
      return { op: "DATA", block: (buf[2]! << 8) | buf[3]!, data: buf.subarray(4) };
    case OP_ACK:
      need(4, "ACK");
      if (buf.length !== 4) throw new TftpError(`a ${buf.length}-byte ACK packet (ACKs are 4 bytes)`, ERR_ILLEGAL);
      return { op: "ACK", block: (buf[2]! << 8) | buf[3]! };
    case OP_ERROR: {
      need(4, "ERROR");
      // A missing NUL after the message is tolerated: the error is what matters.
      const end = buf.indexOf(0, 4);
      // The server's words reach the console: escaped (control characters, bidirectional overrides).
      const message = escapeControls(dec.decode(buf.subarray(4, end < 0 ? buf.length : end)).slice(0, 200));
      return { op: "ERROR", code: (buf[2]! << 8) | buf[3]!, message };
    }
    case OP_OACK:
      return { op: "OACK", options: optionMap(readStrings(buf, 2, "OACK"), "OACK") };
    default:
      throw new TftpError(`unknown TFTP opcode ${op}`, ERR_ILLEGAL);
  }
}

/** What the client asks for. */
export interface TftpRequest {
  blksize: number;
  windowsize: number;
  /** Ask for the transfer size (tsize 0). */
  tsize: boolean;
}

export interface Negotiated {
  blksize: number;
  windowsize: number;
  /** The size the server announced, or null. */
  tsize: number | null;
}

export function requestOptions(req: TftpRequest): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  if (req.blksize !== DEFAULT_BLKSIZE) out.push(["blksize", String(req.blksize)]);
  if (req.tsize) out.push(["tsize", "0"]);
  if (req.windowsize !== 1) out.push(["windowsize", String(req.windowsize)]);
  return out;
}

function number(name: string, value: string, min: number, max: number): number {
  if (!/^\d{1,16}$/.test(value)) throw new TftpError(`the server's OACK gives ${name} "${showValue(value)}": not a number`, ERR_OPTIONS);
  const n = Number(value);
  if (n < min || n > max) throw new TftpError(`the server's OACK gives ${name} ${value}: expected ${min} to ${max}`, ERR_OPTIONS);
  return n;
}

/**
 * The options in force: without an OACK (null) those of RFC 1350. An OACK
 * may only lower what was asked (blksize, windowsize) and may not name an
 * option the client did not send (RFC 2347): either is a TftpError with
 * code 8, which the client sends back before giving up.
 */
export function negotiate(req: TftpRequest, oack: Map<string, string> | null): Negotiated {
  const result: Negotiated = { blksize: DEFAULT_BLKSIZE, windowsize: 1, tsize: null };
  if (oack === null) return result;
  const asked = new Set(requestOptions(req).map(([n]) => n));
  for (const [name, value] of oack) {
    if (!asked.has(name)) throw new TftpError(`the server's OACK names option "${showValue(name)}", which was not requested`, ERR_OPTIONS);
    switch (name) {
      case "blksize":
        result.blksize = number(name, value, MIN_BLKSIZE, req.blksize);
        break;
      case "windowsize":
        result.windowsize = number(name, value, 1, req.windowsize);
        break;
      case "tsize":
        result.tsize = number(name, value, 0, Number.MAX_SAFE_INTEGER);
        break;
    }
  }
  return result;
}

export interface TftpTarget {
  host: string;
  port: number;
  /** The file name sent in the read request. */
  filename: string;
}

/**
 * tftp://HOST[:PORT]/PATH: the file name is PATH %-decoded, without the one
 * "/" that separates it from the host (RFC 3617, and what iPXE sends), so
 * tftp://h/usr.squashfs asks for "usr.squashfs" and tftp://h//srv/x for
 * "/srv/x". No user, password, query or fragment. Errors name rd.usr.url=.
 */
export function parseTftpUrl(url: string): TftpTarget {
  const bad = (why: string): never => {
    throw new TftpError(`rd.usr.url=${redactUrl(url).slice(0, 300)}: ${why}`);
  };
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return bad("not a valid URL");
  }
  if (u.protocol !== "tftp:") bad("not a tftp:// URL");
  if (u.username !== "" || u.password !== "") bad("a tftp URL has no user or password (TFTP has no authentication)");
  if (url.includes("?") || url.includes("#")) bad("a tftp URL has no ?query or #fragment (write ? as %3F and # as %23)");
  const host = u.hostname.replace(/^\[|\]$/g, "");
  if (host === "") bad("a tftp URL needs a host: tftp://host[:port]/path");
  const port = u.port === "" ? 69 : Number(u.port);
  if (!Number.isInteger(port) || port < 1 || port > 65535) bad("the port must be 1 to 65535");
  let filename: string;
  try {
    filename = decodeURIComponent(u.pathname.replace(/^\//, ""));
  } catch {
    return bad("the path has a %-escape that does not decode to UTF-8");
  }
  if (filename === "") bad("a tftp URL needs a file: tftp://host[:port]/path");
  if (/[\u0000-\u001f\u007f-\u009f]/.test(filename)) bad("the path decodes to control characters");
  if (/;mode=/i.test(filename)) bad("TFTP transfers are always in octet mode: drop the ;mode= suffix");
  return { host, port, filename };
}
