// Byte sources for the /usr image: HTTP(S) with fetch, SFTP with
// ssh2-sftp-client, and file:// (tests, local media). Each opens the image
// at a byte offset, so a dropped transfer resumes from the last verified
// chunk instead of starting over.
import fs from "node:fs";
import { createHash } from "node:crypto";

export class FetchError extends Error {
  constructor(
    message: string,
    /** Worth another attempt (connection trouble, 5xx), or final (404, bad URL). */
    readonly retryable: boolean,
  ) {
    super(message);
  }
}

export interface OpenedSource {
  /** Total image size when the server says it. */
  total: number | null;
  /** Bytes the caller must drop from the front (a server that ignored Range). */
  skip: number;
  chunks: AsyncIterable<Uint8Array>;
  close(): Promise<void>;
}

export interface SourceOptions {
  /** Skip TLS certificate checks: only allowed because a hash is pinned. */
  insecureTls: boolean;
  proxy?: string;
  /** Abort a transfer that delivers nothing for this long. */
  stallMs: number;
  sftp?: SftpCredentials;
}

export interface SftpCredentials {
  privateKey?: string;
  password?: string;
  /** "SHA256:<base64>" of the server's host key, as ssh-keygen -lf prints it. */
  hostKeySha256?: string;
}

export function openSource(url: string, offset: number, opts: SourceOptions): Promise<OpenedSource> {
  const scheme = url.slice(0, url.indexOf(":"));
  switch (scheme) {
    case "http":
    case "https":
      return openHttp(url, offset, opts);
    case "sftp":
      return openSftp(url, offset, opts);
    case "file":
      return openFile(url, offset);
    default:
      return Promise.reject(new FetchError(`rd.usr.url=${url}: unsupported scheme "${scheme}"; expected http, https, sftp or file`, false));
  }
}

async function openHttp(url: string, offset: number, opts: SourceOptions): Promise<OpenedSource> {
  const abort = new AbortController();
  let stall: ReturnType<typeof setTimeout> | undefined;
  const arm = () => {
    clearTimeout(stall);
    stall = setTimeout(() => abort.abort(new Error(`no data for ${opts.stallMs / 1000} s`)), opts.stallMs);
  };
  arm();
  let res: Response;
  try {
    // GET, never HEAD: presigned object-store URLs reject HEAD.
    res = await fetch(url, {
      headers: offset > 0 ? { Range: `bytes=${offset}-` } : {},
      signal: abort.signal,
      proxy: opts.proxy,
      tls: { rejectUnauthorized: !opts.insecureTls },
      decompress: false,
    } as RequestInit);
  } catch (e) {
    clearTimeout(stall);
    const msg = e instanceof Error ? e.message : String(e);
    const cert = /certificate|self.signed|SSL|TLS/i.test(msg);
    throw new FetchError(`${cert ? "TLS error" : "connection failed"}: ${msg}`, !cert);
  }
  // The status decides before a single byte is hashed: a 404 page must
  // never turn up as a hash mismatch.
  if (res.status !== 200 && res.status !== 206) {
    clearTimeout(stall);
    await res.body?.cancel().catch(() => {});
    throw new FetchError(`HTTP ${res.status} ${res.statusText}`.trim(), res.status >= 500 || res.status === 408 || res.status === 429);
  }
  let skip = 0;
  let total: number | null = null;
  const length = res.headers.get("content-length");
  if (res.status === 206) {
    const range = res.headers.get("content-range")?.match(/^bytes (\d+)-(\d+)\/(\d+|\*)$/);
    if (!range || Number(range[1]) !== offset) {
      clearTimeout(stall);
      await res.body?.cancel().catch(() => {});
      throw new FetchError(`server answered Range: bytes=${offset}- with Content-Range "${res.headers.get("content-range")}"`, true);
    }
    if (range[3] !== "*") total = Number(range[3]);
  } else {
    // 200 to a Range request: the whole image again; drop what is verified.
    skip = offset;
    if (length !== null) total = Number(length);
  }
  const body = res.body;
  if (!body) throw new FetchError("empty response body", true);
  const reader = body.getReader();
  async function* chunks(): AsyncGenerator<Uint8Array> {
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        arm();
        if (value && value.length > 0) yield value;
      }
    } catch (e) {
      throw new FetchError(`transfer interrupted: ${e instanceof Error ? e.message : e}`, true);
    } finally {
      clearTimeout(stall);
    }
  }
  return {
    total,
    skip,
    chunks: chunks(),
    async close() {
      clearTimeout(stall);
      await reader.cancel().catch(() => {});
    },
  };
}

async function openFile(url: string, offset: number): Promise<OpenedSource> {
  const path = decodeURIComponent(new URL(url).pathname);
  let size: number;
  try {
    size = fs.statSync(path).size;
  } catch (e) {
    throw new FetchError(`cannot open ${path}: ${e instanceof Error ? e.message : e}`, false);
  }
  const stream = fs.createReadStream(path, { start: offset, highWaterMark: 1 << 20 });
  return {
    total: size,
    skip: 0,
    chunks: stream as AsyncIterable<Uint8Array>,
    async close() {
      stream.destroy();
    },
  };
}

export function parseSftpUrl(url: string): { host: string; port: number; username: string; path: string } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new FetchError(`rd.usr.url=${url}: not a valid URL`, false);
  }
  if (!u.username) throw new FetchError(`rd.usr.url=${url}: sftp URLs need a user (sftp://user@host/path)`, false);
  if (u.password) throw new FetchError(`rd.usr.url=${url}: never put a password on the command line; ship it in /etc/bunboot/sftp/password in an appended cpio`, false);
  return { host: u.hostname.replace(/^\[|\]$/g, ""), port: u.port ? Number(u.port) : 22, username: decodeURIComponent(u.username), path: decodeURIComponent(u.pathname) };
}

/** "SHA256:<base64 without padding>" of a raw SSH public key blob, as ssh-keygen prints it. */
export function sshFingerprint(key: Uint8Array): string {
  return "SHA256:" + createHash("sha256").update(key).digest("base64").replace(/=+$/, "");
}

async function openSftp(url: string, offset: number, opts: SourceOptions): Promise<OpenedSource> {
  const target = parseSftpUrl(url);
  const creds = opts.sftp ?? {};
  if (!creds.privateKey && !creds.password) {
    throw new FetchError(`rd.usr.url=${url}: no SFTP credentials: build the initrd with --sftp-key, or append a cpio with /etc/bunboot/sftp/password`, false);
  }
  const { default: SftpClient } = await import("ssh2-sftp-client");
  const client = new SftpClient("bunboot");
  let hostKeyProblem: string | null = null;
  try {
    await client.connect({
      host: target.host,
      port: target.port,
      username: target.username,
      privateKey: creds.privateKey,
      password: creds.password,
      readyTimeout: opts.stallMs,
      retries: 0,
      hostVerifier: creds.hostKeySha256
        ? (key: Buffer) => {
            const fp = sshFingerprint(key);
            if (fp !== creds.hostKeySha256) hostKeyProblem = `host key ${fp} is not the pinned ${creds.hostKeySha256}`;
            return hostKeyProblem === null;
          }
        : undefined,
    });
  } catch (e) {
    await client.end().catch(() => {});
    if (hostKeyProblem) throw new FetchError(`SFTP ${target.host}:${target.port}: ${hostKeyProblem}`, false);
    const msg = e instanceof Error ? e.message : String(e);
    throw new FetchError(`SFTP connection to ${target.host}:${target.port} failed: ${msg}`, !/authentication/i.test(msg));
  }
  let total: number | null = null;
  try {
    total = (await client.stat(target.path)).size;
  } catch (e) {
    await client.end().catch(() => {});
    throw new FetchError(`SFTP ${target.path}: ${e instanceof Error ? e.message : e}`, false);
  }
  const stream = client.createReadStream(target.path, { start: offset, highWaterMark: 256 * 1024 } as never) as unknown as NodeJS.ReadableStream;
  async function* chunks(): AsyncGenerator<Uint8Array> {
    try {
      for await (const c of stream as AsyncIterable<Uint8Array>) yield c;
    } catch (e) {
      throw new FetchError(`SFTP transfer interrupted: ${e instanceof Error ? e.message : e}`, true);
    }
  }
  return {
    total,
    skip: 0,
    chunks: chunks(),
    async close() {
      (stream as unknown as { destroy?: () => void }).destroy?.();
      await client.end().catch(() => {});
    },
  };
}
