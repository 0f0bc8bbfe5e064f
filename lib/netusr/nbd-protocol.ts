// The NBD handshake (the "fixed newstyle" negotiation of the NBD protocol),
// pure: it runs over any transport that reads and writes exact byte counts,
// so the tests drive it with scripted and hostile servers. lib/netusr/nbd.ts
// runs it on a TCP socket and then hands that socket to the kernel, which
// speaks the transmission phase itself.
//
// Why our own: nbd-client would bring GnuTLS and libnl into the initrd (and a
// process per attach) for one option request and its replies. What we need
// is: the greeting, our flags, NBD_OPT_GO for the export (or the old
// NBD_OPT_EXPORT_NAME from a server without it), and the export's size and
// transmission flags.
//
// Everything the server sends is bounded: reply payloads, the number of
// replies, and any text in them (shown escaped).

import { escapeControls } from "../text.ts";

export const NBDMAGIC = 0x4e42444d41474943n; // "NBDMAGIC"
export const IHAVEOPT = 0x49484156454f5054n; // "IHAVEOPT"
export const REPLY_MAGIC = 0x3e889045565a9n;

export const HANDSHAKE_FLAG = { FIXED_NEWSTYLE: 1, NO_ZEROES: 2 } as const;
export const OPT = { EXPORT_NAME: 1, ABORT: 2, GO: 7 } as const;
export const REP = { ACK: 1, SERVER: 2, INFO: 3 } as const;
export const INFO = { EXPORT: 0, NAME: 1, DESCRIPTION: 2, BLOCK_SIZE: 3 } as const;
/** Transmission flags: the ones the kernel reads (NBD_ATTR_SERVER_FLAGS takes them all). */
export const TX_FLAG = { HAS_FLAGS: 1, READ_ONLY: 2, SEND_FLUSH: 4, SEND_FUA: 8, ROTATIONAL: 16, SEND_TRIM: 32, CAN_MULTI_CONN: 256 } as const;

const REP_ERR_BIT = 0x80000000;
const REP_ERRORS: Record<number, string> = {
  1: "the server does not support this option (NBD_REP_ERR_UNSUP)",
  2: "the server's policy forbids this export to this client (NBD_REP_ERR_POLICY)",
  3: "the server found the request invalid (NBD_REP_ERR_INVALID)",
  4: "the server cannot do this on its platform (NBD_REP_ERR_PLATFORM)",
  5: "the server requires TLS, which bunboot does not speak (NBD_REP_ERR_TLS_REQD)",
  6: "the server has no export of that name (NBD_REP_ERR_UNKNOWN)",
  7: "the server is shutting down (NBD_REP_ERR_SHUTDOWN)",
  8: "the server requires block-size negotiation (NBD_REP_ERR_BLOCK_SIZE_REQD)",
  9: "the request is too big for the server (NBD_REP_ERR_TOO_BIG)",
};

/** The longest option reply we read; the largest legitimate one here is a short error text. */
export const MAX_REPLY_BYTES = 4096;
/** How many replies one NBD_OPT_GO may take before the server counts as misbehaving. */
export const MAX_REPLIES = 64;
/** The longest export name the protocol allows (4096 bytes). */
export const MAX_EXPORT_NAME = 4096;

/** A handshake that cannot go on, with what the server did; the caller names the parameter. */
export class NbdHandshakeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "NbdHandshakeError";
  }
}

/**
 * Exact reads and writes; a read that cannot be satisfied throws. A peer
 * that closed the connection is a TransportClosed, so that the handshake can
 * tell "the server hung up" from "the server is slow".
 */
export interface Transport {
  read(n: number): Promise<Uint8Array>;
  write(data: Uint8Array): Promise<void>;
}

export class TransportClosed extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TransportClosed";
  }
}

export interface NbdExport {
  sizeBytes: bigint;
  /** Transmission flags, as the kernel takes them. */
  flags: number;
  /** The server's block-size constraints, when it said them (NBD_INFO_BLOCK_SIZE). */
  blockSizes?: { min: number; preferred: number; max: number };
  /** How it was negotiated, for the log. */
  via: "NBD_OPT_GO" | "NBD_OPT_EXPORT_NAME";
}

function u16(b: Uint8Array, off: number): number {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getUint16(off, false);
}
function u32(b: Uint8Array, off: number): number {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(off, false);
}
function u64(b: Uint8Array, off: number): bigint {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getBigUint64(off, false);
}

/** An option request: IHAVEOPT, the option, its length, its data. */
export function encodeOption(option: number, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(16 + data.length);
  const v = new DataView(out.buffer);
  v.setBigUint64(0, IHAVEOPT, false);
  v.setUint32(8, option, false);
  v.setUint32(12, data.length, false);
  out.set(data, 16);
  return out;
}

/** NBD_OPT_GO's data: the export name and one information request (the block sizes). */
export function encodeGoData(exportName: string): Uint8Array {
  const name = new TextEncoder().encode(exportName);
  const out = new Uint8Array(4 + name.length + 2 + 2);
  const v = new DataView(out.buffer);
  v.setUint32(0, name.length, false);
  out.set(name, 4);
  v.setUint16(4 + name.length, 1, false);
  v.setUint16(6 + name.length, INFO.BLOCK_SIZE, false);
  return out;
}

/** The server's 18-byte greeting: its handshake flags; anything else is not a newstyle NBD server. */
export function parseGreeting(b: Uint8Array): number {
  if (b.length !== 18) throw new NbdHandshakeError(`the greeting is ${b.length} bytes, expected 18`);
  if (u64(b, 0) !== NBDMAGIC) throw new NbdHandshakeError(`the server did not greet with NBDMAGIC (got ${escapeControls(new TextDecoder().decode(b.subarray(0, 8)))}): not an NBD server?`);
  const second = u64(b, 8);
  if (second === 0x00420281861253n) throw new NbdHandshakeError("the server speaks the old-style NBD handshake, which has no export names; configure it for newstyle (nbd-server has done so since 3.10)");
  if (second !== IHAVEOPT) throw new NbdHandshakeError("the server's greeting has no IHAVEOPT: not a newstyle NBD server");
  return u16(b, 16);
}

/** The fixed part of an option reply: which option it answers, its type, its length. */
export function parseReplyHeader(b: Uint8Array): { option: number; type: number; length: number } {
  if (b.length !== 20) throw new NbdHandshakeError(`an option reply header is ${b.length} bytes, expected 20`);
  if (u64(b, 0) !== REPLY_MAGIC) throw new NbdHandshakeError("an option reply does not start with the reply magic");
  return { option: u32(b, 8), type: u32(b, 12), length: u32(b, 16) };
}

export function describeReplyError(type: number, text: Uint8Array): string {
  const known = REP_ERRORS[type & ~REP_ERR_BIT];
  const said = text.length > 0 ? `; it said: "${escapeControls(new TextDecoder().decode(text.subarray(0, 200)))}"` : "";
  return `${known ?? `the server refused it (error reply 0x${(type >>> 0).toString(16)})`}${said}`;
}

/**
 * Negotiates `exportName` and returns its size and flags, leaving the
 * transport at the start of the transmission phase.
 */
export async function negotiate(t: Transport, exportName: string): Promise<NbdExport> {
  const nameBytes = new TextEncoder().encode(exportName).length;
  if (nameBytes === 0 || nameBytes > MAX_EXPORT_NAME) throw new NbdHandshakeError(`the export name must be 1 to ${MAX_EXPORT_NAME} bytes, not ${nameBytes}`);
  const handshake = parseGreeting(await t.read(18));
  const noZeroes = (handshake & HANDSHAKE_FLAG.NO_ZEROES) !== 0;
  const fixed = (handshake & HANDSHAKE_FLAG.FIXED_NEWSTYLE) !== 0;
  const client = new Uint8Array(4);
  new DataView(client.buffer).setUint32(0, (fixed ? HANDSHAKE_FLAG.FIXED_NEWSTYLE : 0) | (noZeroes ? HANDSHAKE_FLAG.NO_ZEROES : 0), false);
  await t.write(client);
  // Without fixed newstyle a server may drop the connection on an option it does not know.
  if (!fixed) return await exportNameOption(t, exportName, noZeroes);
  await t.write(encodeOption(OPT.GO, encodeGoData(exportName)));
  let info: { sizeBytes: bigint; flags: number } | undefined;
  let blockSizes: NbdExport["blockSizes"];
  for (let n = 0; n < MAX_REPLIES; n++) {
    const h = parseReplyHeader(await t.read(20));
    if (h.option !== OPT.GO) throw new NbdHandshakeError(`the server answered option ${h.option}, not NBD_OPT_GO (${OPT.GO})`);
    if (h.length > MAX_REPLY_BYTES) throw new NbdHandshakeError(`an option reply of ${h.length} bytes is longer than the ${MAX_REPLY_BYTES} allowed`);
    const data = h.length > 0 ? await t.read(h.length) : new Uint8Array(0);
    if (h.type & REP_ERR_BIT) {
      // An old server without NBD_OPT_GO: the old option still works.
      if ((h.type & ~REP_ERR_BIT) === 1) return await exportNameOption(t, exportName, noZeroes);
      throw new NbdHandshakeError(describeReplyError(h.type, data));
    }
    if (h.type === REP.ACK) {
      if (!info) throw new NbdHandshakeError("the server acknowledged NBD_OPT_GO without saying the export's size (no NBD_INFO_EXPORT)");
      return checked({ ...info, blockSizes, via: "NBD_OPT_GO" });
    }
    if (h.type !== REP.INFO) continue; // other replies carry nothing we use
    if (data.length < 2) throw new NbdHandshakeError(`an NBD_REP_INFO reply of ${data.length} bytes has no information type`);
    const kind = u16(data, 0);
    if (kind === INFO.EXPORT) {
      if (data.length !== 12) throw new NbdHandshakeError(`NBD_INFO_EXPORT is ${data.length} bytes, expected 12`);
      info = { sizeBytes: u64(data, 2), flags: u16(data, 10) };
    } else if (kind === INFO.BLOCK_SIZE && data.length === 14) {
      blockSizes = { min: u32(data, 2), preferred: u32(data, 6), max: u32(data, 10) };
    }
  }
  throw new NbdHandshakeError(`the server sent more than ${MAX_REPLIES} replies to NBD_OPT_GO without an acknowledgement`);
}

/** The old way in: no reply on failure (the server closes), the size and flags on success. */
async function exportNameOption(t: Transport, exportName: string, noZeroes: boolean): Promise<NbdExport> {
  await t.write(encodeOption(OPT.EXPORT_NAME, new TextEncoder().encode(exportName)));
  let reply: Uint8Array;
  try {
    reply = await t.read(10);
  } catch (e) {
    // A hang-up is this protocol's refusal; a timeout is only a slow server.
    if (e instanceof TransportClosed) throw new NbdHandshakeError(`the server closed the connection after NBD_OPT_EXPORT_NAME: most likely it has no export of that name (${e.message})`);
    throw e;
  }
  if (!noZeroes) await t.read(124);
  return checked({ sizeBytes: u64(reply, 0), flags: u16(reply, 8), via: "NBD_OPT_EXPORT_NAME" });
}

/**
 * An export the kernel can use: not empty, and with transmission flags only
 * when the server says it sends them (NBD_FLAG_HAS_FLAGS; without it the
 * other bits mean nothing).
 */
function checked(e: NbdExport): NbdExport {
  if (e.sizeBytes === 0n) throw new NbdHandshakeError("the export is empty (0 bytes)");
  if (e.sizeBytes % 512n !== 0n) throw new NbdHandshakeError(`the export's size, ${e.sizeBytes} bytes, is not a multiple of 512: not a disk image`);
  return (e.flags & TX_FLAG.HAS_FLAGS) === 0 ? { ...e, flags: 0 } : e;
}

/**
 * The logical block size for the kernel: the server's preferred size, else
 * 4096, else 512, the first that is a power of two from 512 to 4096 (the
 * kernel refuses sizes above the page size), divides the export (another
 * would hide its tail) and lies within the minimum and maximum the server
 * said (asking for NBD_INFO_BLOCK_SIZE binds the client to them).
 */
export function blockSizeFor(e: NbdExport): number {
  const b = e.blockSizes;
  const fits = (n: number) =>
    n >= 512 && n <= 4096 && (n & (n - 1)) === 0 && e.sizeBytes % BigInt(n) === 0n && (b === undefined || (n >= b.min && n <= b.max));
  for (const n of [b?.preferred, 4096, 512]) if (n !== undefined && fits(n)) return n;
  throw new NbdHandshakeError(
    `no block size fits: the server asks for ${b ? `${b.min} to ${b.max} bytes` : "none"}, the kernel takes 512 to 4096, and it must divide the export's ${e.sizeBytes} bytes`,
  );
}
