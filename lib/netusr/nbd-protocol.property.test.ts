// Seeded property test: the NBD handshake against hostile servers (random
// bytes, valid greetings followed by truncated, oversized, mislabelled or
// endless replies). Whatever comes, negotiate() returns an export or throws
// an NbdHandshakeError or the transport's own "closed" error, and reads at
// most a bounded number of bytes.
import { expect, test } from "bun:test";
import { Gen } from "../testing/prng.ts";
import { INFO, MAX_REPLIES, MAX_REPLY_BYTES, NbdHandshakeError, negotiate, OPT, REP, TransportClosed } from "./nbd-protocol.ts";
import { greeting, infoExport, reply, scripted } from "../testing/nbd-script.ts";

const SEED = Number(process.env.NBD_SEED ?? 0x4e4244) >>> 0;
const RUNS = 5_000;

function hostileServer(g: Gen): Uint8Array {
  const parts: Uint8Array[] = [g.chance(0.9) ? greeting(g.int(4)) : g.bytes(g.int(30))];
  for (let i = g.int(MAX_REPLIES + 5); i > 0; i--) {
    const type = g.pick([REP.ACK, REP.INFO, REP.SERVER, 0x80000000 + g.int(12), g.int(1 << 16)]);
    const data = g.pick([
      () => infoExport(BigInt(g.int(1 << 30)) * 512n, g.int(1 << 16)),
      () => g.bytes(g.int(20)),
      () => new Uint8Array([0, INFO.BLOCK_SIZE, ...g.bytes(g.int(16))]),
      () => new Uint8Array(0),
    ])();
    let r = reply(type, data, g.chance(0.95) ? OPT.GO : g.int(10));
    if (g.chance(0.05)) r = r.subarray(0, g.int(r.length));
    if (g.chance(0.03)) new DataView(r.buffer, r.byteOffset).setUint32(16, g.chance(0.5) ? MAX_REPLY_BYTES + 1 + g.int(1 << 20) : 0xffffffff);
    parts.push(r);
  }
  if (g.chance(0.3)) parts.push(g.bytes(g.int(200)));
  return new Uint8Array(parts.flatMap((p) => [...p]));
}

test(`NBD handshake against hostile servers (seed ${SEED}, ${RUNS} runs)`, async () => {
  const g = new Gen(SEED);
  const outcomes = { ok: 0, refused: 0, closed: 0 };
  for (let i = 0; i < RUNS; i++) {
    const t = scripted(hostileServer(g));
    try {
      const e = await negotiate(t, "usr");
      expect(e.sizeBytes).toBeGreaterThanOrEqual(0n);
      expect(e.flags).toBeLessThan(1 << 16);
      outcomes.ok++;
    } catch (e) {
      if (e instanceof NbdHandshakeError) outcomes.refused++;
      else if (e instanceof TransportClosed) outcomes.closed++;
      else throw e;
    }
    // The client never writes more than its flags and two options.
    expect(t.written.length).toBeLessThanOrEqual(3);
  }
  expect(outcomes.ok).toBeGreaterThan(50);
  expect(outcomes.refused).toBeGreaterThan(50);
});
