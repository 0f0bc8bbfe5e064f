// Scripted NBD servers for the handshake's tests: the bytes a server sends,
// built from the protocol's parts, and a transport that plays them back.
import { IHAVEOPT, INFO, NBDMAGIC, OPT, REPLY_MAGIC, TransportClosed, type Transport } from "../netusr/nbd-protocol.ts";

/** A transport over a script of server bytes; what the client wrote is kept. */
export function scripted(server: Uint8Array): Transport & { written: Uint8Array[] } {
  let off = 0;
  const written: Uint8Array[] = [];
  return {
    written,
    async read(n) {
      if (off + n > server.length) throw new TransportClosed(`closed after ${server.length - off} of ${n} bytes`);
      const b = server.subarray(off, off + n);
      off += n;
      return b;
    },
    async write(b) {
      written.push(b.slice());
    },
  };
}

export function be(bytes: number, n: number | bigint): Uint8Array {
  const b = new Uint8Array(bytes);
  const v = new DataView(b.buffer);
  if (bytes === 2) v.setUint16(0, Number(n), false);
  else if (bytes === 4) v.setUint32(0, Number(n), false);
  else v.setBigUint64(0, BigInt(n), false);
  return b;
}
export function cat(...parts: Uint8Array[]): Uint8Array {
  return new Uint8Array(parts.flatMap((p) => [...p]));
}
export const greeting = (flags = 3) => cat(be(8, NBDMAGIC), be(8, IHAVEOPT), be(2, flags));
export const reply = (type: number, data: Uint8Array, option: number = OPT.GO) => cat(be(8, REPLY_MAGIC), be(4, option), be(4, type), be(4, data.length), data);
export const infoExport = (size: bigint, flags: number) => cat(be(2, INFO.EXPORT), be(8, size), be(2, flags));

