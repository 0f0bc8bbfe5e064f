// The TFTP client against an in-process server on 127.0.0.1 that can lose
// packets, ignore options, wrap block numbers, refuse, fall silent, or let
// a stranger send from another port.
import { afterEach, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createHash, randomBytes } from "node:crypto";
import { openTftp, type TftpOptions } from "./tftp-client.ts";
import { FetchError } from "./sources.ts";
import { decodePacket, encodeData, encodeError, encodeOack, type TftpPacket } from "./tftp.ts";
import { fetchImage } from "./engine.ts";
import { ChunkVerifier, StreamHasher } from "../streamhash.ts";

interface Behaviour {
  /** Answer options with an OACK (default); false: plain RFC 1350. */
  options?: boolean;
  /** The block after 65535. */
  wrapTo?: 0 | 1;
  /** Absolute block indexes whose first send is lost. */
  lose?: Set<number>;
  /** The first ACK of these block numbers is "lost" (ignored by the server). */
  loseAck?: Set<number>;
  /** Answer the RRQ with this ERROR. */
  error?: [number, string];
  /** Refuse requests with options with ERROR 8 (then serve a plain request). */
  refuseOptions?: boolean;
  /** Extra options in the OACK. */
  extraOack?: Array<[string, string]>;
  /** Override the OACK's blksize. */
  blksize?: string;
  /** Override the OACK's tsize. */
  tsize?: string;
  /** Never answer the RRQ. */
  mute?: boolean;
  /** Stop sending after this many blocks (counting from the first transfer only). */
  silentAfter?: number;
  /** A stranger sends a DATA packet from another port after the OACK. */
  intruder?: boolean;
}

interface Server {
  port: number;
  requests: Array<Extract<TftpPacket, { op: "RRQ" }>>;
  /** The TIDs that served transfers (each a port other than `port`). */
  tids: number[];
  /** Error packets the intruder received. */
  intruderGot: TftpPacket[];
  stop(): void;
}

const servers: Server[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.stop();
});

const wire = (i: number, wrapTo: 0 | 1) => (i <= 0xffff ? i : wrapTo === 0 ? i & 0xffff : ((i - 1) % 0xffff) + 1);

async function startServer(files: Record<string, Uint8Array>, b: Behaviour = {}, host = "127.0.0.1"): Promise<Server> {
  const sockets: Array<{ close(): void }> = [];
  const requests: Server["requests"] = [];
  const tids: number[] = [];
  const intruderGot: TftpPacket[] = [];
  let transfers = 0;
  let stopped = false;
  const serve = async (rrq: Extract<TftpPacket, { op: "RRQ" }>, cport: number) => {
    const n = transfers++;
    const data = files[rrq.filename];
    let ackWaiter: ((block: number) => void) | null = null;
    const acks: number[] = [];
    const lostAcks = new Set<number>();
    const s = await Bun.udpSocket({
      hostname: host,
      port: 0,
      binaryType: "uint8array",
      socket: {
        data(_s, buf, port) {
          if (port !== cport) return;
          const p = decodePacket(new Uint8Array(buf));
          if (p.op !== "ACK") return;
          if (b.loseAck?.has(p.block) && !lostAcks.has(p.block)) {
            lostAcks.add(p.block);
            return;
          }
          acks.push(p.block);
          ackWaiter?.(p.block);
        },
        error() {},
      },
    });
    sockets.push(s);
    tids.push(s.port);
    const send = (p: Uint8Array) => {
      if (!stopped) s.send(p, cport, host);
    };
    if (b.error) return void send(encodeError(b.error[0], b.error[1]));
    if (!data) return void send(encodeError(1, "File not found"));
    if (b.refuseOptions && rrq.options.size > 0) return void send(encodeError(8, "no options here"));
    const nextAck = (ms: number) =>
      new Promise<number | null>((resolve) => {
        if (acks.length > 0) return resolve(acks.shift()!);
        const t = setTimeout(() => {
          ackWaiter = null;
          resolve(null);
        }, ms);
        ackWaiter = () => {
          clearTimeout(t);
          ackWaiter = null;
          resolve(acks.shift()!);
        };
      });
    let blksize = 512;
    let window = 1;
    const wrapTo = b.wrapTo ?? 0;
    if ((b.options ?? true) && rrq.options.size > 0) {
      const o: Array<[string, string]> = [];
      if (rrq.options.has("blksize")) o.push(["blksize", b.blksize ?? String((blksize = Number(rrq.options.get("blksize"))))]);
      if (rrq.options.has("tsize")) o.push(["tsize", b.tsize ?? String(data.length)]);
      if (rrq.options.has("windowsize")) o.push(["windowsize", String((window = Number(rrq.options.get("windowsize"))))]);
      o.push(...(b.extraOack ?? []));
      for (let tries = 0; ; tries++) {
        if (tries === 5) return;
        send(encodeOack(o));
        if (b.intruder) {
          const stranger = await Bun.udpSocket({
            hostname: "127.0.0.1",
            port: 0,
            binaryType: "uint8array",
            socket: { data: (_x, buf) => void intruderGot.push(decodePacket(new Uint8Array(buf))), error() {} },
          });
          sockets.push(stranger);
          if (!stopped) stranger.send(encodeData(1, new Uint8Array(blksize).fill(0x41)), cport, "127.0.0.1");
          await Bun.sleep(30);
        }
        if ((await nextAck(100)) === 0) break;
      }
    }
    const blocks = Math.floor(data.length / blksize) + 1;
    let base = 1;
    let sent = 0;
    const lost = new Set<number>();
    for (let stale = 0; base <= blocks && stale < 20; ) {
      for (let i = base; i < base + window && i <= blocks; i++) {
        if (b.silentAfter !== undefined && n === 0 && sent >= b.silentAfter) return;
        sent++;
        if (b.lose?.has(i) && !lost.has(i)) {
          lost.add(i);
          continue;
        }
        send(encodeData(wire(i, wrapTo), data.subarray((i - 1) * blksize, i * blksize)));
      }
      const ack = await nextAck(100);
      if (ack === null) {
        stale++;
        continue;
      }
      // The absolute block this ACK names, within what was in flight.
      for (let i = base - 1; i < base + window && i <= blocks; i++) {
        if (wire(i, wrapTo) === ack) {
          base = i + 1;
          stale = 0;
          break;
        }
      }
    }
  };
  const listener = await Bun.udpSocket({
    hostname: host,
    port: 0,
    binaryType: "uint8array",
    socket: {
      data(_s, buf, port) {
        const p = decodePacket(new Uint8Array(buf));
        if (p.op !== "RRQ") return;
        requests.push(p);
        if (!b.mute) void serve(p, port);
      },
      error() {},
    },
  });
  sockets.push(listener);
  const server: Server = { port: listener.port, requests, tids, intruderGot, stop: () => {
      stopped = true;
      sockets.forEach((s) => s.close());
    } };
  servers.push(server);
  return server;
}

const FAST: TftpOptions = { timeoutMs: 150, tries: 4, request: { blksize: 1468, windowsize: 16, tsize: true } };

async function readAll(url: string, opts: TftpOptions = FAST, offset = 0): Promise<{ bytes: Buffer; total: number | null; skip: number }> {
  const src = await openTftp(url, offset, undefined, opts);
  const parts: Uint8Array[] = [];
  for await (const c of src.chunks) parts.push(c);
  return { bytes: Buffer.concat(parts), total: src.total, skip: src.skip };
}

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

describe("TFTP client", () => {
  test("options accepted: blksize, tsize and windowsize as asked; the data comes from the server's new TID", async () => {
    const image = randomBytes(300_000);
    const s = await startServer({ "usr.squashfs": image });
    const r = await readAll(`tftp://127.0.0.1:${s.port}/usr.squashfs`);
    expect(sha(r.bytes)).toBe(sha(image));
    expect(r.total).toBe(image.length);
    expect(s.requests).toHaveLength(1);
    expect(s.requests[0]!.mode).toBe("octet");
    expect(Object.fromEntries(s.requests[0]!.options)).toEqual({ blksize: "1468", tsize: "0", windowsize: "16" });
    expect(s.tids[0]).not.toBe(s.port);
  });

  test("an IPv6 server ([::1])", async () => {
    const image = randomBytes(50_000);
    const s = await startServer({ f: image }, {}, "::1");
    const r = await readAll(`tftp://[::1]:${s.port}/f`);
    expect(sha(r.bytes)).toBe(sha(image));
  });

  test("a server without options (RFC 1350): 512-byte blocks, a size that is a multiple of 512 ends with an empty block", async () => {
    const image = randomBytes(512 * 40);
    const s = await startServer({ "a/b.img": image }, { options: false });
    const r = await readAll(`tftp://127.0.0.1:${s.port}/a/b.img`);
    expect(sha(r.bytes)).toBe(sha(image));
    expect(r.total).toBeNull();
    expect((await openTftp(`tftp://127.0.0.1:${s.port}/a/b.img`, 0, undefined, FAST).then(async (src) => (await src.close(), src.note)))).toBe(`TFTP 127.0.0.1:${s.port}: no option acknowledgement (RFC 1350 transfer): blksize 512, windowsize 1, tsize unknown`);
  });

  test("a server refusing the options with ERROR 8 is asked again without them", async () => {
    const image = randomBytes(5000);
    const s = await startServer({ f: image }, { refuseOptions: true });
    const r = await readAll(`tftp://127.0.0.1:${s.port}/f`);
    expect(sha(r.bytes)).toBe(sha(image));
    expect(s.requests.map((q) => q.options.size)).toEqual([3, 0]);
  });

  for (const wrapTo of [0, 1] as const) {
    test(`block numbers wrap past 65535 to ${wrapTo}`, async () => {
      // 8-byte blocks: 65535 blocks are 512 KiB, so two wraps come quickly (the second one follows the first one's rule).
      const image = randomBytes(8 * 2 * 65536 + 8 * 300 + 3);
      const s = await startServer({ big: image }, { wrapTo });
      const r = await readAll(`tftp://127.0.0.1:${s.port}/big`, { ...FAST, request: { blksize: 8, windowsize: 64, tsize: true } });
      expect(r.bytes.length).toBe(image.length);
      expect(sha(r.bytes)).toBe(sha(image));
    }, 60_000);
  }

  test("lost DATA and lost ACKs are recovered by timeouts, with the window", async () => {
    const image = randomBytes(1468 * 100 + 7);
    const s = await startServer({ f: image }, { lose: new Set([1, 5, 16, 17, 40, 101]), loseAck: new Set([0, 32]) });
    const r = await readAll(`tftp://127.0.0.1:${s.port}/f`);
    expect(sha(r.bytes)).toBe(sha(image));
  });

  test("windowsize 1 (a server whose OACK leaves it out) with a lost block", async () => {
    const image = randomBytes(1468 * 10 + 1);
    const s = await startServer({ f: image }, { lose: new Set([3]) });
    const r = await readAll(`tftp://127.0.0.1:${s.port}/f`, { ...FAST, request: { blksize: 1468, windowsize: 1, tsize: true } });
    expect(sha(r.bytes)).toBe(sha(image));
  });

  test("a packet from another port is refused with ERROR 5 and does not enter the image", async () => {
    const image = randomBytes(20_000);
    const s = await startServer({ f: image }, { intruder: true });
    const r = await readAll(`tftp://127.0.0.1:${s.port}/f`);
    expect(sha(r.bytes)).toBe(sha(image));
    expect(s.intruderGot).toEqual([{ op: "ERROR", code: 5, message: "unknown transfer ID" }]);
  });

  test("no answer to the request: a retryable error naming what timed out, after tries x timeout", async () => {
    const s = await startServer({}, { mute: true });
    const t0 = performance.now();
    const err = (await readAll(`tftp://127.0.0.1:${s.port}/usr.squashfs`).catch((e) => e)) as FetchError;
    const ms = performance.now() - t0;
    expect(err).toBeInstanceOf(FetchError);
    expect(err.retryable).toBe(true);
    expect(err.message).toBe(`TFTP 127.0.0.1:${s.port}: timed out waiting for an answer to the read request for "usr.squashfs" (4 sends, 0.15 s apart)`);
    expect(s.requests).toHaveLength(4);
    expect(ms).toBeGreaterThanOrEqual(4 * 150 - 20);
    expect(ms).toBeLessThan(3000);
  });

  test("a server falling silent mid-transfer: a retryable error naming the block", async () => {
    const s = await startServer({ f: randomBytes(1468 * 64) }, { silentAfter: 20 });
    const err = (await readAll(`tftp://127.0.0.1:${s.port}/f`).catch((e) => e)) as FetchError;
    expect(err).toBeInstanceOf(FetchError);
    expect(err.retryable).toBe(true);
    expect(err.message).toMatch(/timed out waiting for data block 21 \(after 29360 bytes\) \(4 sends, 0\.15 s apart\)$/);
  });

  test("ERROR 1 is final and quoted", async () => {
    const s = await startServer({});
    const err = (await readAll(`tftp://127.0.0.1:${s.port}/missing.squashfs`).catch((e) => e)) as FetchError;
    expect(err.retryable).toBe(false);
    expect(err.message).toBe(`TFTP 127.0.0.1:${s.port}: the server answered ERROR 1 for "missing.squashfs": File not found`);
  });

  test("ERROR 0 (\"too many sessions\") may pass: retryable", async () => {
    const s = await startServer({}, { error: [0, "too many sessions"] });
    const err = (await readAll(`tftp://127.0.0.1:${s.port}/f`).catch((e) => e)) as FetchError;
    expect(err.retryable).toBe(true);
    expect(err.message).toContain("ERROR 0");
  });

  test("an OACK with an option not asked for, or a block size above the one asked, is refused", async () => {
    const s1 = await startServer({ f: randomBytes(100) }, { extraOack: [["timeout", "1"]] });
    const e1 = (await readAll(`tftp://127.0.0.1:${s1.port}/f`).catch((e) => e)) as FetchError;
    expect(e1.retryable).toBe(false);
    expect(e1.message).toContain(`option "timeout", which was not requested`);
    const s2 = await startServer({ f: randomBytes(100) }, { blksize: "1469" });
    const e2 = (await readAll(`tftp://127.0.0.1:${s2.port}/f`).catch((e) => e)) as FetchError;
    expect(e2.retryable).toBe(false);
    expect(e2.message).toBe(`TFTP 127.0.0.1:${s2.port}: the server's OACK gives blksize 1469: expected 8 to 1468`);
  });

  test("a server sending more than its tsize is stopped", async () => {
    const s = await startServer({ f: randomBytes(10_000) }, { tsize: "5000" });
    const err = (await readAll(`tftp://127.0.0.1:${s.port}/f`).catch((e) => e)) as FetchError;
    expect(err.message).toContain("more than the 5000 bytes it announced (tsize)");
  });

  test("an offset cannot be asked for: the bytes come from 0 and the caller is told to skip", async () => {
    const image = randomBytes(3000);
    const s = await startServer({ f: image });
    const r = await readAll(`tftp://127.0.0.1:${s.port}/f`, FAST, 1000);
    expect(r.skip).toBe(1000);
    expect(sha(r.bytes)).toBe(sha(image));
  });
});

describe("fetchImage over TFTP", () => {
  test("a transfer that falls silent is started again from byte 0, and the verified bytes are skipped", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bunboot-tftp-"));
    try {
      const image = Buffer.concat([Buffer.from("hsqs"), randomBytes(1_000_000)]);
      const h = new StreamHasher(262144);
      h.update(image);
      const s = await startServer({ "usr.squashfs": image }, { silentAfter: 300 });
      const lines: string[] = [];
      const out = path.join(dir, "usr.squashfs");
      const r = await fetchImage({
        url: `tftp://127.0.0.1:${s.port}/usr.squashfs`,
        out,
        verifier: new ChunkVerifier(h.finish()),
        unwrap: true,
        attempts: 3,
        connectDeadlineMs: 2000,
        source: { insecureTls: false, stallMs: 10_000, tftp: FAST },
        log: (l) => lines.push(l),
      });
      expect(sha(fs.readFileSync(out))).toBe(sha(image));
      expect(r.resumed).toBe(1);
      expect(s.requests).toHaveLength(2);
      expect(lines.join("\n")).toMatch(/connection dropped after 262144 verified bytes \(TFTP 127\.0\.0\.1:\d+: timed out waiting for data block 301/);
      expect(lines.filter((l) => l.includes("options acknowledged"))).toEqual([`TFTP 127.0.0.1:${s.port}: options acknowledged: blksize 1468, windowsize 16, tsize ${image.length}`]);
      expect(lines.join("\n")).toContain("TFTP cannot start at an offset: the transfer starts again from byte 0: skipping the 262144 bytes already verified");
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);
});
