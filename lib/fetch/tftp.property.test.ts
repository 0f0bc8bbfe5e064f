// Seeded property test: the TFTP decoder and the option negotiation against
// hostile packets (truncated, bad opcodes, unterminated strings, huge, zero
// and non-numeric option values, options nobody asked for). Whatever comes,
// the answer is a packet or a TftpError, in bounded time; a decoded packet
// encodes back to the same bytes where the encoding is canonical.
import { expect, test } from "bun:test";
import { Gen } from "../testing/prng.ts";
import { decodePacket, encodeAck, encodeData, encodeOack, encodeRrq, negotiate, requestOptions, TftpError, type TftpRequest } from "./tftp.ts";

const SEED = Number(process.env.TFTP_SEED ?? 0x7f7b) >>> 0;
const RUNS = 20_000;
const REQ: TftpRequest = { blksize: 1468, windowsize: 16, tsize: true };

const NAMES = ["blksize", "BLKSIZE", "tsize", "windowsize", "timeout", "multicast", "", "x", "blksize\u00ff", "utimeout"];
function value(g: Gen): string {
  return g.pick([
    () => String(g.int(70000)),
    () => "0",
    () => "",
    () => "-1",
    () => "1e3",
    () => " 8",
    () => "9".repeat(1 + g.int(40)),
    () => String(Number.MAX_SAFE_INTEGER + g.int(3)),
    () => "0x" + g.int(1000).toString(16),
    () => new TextDecoder().decode(g.bytes(g.int(6)).map((b) => b || 1)),
  ])();
}

/** A packet built to be almost right, then perhaps broken. */
function hostile(g: Gen): Uint8Array {
  const shape = g.int(7);
  let p: Uint8Array;
  switch (shape) {
    case 0:
      p = g.bytes(g.int(40));
      break;
    case 1: {
      const pairs: Array<[string, string]> = [];
      for (let i = g.int(5); i > 0; i--) pairs.push([g.pick(NAMES) || "n", value(g) || "0"]);
      p = encodeOack(pairs);
      break;
    }
    case 2:
      p = encodeData(g.int(65536), g.bytes(g.int(1600)));
      break;
    case 3:
      p = encodeAck(g.int(65536));
      break;
    case 4: {
      const parts = [g.pick(NAMES), value(g), g.pick(NAMES)];
      p = new Uint8Array([0, 6, ...parts.flatMap((s) => [...new TextEncoder().encode(s), 0])]);
      break;
    }
    case 5:
      p = encodeRrq("f" + g.int(100), [[g.pick(NAMES) || "n", value(g) || "1"]]);
      break;
    default:
      p = new Uint8Array([0, g.int(9), ...g.bytes(g.int(30))]);
  }
  // Break it: cut it, flip a byte, drop the last NUL, or append junk.
  const damage = g.int(5);
  if (damage === 0 && p.length > 0) p = p.subarray(0, g.int(p.length));
  if (damage === 1 && p.length > 0) p[g.int(p.length)] = g.int(256);
  if (damage === 2 && p.at(-1) === 0) p = p.subarray(0, p.length - 1);
  if (damage === 3) p = new Uint8Array([...p, ...g.bytes(g.int(10))]);
  return p;
}

test(`decodePacket and negotiate: a result or a TftpError, never another throw (seed ${SEED}, ${RUNS} runs)`, () => {
  const g = new Gen(SEED);
  const started = performance.now();
  const seen = new Set<string>();
  for (let i = 0; i < RUNS; i++) {
    const packet = hostile(g);
    try {
      const p = decodePacket(packet);
      seen.add(p.op);
      if (p.op === "OACK") {
        try {
          const n = negotiate(REQ, p.options);
          // Whatever passed is within what was asked.
          expect(n.blksize).toBeGreaterThanOrEqual(8);
          expect(n.blksize).toBeLessThanOrEqual(REQ.blksize);
          expect(n.windowsize).toBeGreaterThanOrEqual(1);
          expect(n.windowsize).toBeLessThanOrEqual(REQ.windowsize);
          if (n.tsize !== null) expect(Number.isSafeInteger(n.tsize) && n.tsize >= 0).toBe(true);
          for (const name of p.options.keys()) expect(requestOptions(REQ).map(([k]) => k)).toContain(name);
          seen.add("negotiated");
        } catch (e) {
          if (!(e instanceof TftpError)) throw new Error(`seed ${SEED} run ${i}: negotiate threw ${e} for ${[...packet]}`);
          expect(e.code).toBe(8);
          seen.add("refused-oack");
        }
      }
      if (p.op === "DATA") expect(encodeData(p.block, p.data)).toEqual(packet);
      if (p.op === "ACK") expect(encodeAck(p.block)).toEqual(packet);
    } catch (e) {
      if (!(e instanceof TftpError)) throw new Error(`seed ${SEED} run ${i}: decodePacket threw ${e} for ${[...packet]}`);
      expect(e.message.length).toBeGreaterThan(0);
      seen.add("error");
    }
  }
  // The generator reaches every outcome, or the test would prove little.
  for (const o of ["DATA", "ACK", "ERROR", "OACK", "RRQ", "negotiated", "refused-oack", "error"]) expect(seen).toContain(o);
  expect(performance.now() - started).toBeLessThan(20_000);
});
