// A TFTP read (RFC 1350) over Bun's UDP socket, with blksize, tsize and
// windowsize (RFC 2347/2348/2349/7440), as a byte source of the /usr fetch.
// Every wait is bounded: a packet that does not come is asked for again a
// few times (the request, or the last ACK), then the transfer fails with a
// retryable FetchError naming what timed out; the engine decides whether
// to try again. TFTP cannot start at an offset, so a retry reads from byte
// 0 again and the engine skips what it already verified.
import { isIP } from "node:net";
import { lookup } from "node:dns/promises";
import { FetchError, redactUrl, type OpenedSource } from "./sources.ts";
import {
  decodePacket,
  encodeAck,
  encodeError,
  encodeRrq,
  ERR_ACCESS,
  ERR_NOT_FOUND,
  ERR_OPTIONS,
  ERR_UNKNOWN_TID,
  negotiate,
  parseTftpUrl,
  requestOptions,
  TftpError,
  type Negotiated,
  type TftpPacket,
  type TftpRequest,
} from "./tftp.ts";

export interface TftpOptions {
  /** Wait for one packet before sending the last one again. */
  timeoutMs: number;
  /** Sends of the same packet before giving up (the first one included). */
  tries: number;
  request: TftpRequest;
}

export const DEFAULT_TFTP: TftpOptions = {
  timeoutMs: 1000,
  tries: 5,
  // 1468 bytes of data + 4 of TFTP + 8 of UDP + 20 of IPv4 = 1500, the usual MTU.
  request: { blksize: 1468, windowsize: 16, tsize: true },
};

/** Bytes handed to the consumer at once (the blocks of a window are gathered). */
const BATCH = 64 * 1024;

interface Datagram {
  packet: Uint8Array;
  port: number;
  address: string;
}

/** Opens tftp://host[:port]/path; `offset` bytes (already verified) come again and are to be skipped. */
export async function openTftp(url: string, offset: number, signal?: AbortSignal, options: TftpOptions = DEFAULT_TFTP): Promise<OpenedSource> {
  let target: ReturnType<typeof parseTftpUrl>;
  try {
    target = parseTftpUrl(url);
  } catch (e) {
    throw new FetchError((e as Error).message, false);
  }
  if (signal?.aborted) throw new FetchError("aborted", false);
  let address = target.host;
  if (isIP(address) === 0) {
    try {
      address = (await lookup(target.host, { family: 4 })).address;
    } catch (e) {
      throw new FetchError(`TFTP server ${target.host}: cannot resolve the name (${(e as Error).message})`, true);
    }
  }
  const where = `TFTP ${target.host}:${target.port}`;

  // Datagrams from the server's address wait here until the loop takes them.
  const queue: Datagram[] = [];
  let wake: (() => void) | null = null;
  let closed = false;
  const v6 = isIP(address) === 6;
  const socket = await Bun.udpSocket({
    hostname: v6 ? "::" : "0.0.0.0",
    port: 0,
    binaryType: "uint8array",
    socket: {
      data(_s, data, port, from) {
        // Anything not from the server's host is not part of this transfer.
        if (from !== address || closed) return;
        // A window is at most 65535 blocks; bound the queue well below that anyway.
        if (queue.length < 4096) queue.push({ packet: new Uint8Array(data), port, address: from });
        wake?.();
      },
      // An ICMP "port unreachable" for an earlier send (a server that has
      // already closed its TID, or none listening): the timeouts decide.
      error() {},
    },
  });
  const close = () => {
    if (closed) return;
    closed = true;
    socket.close();
    wake?.();
  };
  const onAbort = () => close();
  signal?.addEventListener("abort", onAbort, { once: true });

  /** The next datagram, or null after timeoutMs (or once closed). */
  const receive = async (): Promise<Datagram | null> => {
    if (queue.length > 0) return queue.shift()!;
    if (closed) return null;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, options.timeoutMs);
      function done() {
        clearTimeout(timer);
        wake = null;
        resolve();
      }
      wake = done;
    });
    return queue.shift() ?? null;
  };

  const req = options.request;
  let withOptions = requestOptions(req).length > 0;
  let rrq: Uint8Array;
  try {
    rrq = encodeRrq(target.filename, withOptions ? requestOptions(req) : []);
  } catch (e) {
    close();
    throw new FetchError(`rd.usr.url=${redactUrl(url)}: ${(e as Error).message}`, false);
  }
  const send = (packet: Uint8Array, port: number) => {
    if (!closed) socket.send(packet, port, address);
  };

  // The server answers from a new port, its transfer ID (TID); from then on
  // only that port belongs to the transfer.
  let tid: number | null = null;
  let last: Uint8Array = rrq;
  let lastPort = target.port;
  let tries = 0;
  send(rrq, target.port);

  /**
   * The next packet of this transfer: packets from other ports are refused
   * with ERROR 5 (RFC 1350) and skipped, malformed ones fail the transfer,
   * a silence resends the last packet until `tries` sends are used up.
   */
  const next = async (waitingFor: string): Promise<TftpPacket> => {
    for (;;) {
      const d = await receive();
      if (closed) throw new FetchError("aborted", false);
      if (d === null) {
        if (++tries >= options.tries) {
          throw new FetchError(`${where}: timed out waiting for ${waitingFor} (${options.tries} sends, ${options.timeoutMs / 1000} s apart)`, true);
        }
        send(last, lastPort);
        continue;
      }
      if (tid !== null && d.port !== tid) {
        send(encodeError(ERR_UNKNOWN_TID, "unknown transfer ID"), d.port);
        continue;
      }
      let p: TftpPacket;
      try {
        p = decodePacket(d.packet);
      } catch (e) {
        const err = e as TftpError;
        send(encodeError(err.code, err.message.slice(0, 100)), d.port);
        throw new FetchError(`${where}: ${err.message}`, false);
      }
      if (tid === null) {
        if (p.op !== "OACK" && p.op !== "DATA" && p.op !== "ERROR") {
          send(encodeError(4, "expected OACK, DATA or ERROR"), d.port);
          continue;
        }
        tid = d.port;
      }
      tries = 0;
      return p;
    }
  };

  const sendAndRemember = (packet: Uint8Array) => {
    last = packet;
    lastPort = tid!;
    tries = 0;
    send(packet, tid!);
  };

  const fail = (message: string, retryable: boolean, code?: number): never => {
    if (code !== undefined && tid !== null) send(encodeError(code, message.slice(0, 100)), tid);
    throw new FetchError(`${where}: ${message}`, retryable);
  };

  const serverError = (p: { code: number; message: string }): never => {
    // A missing file or a refusal stays so; "too many sessions" and the like may pass.
    const final = p.code === ERR_NOT_FOUND || p.code === ERR_ACCESS;
    return fail(`the server answered ERROR ${p.code} for ${JSON.stringify(target.filename)}: ${p.message || "(no message)"}`, !final);
  };

  // Negotiation: an OACK, or DATA 1 from a server that ignores options.
  let neg: Negotiated;
  let first: Extract<TftpPacket, { op: "DATA" }> | null = null;
  try {
    for (;;) {
      const p = await next(`an answer to the read request for ${JSON.stringify(target.filename)}`);
      if (p.op === "ERROR") {
        // RFC 2347: a server may refuse the options; ask once more without them.
        if (p.code === ERR_OPTIONS && withOptions) {
          withOptions = false;
          tid = null;
          last = rrq = encodeRrq(target.filename, []);
          lastPort = target.port;
          tries = 0;
          send(rrq, target.port);
          continue;
        }
        serverError(p);
      }
      if (p.op === "OACK") {
        if (!withOptions) fail("the server sent an OACK to a request without options", false, ERR_OPTIONS);
        try {
          neg = negotiate(req, p.options);
        } catch (e) {
          const err = e as TftpError;
          fail(err.message, false, err.code);
        }
        sendAndRemember(encodeAck(0));
        break;
      }
      if (p.op === "DATA") {
        neg = negotiate(req, null);
        first = p;
        break;
      }
      fail(`unexpected ${p.op} packet in answer to the read request`, false, 4);
    }
  } catch (e) {
    signal?.removeEventListener("abort", onAbort);
    close();
    throw e;
  }
  const { blksize, windowsize, tsize } = neg!;

  async function* chunks(): AsyncGenerator<Uint8Array> {
    let expected = 1;
    // After block 65535 most servers go on with 0, some with 1: whichever comes first is taken.
    let wrapTo: 0 | 1 | null = null;
    let lastGood = 0;
    let sinceAck = 0;
    let gapAcked = false;
    let received = 0;
    let batch: Uint8Array[] = [];
    let batched = 0;
    const successor = (n: number): number => (n === 0xffff ? (wrapTo ?? 0) : n + 1);
    try {
      let pending: TftpPacket | null = first;
      for (;;) {
        const p: TftpPacket = pending ?? (await next(`data block ${expected} (after ${received} bytes)`));
        pending = null;
        if (p.op === "ERROR") serverError(p);
        if (p.op === "OACK") {
          // Our ACK 0 was lost and the server repeats its OACK.
          if (lastGood === 0 && received === 0) sendAndRemember(encodeAck(0));
          continue;
        }
        if (p.op !== "DATA") fail(`unexpected ${p.op} packet during the transfer`, false, 4);
        const d = p as Extract<TftpPacket, { op: "DATA" }>;
        let inOrder = d.block === expected;
        if (!inOrder && lastGood === 0xffff && wrapTo === null && (d.block === 0 || d.block === 1)) {
          wrapTo = d.block as 0 | 1;
          inOrder = true;
        }
        if (!inOrder) {
          // A gap (a block was lost) or a repeat (our ACK was lost): say
          // where we are, once until the next block in order comes (RFC
          // 7440), and the server goes on from there. The last block
          // itself coming again is always answered: a window-1 server
          // resends it until its ACK arrives.
          if (!gapAcked || d.block === lastGood) {
            gapAcked = true;
            sinceAck = 0;
            sendAndRemember(encodeAck(lastGood));
          }
          continue;
        }
        gapAcked = false;
        if (d.data.length > blksize) fail(`data block ${d.block} has ${d.data.length} bytes, more than the block size ${blksize}`, false, 4);
        received += d.data.length;
        if (tsize !== null && received > tsize) fail(`the server sent more than the ${tsize} bytes it announced (tsize)`, false, 3);
        lastGood = d.block;
        expected = successor(d.block);
        sinceAck++;
        const final = d.data.length < blksize;
        if (final || sinceAck >= windowsize) {
          sinceAck = 0;
          sendAndRemember(encodeAck(lastGood));
        }
        if (d.data.length > 0) {
          batch.push(d.data);
          batched += d.data.length;
        }
        if (final || batched >= BATCH) {
          const out = batch.length === 1 ? batch[0]! : Buffer.concat(batch);
          batch = [];
          batched = 0;
          if (out.length > 0) yield out;
        }
        if (final) return;
      }
    } finally {
      signal?.removeEventListener("abort", onAbort);
      close();
    }
  }

  return {
    total: tsize,
    skip: offset,
    skipReason: offset > 0 ? "TFTP cannot start at an offset: the transfer starts again from byte 0" : undefined,
    note: `${where}: ${first ? "no option acknowledgement (RFC 1350 transfer)" : "options acknowledged"}: blksize ${blksize}, windowsize ${windowsize}, tsize ${tsize ?? "unknown"}`,
    chunks: chunks(),
    async close() {
      signal?.removeEventListener("abort", onAbort);
      close();
    },
  };
}
