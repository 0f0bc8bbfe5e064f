import { mulberry32 } from "./testing/prng.ts";
import { describe, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { ChunkVerifier, formatStreamHashList, NoVerifier, parseStreamHashList, StreamHasher, StreamHashError, WholeImageVerifier } from "./streamhash.ts";

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

function listFor(data: Uint8Array, chunk: number) {
  const h = new StreamHasher(chunk);
  h.update(data);
  return h.finish();
}

function run(v: ChunkVerifier | WholeImageVerifier, data: Uint8Array, piece = 1000): Uint8Array {
  const out: Uint8Array[] = [];
  for (let i = 0; i < data.length; i += piece) out.push(...v.push(data.subarray(i, i + piece)));
  out.push(...v.end());
  return Buffer.concat(out);
}

describe("stream-hash list format", () => {
  test("round trip, and the Fedora CoreOS layout", () => {
    const data = randomBytes(10_000);
    const list = listFor(data, 4096);
    expect(list.digests).toEqual([sha(data.subarray(0, 4096)), sha(data.subarray(4096, 8192)), sha(data.subarray(8192))]);
    const text = formatStreamHashList(list);
    expect(text.split("\n")[0]).toBe("stream-hash sha256 4096");
    expect(parseStreamHashList(text)).toEqual(list);
  });

  const D = "a".repeat(64);
  test.each([
    ["", "empty"],
    ["\n", "empty"],
    ["stream-hash sha256\n" + D, 'expected "stream-hash sha256 <chunk-size>"'],
    ["streamhash sha256 4096\n" + D, 'expected "stream-hash sha256 <chunk-size>"'],
    ["stream-hash sha512 4096\n" + D, 'hash algorithm "sha512" is not supported'],
    ["stream-hash sha256 0\n" + D, "chunk size 0 is out of range; expected 1 to 67108864"],
    ["stream-hash sha256 67108865\n" + D, "chunk size 67108865 is out of range"],
    ["stream-hash sha256 4k\n" + D, 'chunk size "4k" is not a number'],
    ["stream-hash sha256 4096\n" + "g".repeat(64), "line 2 is not a lower-case sha256 hex digest"],
    ["stream-hash sha256 4096\n" + D.toUpperCase(), "line 2 is not a lower-case sha256 hex digest"],
    ["stream-hash sha256 4096\n" + D.slice(1), "line 2 is not a lower-case sha256 hex digest"],
    ["stream-hash sha256 4096\n" + D + "\n\n", "line 3 is not a lower-case sha256 hex digest"],
    ["stream-hash sha256 4096\n", "no chunk digests after the header"],
  ])("malformed list %#: %s", (text, message) => {
    expect(() => parseStreamHashList(text, "usr.hashes")).toThrow(message);
    try {
      parseStreamHashList(text, "usr.hashes");
    } catch (e) {
      expect((e as Error).message).toStartWith("usr.hashes: ");
      expect((e as StreamHashError).offset).toBe(-1);
    }
  });
});

describe("chunk verification", () => {
  const data = randomBytes(10_000);
  const list = listFor(data, 4096);

  test("verified bytes come out whole, only once a chunk is complete", () => {
    const v = new ChunkVerifier(list);
    expect(v.push(data.subarray(0, 4000))).toEqual([]);
    const first = v.push(data.subarray(4000, 5000));
    expect(Buffer.concat(first)).toEqual(data.subarray(0, 4096));
    expect(v.verifiedLength).toBe(4096);
    expect(Buffer.concat([...first, ...v.push(data.subarray(5000)), ...v.end()])).toEqual(data);
  });

  test("a tampered byte fails its chunk with the chunk's offset and both digests, and nothing of it comes out", () => {
    const bad = Buffer.from(data);
    bad[5000]! ^= 1;
    const v = new ChunkVerifier(list);
    expect(Buffer.concat(v.push(bad.subarray(0, 4096)))).toEqual(data.subarray(0, 4096));
    let err: StreamHashError | null = null;
    try {
      v.push(bad.subarray(4096));
    } catch (e) {
      err = e as StreamHashError;
    }
    expect(err?.offset).toBe(4096);
    expect(err?.message).toBe(`hash mismatch in chunk 1 (bytes 4096 to 8191): expected ${list.digests[1]}, found ${sha(bad.subarray(4096, 8192))}`);
  });

  test("premature end and extra data are errors with offsets", () => {
    const short = new ChunkVerifier(list);
    short.push(data.subarray(0, 9000));
    // A short last chunk cannot be told from a changed one: its hash says so, with its byte range.
    expect(() => short.end()).toThrow("hash mismatch in chunk 2 (bytes 8192 to 8999)");
    const shorter = new ChunkVerifier(list);
    shorter.push(data.subarray(0, 4096));
    expect(() => shorter.end()).toThrow("premature end of input at byte 4096: 2 of 3 chunks missing");
    const long = new ChunkVerifier(list);
    expect(() => run(long, Buffer.concat([data, Buffer.from("x")]))).toThrow("hash mismatch in chunk 2 (bytes 8192 to 10000)");
    const extra = new ChunkVerifier(listFor(data.subarray(0, 8192), 4096));
    expect(() => run(extra, data)).toThrow("extra data after the last chunk: the list covers 8192 bytes");
  });

  test("resume: pending bytes are dropped and the stream continues at verifiedLength", () => {
    const v = new ChunkVerifier(list);
    const out = [...v.push(data.subarray(0, 6000))];
    v.discardPending();
    expect(v.verifiedLength).toBe(4096);
    out.push(...v.push(data.subarray(4096)), ...v.end());
    expect(Buffer.concat(out)).toEqual(data);
  });
});

describe("whole-image verification", () => {
  const data = randomBytes(5000);
  test("good and bad", () => {
    expect(run(new WholeImageVerifier(sha(data)), data)).toEqual(data);
    const bad = new WholeImageVerifier("0".repeat(64));
    expect(() => run(bad, data)).toThrow(`hash mismatch over the whole image (5000 bytes): expected sha256:${"0".repeat(64)}, found sha256:${sha(data)}`);
  });
});

describe("chunks arriving in very many pieces", () => {
  // Verified pieces are returned by reference; a chunk delivered in more
  // pieces than a call's argument limit (~600k in Bun) must still come out.
  const PIECES = 750_000;
  const data = randomBytes(PIECES);

  test("a full chunk fed byte by byte in 750k pieces", () => {
    const v = new ChunkVerifier(listFor(data, PIECES));
    let out: Uint8Array[] = [];
    for (let i = 0; i < PIECES; i++) {
      const got = v.push(data.subarray(i, i + 1));
      if (got.length > 0) out = got;
    }
    expect(out.length).toBe(PIECES);
    expect(v.end()).toEqual([]);
    expect(Buffer.concat(out)).toEqual(data);
  });

  test("a short last chunk fed byte by byte, released by end()", () => {
    const v = new ChunkVerifier(listFor(data, PIECES + 1));
    for (let i = 0; i < PIECES; i++) expect(v.push(data.subarray(i, i + 1))).toEqual([]);
    const out = v.end();
    expect(out.length).toBe(PIECES);
    expect(Buffer.concat(out)).toEqual(data);
  });
});

describe("whole-image and insecure verifiers say when their bytes are proven", () => {
  test("only the whole-image hash releases bytes before they are proven", () => {
    expect(new WholeImageVerifier("0".repeat(64)).verifiesAtEnd).toBe(true);
    expect(new ChunkVerifier(listFor(randomBytes(10), 4)).verifiesAtEnd).toBe(false);
    expect(new NoVerifier().verifiesAtEnd).toBe(false);
  });
});


describe("stream-hash list parser properties (seeded)", () => {
  const rand = mulberry32(0x5eed_4a54);
  const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
  const validText = (n: number) => formatStreamHashList(listFor(randomBytes(n), 64));

  /** Parses or throws StreamHashError (offset -1, a short message), quickly. */
  function check(text: string): void {
    const t0 = performance.now();
    try {
      const list = parseStreamHashList(text, "usr.hashes");
      expect(list.chunkSize).toBeGreaterThanOrEqual(1);
      expect(list.chunkSize).toBeLessThanOrEqual(64 * 1024 * 1024);
      expect(Number.isSafeInteger(list.chunkSize)).toBe(true);
      for (const d of list.digests) expect(d).toMatch(/^[0-9a-f]{64}$/);
    } catch (e) {
      expect(e).toBeInstanceOf(StreamHashError);
      expect((e as StreamHashError).offset).toBe(-1);
      const msg = (e as Error).message;
      expect(msg).toStartWith("usr.hashes: ");
      // A 10 MB line is quoted, not dumped to the console; no raw control characters either.
      expect(msg.length).toBeLessThan(300);
      expect(msg).not.toMatch(/[\u0000-\u001f]/);
    }
    expect(performance.now() - t0).toBeLessThan(500);
  }

  test("negative, overflowing and odd chunk sizes", () => {
    for (const size of ["-1", "-4096", "+4096", "4096.0", "1e3", "0x10", "99999999999999999999999", "9007199254740993", "٤٠٩٦", "", "\0", "4096\0", "Infinity", "NaN"]) {
      const text = `stream-hash sha256 ${size}\n${"a".repeat(64)}\n`;
      expect(() => parseStreamHashList(text, "usr.hashes")).toThrow(StreamHashError);
      check(text);
    }
  });

  test("truncations, NULs and random bytes (invalid UTF-8 included)", () => {
    for (let n = 0; n < 400; n++) {
      const text = validText(int(64, 2000));
      const kind = n % 4;
      if (kind === 0) check(text.slice(0, int(0, text.length)));
      else if (kind === 1) {
        const chars = [...text];
        for (let k = int(1, 5); k > 0; k--) chars[int(0, chars.length - 1)] = rand() < 0.5 ? "\0" : String.fromCharCode(int(0, 0xffff));
        check(chars.join(""));
      } else if (kind === 2) {
        const bytes = Buffer.from(text);
        for (let k = int(1, 5); k > 0; k--) bytes[int(0, bytes.length - 1)] = int(0x80, 0xff);
        check(new TextDecoder().decode(bytes));
      } else {
        check(new TextDecoder().decode(randomBytes(int(0, 3000))));
      }
    }
  });

  test("huge inputs: a 10 MB line, a 10 MB algorithm name, 200k digests", () => {
    check("x".repeat(10_000_000));
    check(`stream-hash ${"x".repeat(10_000_000)} 4096\n${"a".repeat(64)}`);
    check(`stream-hash sha256 ${"9".repeat(10_000_000)}\n${"a".repeat(64)}`);
    check(`stream-hash sha256 4096\n${"a".repeat(10_000_000)}`);
    const t0 = performance.now();
    const many = `stream-hash sha256 4096\n${`${"b".repeat(64)}\n`.repeat(200_000)}`;
    expect(parseStreamHashList(many).digests.length).toBe(200_000);
    expect(performance.now() - t0).toBeLessThan(1500);
  });
});
