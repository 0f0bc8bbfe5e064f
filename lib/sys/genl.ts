// Generic netlink messages (the kernel's include/uapi/linux/netlink.h and
// genetlink.h), pure: the requests the init sends to resolve a family and to
// give the NBD driver a connected socket, and the decoding of the replies.
// lib/sys/index.ts writes and reads them on an AF_NETLINK socket.
//
// Why our own: the only users are two requests of the NBD attach
// (lib/netusr/nbd.ts); libnl, which nbd-client uses for them, would add
// ~400 KiB of libraries and a program to the initrd for what is below.
//
// A message is struct nlmsghdr (16 bytes: len, type, flags, seq, pid), then
// struct genlmsghdr (4 bytes: cmd, version, reserved), then attributes: each
// struct nlattr (4 bytes: len, type) and its payload, padded to 4 bytes.
// Integers are in host order, little-endian on the architectures the init
// runs on.

export const NLMSG_HDRLEN = 16;
export const GENL_HDRLEN = 4;
export const NLA_HDRLEN = 4;

export const NLM_F = { REQUEST: 0x1, MULTI: 0x2, ACK: 0x4 } as const;
export const NLMSG = { NOOP: 1, ERROR: 2, DONE: 3 } as const;

/** The controller family, with which the id of a family is looked up by name. */
export const GENL_ID_CTRL = 0x10;
export const CTRL_CMD_GETFAMILY = 3;
export const CTRL_ATTR_FAMILY_ID = 1;
export const CTRL_ATTR_FAMILY_NAME = 2;

/** Attributes nest: a nested attribute's payload is a list of attributes. */
export type NlAttr =
  | { type: number; u32: number }
  | { type: number; u64: bigint }
  | { type: number; str: string }
  | { type: number; nested: NlAttr[] };

export const NLA_F_NESTED = 0x8000;
/** The type bits of nla_type, without NLA_F_NESTED and NLA_F_NET_BYTEORDER. */
const NLA_TYPE_MASK = 0x3fff;

function align4(n: number): number {
  return (n + 3) & ~3;
}

function payloadOf(a: NlAttr): Uint8Array {
  if ("u32" in a) {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, a.u32 >>> 0, true);
    return b;
  }
  if ("u64" in a) {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, a.u64), true);
    return b;
  }
  if ("str" in a) return new TextEncoder().encode(a.str + "\0");
  return encodeAttrs(a.nested);
}

export function encodeAttrs(attrs: readonly NlAttr[]): Uint8Array {
  const parts = attrs.map((a) => ({ a, payload: payloadOf(a) }));
  const out = new Uint8Array(parts.reduce((n, p) => n + NLA_HDRLEN + align4(p.payload.length), 0));
  const v = new DataView(out.buffer);
  let off = 0;
  for (const { a, payload } of parts) {
    v.setUint16(off, NLA_HDRLEN + payload.length, true);
    v.setUint16(off + 2, a.type | ("nested" in a ? NLA_F_NESTED : 0), true);
    out.set(payload, off + NLA_HDRLEN);
    off += NLA_HDRLEN + align4(payload.length);
  }
  return out;
}

export interface GenlRequest {
  family: number;
  cmd: number;
  version: number;
  seq: number;
  attrs: readonly NlAttr[];
}

/** A request that asks for an acknowledgement, so that success and failure both answer. */
export function encodeGenlRequest(r: GenlRequest): Uint8Array {
  const attrs = encodeAttrs(r.attrs);
  const out = new Uint8Array(NLMSG_HDRLEN + GENL_HDRLEN + attrs.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, out.length, true);
  v.setUint16(4, r.family, true);
  v.setUint16(6, NLM_F.REQUEST | NLM_F.ACK, true);
  v.setUint32(8, r.seq >>> 0, true);
  v.setUint32(12, 0, true);
  out[NLMSG_HDRLEN] = r.cmd;
  out[NLMSG_HDRLEN + 1] = r.version;
  out.set(attrs, NLMSG_HDRLEN + GENL_HDRLEN);
  return out;
}

export class NetlinkError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "NetlinkError";
  }
}

/** One message of a reply datagram. */
export type NetlinkMessage =
  /** NLMSG_ERROR: errno 0 is the acknowledgement, otherwise the (positive) errno of the failure. */
  | { kind: "error"; seq: number; errno: number }
  | { kind: "done"; seq: number }
  /** A genetlink message: its command and attributes (not yet decoded). */
  | { kind: "genl"; seq: number; type: number; cmd: number; attrs: Uint8Array };

/**
 * The messages of one datagram. A length that runs past the datagram or
 * below a header is an error, never an endless loop or a read out of bounds.
 */
export function decodeNetlinkMessages(buf: Uint8Array): NetlinkMessage[] {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const out: NetlinkMessage[] = [];
  let off = 0;
  while (off + NLMSG_HDRLEN <= buf.length) {
    const len = v.getUint32(off, true);
    if (len < NLMSG_HDRLEN || off + len > buf.length) throw new NetlinkError(`netlink reply: message length ${len} at offset ${off} does not fit the ${buf.length}-byte datagram`);
    const type = v.getUint16(off + 4, true);
    const seq = v.getUint32(off + 8, true);
    if (type === NLMSG.ERROR) {
      if (len < NLMSG_HDRLEN + 4) throw new NetlinkError(`netlink reply: error message of ${len} bytes has no error code`);
      out.push({ kind: "error", seq, errno: Math.abs(v.getInt32(off + NLMSG_HDRLEN, true)) });
    } else if (type === NLMSG.DONE) {
      out.push({ kind: "done", seq });
    } else if (type !== NLMSG.NOOP) {
      if (len < NLMSG_HDRLEN + GENL_HDRLEN) throw new NetlinkError(`netlink reply: message of type ${type} is too short (${len} bytes) for a generic netlink header`);
      out.push({ kind: "genl", seq, type, cmd: buf[off + NLMSG_HDRLEN]!, attrs: buf.subarray(off + NLMSG_HDRLEN + GENL_HDRLEN, off + len) });
    }
    off += align4(len);
  }
  return out;
}

/** The attributes of a list, by type (the last one of a type wins), as payload views. */
export function decodeAttrs(buf: Uint8Array): Map<number, Uint8Array> {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const out = new Map<number, Uint8Array>();
  let off = 0;
  while (off + NLA_HDRLEN <= buf.length) {
    const len = v.getUint16(off, true);
    if (len < NLA_HDRLEN || off + len > buf.length) throw new NetlinkError(`netlink reply: attribute length ${len} at offset ${off} does not fit the ${buf.length}-byte list`);
    out.set(v.getUint16(off + 2, true) & NLA_TYPE_MASK, buf.subarray(off + NLA_HDRLEN, off + len));
    off += align4(len);
  }
  return out;
}

export function attrU16(attrs: Map<number, Uint8Array>, type: number, what: string): number {
  const p = attrs.get(type);
  if (!p || p.length < 2) throw new NetlinkError(`netlink reply: no ${what} (attribute ${type}, 16 bits)`);
  return p[0]! | (p[1]! << 8);
}

export function attrU32(attrs: Map<number, Uint8Array>, type: number, what: string): number {
  const p = attrs.get(type);
  if (!p || p.length < 4) throw new NetlinkError(`netlink reply: no ${what} (attribute ${type}, 32 bits)`);
  return new DataView(p.buffer, p.byteOffset, 4).getUint32(0, true);
}

/** The request that asks the controller for a family's id. */
export function familyRequest(name: string, seq: number): Uint8Array {
  return encodeGenlRequest({ family: GENL_ID_CTRL, cmd: CTRL_CMD_GETFAMILY, version: 1, seq, attrs: [{ type: CTRL_ATTR_FAMILY_NAME, str: name }] });
}

/**
 * What one reply datagram says about request `seq`: its genetlink messages,
 * and whether the kernel has answered it (done), with errno 0 for an
 * acknowledgement and the positive errno of a refusal. Messages of other
 * requests are skipped.
 */
export function replyOf(messages: readonly NetlinkMessage[], seq: number): { done: boolean; errno: number; genl: Array<Extract<NetlinkMessage, { kind: "genl" }>> } {
  const genl: Array<Extract<NetlinkMessage, { kind: "genl" }>> = [];
  for (const m of messages) {
    if (m.seq !== seq) continue;
    if (m.kind === "genl") genl.push(m);
    else if (m.kind === "error") return { done: true, errno: m.errno, genl };
    else return { done: true, errno: 0, genl };
  }
  return { done: false, errno: 0, genl };
}
