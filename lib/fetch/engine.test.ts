// The download engine against a real HTTP(S) server on 127.0.0.1.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createHash, randomBytes } from "node:crypto";
import { encodeNewc } from "../build/cpio.ts";
import { ChunkVerifier, NoVerifier, StreamHasher, WholeImageVerifier, type StreamVerifier } from "../streamhash.ts";
import { fetchImage, FetchFailure } from "./engine.ts";
import { startTestServer, type TestServer } from "./testserver.ts";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bunboot-fetch-"));
// A fake squashfs: the magic, then random bytes (5 MiB + a bit, so the last chunk is short).
const image = Buffer.concat([Buffer.from("hsqs"), randomBytes(5 * 1024 * 1024 + 1234)]);
const imagePath = path.join(dir, "usr.squashfs");
fs.writeFileSync(imagePath, image);
const tampered = Buffer.from(image);
tampered[3 * 262144 + 17]! ^= 0xff;
fs.writeFileSync(path.join(dir, "tampered.squashfs"), tampered);
const cpioPath = path.join(dir, "usr.cpio");
fs.writeFileSync(cpioPath, Buffer.concat(encodeNewc([{ kind: "file", path: "usr.squashfs", data: image }, { kind: "file", path: "other", data: Buffer.from("x") }])));

const CHUNK = 262144;
function list(data: Uint8Array) {
  const h = new StreamHasher(CHUNK);
  h.update(data);
  return h.finish();
}
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

let server: TestServer;
let tlsServer: TestServer;
beforeAll(async () => {
  server = await startTestServer({
    "/usr.squashfs": { path: imagePath },
    "/chunked.squashfs": { path: imagePath, chunked: true },
    "/drop.squashfs": { path: imagePath, dropAfter: 1_500_000 },
    "/drop-norange.squashfs": { path: imagePath, dropAfter: 1_500_000, ignoreRange: true },
    "/tampered.squashfs": { path: path.join(dir, "tampered.squashfs") },
    "/usr.cpio": { path: cpioPath },
  });
  const key = path.join(dir, "key.pem");
  const cert = path.join(dir, "cert.pem");
  const r = Bun.spawnSync(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=bunboot-test"]);
  if (r.exitCode !== 0) throw new Error(`openssl: ${r.stderr}`);
  tlsServer = await startTestServer({ "/usr.squashfs": { path: imagePath } }, { tls: { cert: fs.readFileSync(cert, "utf8"), key: fs.readFileSync(key, "utf8") } });
});
afterAll(async () => {
  await server.stop();
  await tlsServer.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

function get(url: string, verifier: StreamVerifier, opts: { insecureTls?: boolean; unwrap?: boolean } = {}) {
  const lines: string[] = [];
  const out = path.join(dir, `out-${Math.random().toString(36).slice(2)}`);
  const p = fetchImage({
    url,
    out,
    verifier,
    unwrap: opts.unwrap ?? true,
    attempts: 4,
    connectDeadlineMs: 2000,
    source: { insecureTls: opts.insecureTls ?? true, stallMs: 10_000 },
    log: (l) => lines.push(l),
  });
  return { p, out, lines };
}

describe("fetchImage over HTTP", () => {
  test("a stream-hash verified download writes exactly the image", async () => {
    const { p, out } = get(`${server.url}/usr.squashfs`, new ChunkVerifier(list(image)));
    const r = await p;
    expect(r).toMatchObject({ bytesIn: image.length, bytesOut: image.length, format: "squashfs", resumed: 0 });
    expect(sha(fs.readFileSync(out))).toBe(sha(image));
  });

  test("no Content-Length (chunked encoding) works", async () => {
    const { p, out } = get(`${server.url}/chunked.squashfs`, new WholeImageVerifier(sha(image)));
    await p;
    expect(sha(fs.readFileSync(out))).toBe(sha(image));
  });

  test("a dropped connection resumes from the last verified chunk with a Range request", async () => {
    const { p, out, lines } = get(`${server.url}/drop.squashfs`, new ChunkVerifier(list(image)));
    const r = await p;
    expect(r.resumed).toBe(1);
    expect(sha(fs.readFileSync(out))).toBe(sha(image));
    const verified = Math.floor(1_500_000 / CHUNK) * CHUNK;
    expect(lines.join("\n")).toContain(`resuming from byte ${verified}`);
    expect(server.requests.filter((q) => q.path === "/drop.squashfs").map((q) => q.range)).toEqual([null, `bytes=${verified}-`]);
  });

  test("a server that answers 200 to Range: what was verified is skipped", async () => {
    const { p, out, lines } = get(`${server.url}/drop-norange.squashfs`, new ChunkVerifier(list(image)));
    await p;
    expect(sha(fs.readFileSync(out))).toBe(sha(image));
    expect(lines.join("\n")).toContain("the server ignored the Range request: skipping the");
  });

  test("a tampered image fails at the chunk's offset and leaves no file", async () => {
    const { p, out } = get(`${server.url}/tampered.squashfs`, new ChunkVerifier(list(image)));
    const err = (await p.catch((e) => e)) as FetchFailure;
    expect(err).toBeInstanceOf(FetchFailure);
    expect(err.offset).toBe(3 * CHUNK);
    expect(err.message).toStartWith(`verification failed at byte ${3 * CHUNK}: hash mismatch in chunk 3 (bytes ${3 * CHUNK} to ${4 * CHUNK - 1}): expected `);
    expect(err.url).toBe(`${server.url}/tampered.squashfs`);
    expect(fs.existsSync(out)).toBe(false);
  });

  test("a whole-image hash mismatch names rd.usr.hash and leaves no file", async () => {
    const { p, out } = get(`${server.url}/usr.squashfs`, new WholeImageVerifier("0".repeat(64)));
    const err = (await p.catch((e) => e)) as FetchFailure;
    expect(err.message).toContain(`expected sha256:${"0".repeat(64)}, found sha256:${sha(image)}`);
    expect(err.param).toBe("rd.usr.hash");
    expect(fs.existsSync(out)).toBe(false);
  });

  test("404 fails with the status, before any hashing", async () => {
    const { p, out } = get(`${server.url}/missing.squashfs`, new ChunkVerifier(list(image)));
    const err = (await p.catch((e) => e)) as FetchFailure;
    expect(err.message).toBe("HTTP 404 Not Found");
    expect(fs.existsSync(out)).toBe(false);
  });

  test("a cpio holding usr.squashfs is unwrapped while it streams, verified as served", async () => {
    const served = fs.readFileSync(cpioPath);
    const { p, out } = get(`${server.url}/usr.cpio`, new ChunkVerifier(list(served)));
    const r = await p;
    expect(r.format).toBe("cpio");
    expect(r.bytesIn).toBe(served.length);
    expect(sha(fs.readFileSync(out))).toBe(sha(image));
  });

  test("a server that never answers is retried until the deadline, then named", async () => {
    const { p, lines } = get("http://127.0.0.1:9/usr.squashfs", new NoVerifier());
    const err = (await p.catch((e) => e)) as FetchFailure;
    expect(err.message).toMatch(/^connection failed: /);
    expect(lines.some((l) => l.startsWith("cannot reach the server yet"))).toBe(true);
  });
});

describe("fetchImage over HTTPS", () => {
  test("a self-signed certificate is accepted only because the hash is pinned", async () => {
    const { p, out } = get(`${tlsServer.url}/usr.squashfs`, new ChunkVerifier(list(image)), { insecureTls: true });
    await p;
    expect(sha(fs.readFileSync(out))).toBe(sha(image));
  });

  test("without skipping certificate checks it is refused as a TLS error", async () => {
    const { p } = get(`${tlsServer.url}/usr.squashfs`, new NoVerifier(), { insecureTls: false });
    const err = (await p.catch((e) => e)) as FetchFailure;
    expect(err.message).toMatch(/^TLS error: /);
  });
});

describe("fetchImage from file://", () => {
  test("reads a local image", async () => {
    const { p, out } = get(`file://${imagePath}`, new WholeImageVerifier(sha(image)));
    await p;
    expect(sha(fs.readFileSync(out))).toBe(sha(image));
  });
});

describe("fetchImage into a full tmpfs", () => {
  // The initramfs is a tmpfs in RAM: running out of it must say so. Needs
  // root to mount a small tmpfs (CI and the test command run as root).
  const isRoot = process.getuid?.() === 0;

  async function intoTinyTmpfs(url: string, verifier: StreamVerifier): Promise<{ err: FetchFailure; left: boolean }> {
    const mnt = fs.mkdtempSync(path.join(os.tmpdir(), "bunboot-tmpfs-"));
    expect(Bun.spawnSync(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt]).exitCode).toBe(0);
    try {
      const out = path.join(mnt, "usr.squashfs");
      const p = fetchImage({ url, out, verifier, unwrap: true, attempts: 2, connectDeadlineMs: 1000, source: { insecureTls: true, stallMs: 10_000 }, log: () => {} });
      const err = (await p.catch((e) => e)) as FetchFailure;
      return { err, left: fs.existsSync(out) };
    } finally {
      Bun.spawnSync(["umount", mnt]);
      fs.rmSync(mnt, { recursive: true, force: true });
    }
  }

  test.skipIf(!isRoot)("the free-space check names RAM before the download starts", async () => {
    const { err, left } = await intoTinyTmpfs(`${server.url}/usr.squashfs`, new ChunkVerifier(list(image)));
    expect(err.message).toMatch(/^the image is 5 MiB but only 1 MiB of RAM is free for the initramfs: give the machine more RAM$/);
    expect(left).toBe(false);
  });

  test.skipIf(!isRoot)("without a Content-Length, ENOSPC while writing names RAM", async () => {
    const { err, left } = await intoTinyTmpfs(`${server.url}/chunked.squashfs`, new WholeImageVerifier(sha(image)));
    expect(err.message).toContain("no space left while writing");
    expect(err.message).toContain("the initramfs is a tmpfs in RAM");
    expect(left).toBe(false);
  });
});

describe("the host commands", () => {
  test("bunboot stream-hash writes a list that bunboot fetch --hashes accepts", async () => {
    const repo = path.resolve(import.meta.dir, "../..");
    // Async: the server runs in this process and must keep answering.
    const cli = async (...args: string[]) => {
      const proc = Bun.spawn([process.execPath, path.join(repo, "cli/bunboot.ts"), ...args], { env: { ...process.env, BUN_BE_BUN: "1" }, stdout: "pipe", stderr: "pipe" });
      const [stdout, stderr, exitCode] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
      return { stdout: { toString: () => stdout }, stderr: { toString: () => stderr }, exitCode };
    };
    const hashes = await cli("stream-hash", "--chunk-size", String(CHUNK), imagePath);
    expect(hashes.exitCode).toBe(0);
    expect(hashes.stdout.toString()).toBe(`stream-hash sha256 ${CHUNK}\n${list(image).digests.join("\n")}\n`);
    const listFile = path.join(dir, "cli.hashes");
    fs.writeFileSync(listFile, hashes.stdout.toString());
    const out = path.join(dir, "cli.out");
    const ok = await cli("fetch", `${server.url}/usr.squashfs`, "--hashes", listFile, "-o", out, "--quiet");
    expect(ok.exitCode).toBe(0);
    expect(sha(fs.readFileSync(out))).toBe(sha(image));
    const bad = await cli("fetch", `${server.url}/tampered.squashfs`, "--hashes", listFile, "-o", out, "--quiet");
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr.toString()).toStartWith(`bunboot fetch: verification failed at byte ${3 * CHUNK}: hash mismatch in chunk 3`);
    const unverified = await cli("fetch", `${server.url}/usr.squashfs`, "-o", out);
    expect(unverified.exitCode).toBe(1);
    expect(unverified.stderr.toString()).toContain("refusing an unverified download");
  }, 30_000);
});
