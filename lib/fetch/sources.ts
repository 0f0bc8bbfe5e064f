// Byte sources for the /usr image: HTTP(S) with fetch, SFTP with
// ssh2-sftp-client, TFTP (tftp-client.ts), and file:// (tests, local
// media). Each opens the image at a byte offset, so a dropped transfer
// resumes from the last verified chunk instead of starting over; TFTP
// cannot, and starts from byte 0 with the verified bytes to be skipped.
import fs from "node:fs";
import { createHash } from "node:crypto";
import { redactText, redactUrl } from "../redact.ts";
import { messageOf } from "../errors.ts";
import { openTftp, type TftpOptions } from "./tftp-client.ts";

export { redactText, redactUrl };

export class FetchError extends Error {
  constructor(
    message: string,
    /** Worth another attempt (connection trouble, 5xx), or final (404, bad URL). */
    readonly retryable: boolean,
  ) {
    super(message);
    this.name = "FetchError";
  }
}

export interface OpenedSource {
  /** Total image size when the server says it. */
  total: number | null;
  /** Bytes the caller must drop from the front (a server that ignored Range, a TFTP retry). */
  skip: number;
  /** Why `skip` is not 0, when it is not a server ignoring Range. */
  skipReason?: string;
  /** What was agreed with the server, worth a log line on the first connection (TFTP's options). */
  note?: string;
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
  /** TFTP timing and options (tests shorten the timeouts); DEFAULT_TFTP otherwise. */
  tftp?: TftpOptions;
}

export interface SftpCredentials {
  privateKey?: string;
  password?: string;
  /** "SHA256:<base64>" of the server's host key, as ssh-keygen -lf prints it. */
  hostKeySha256?: string;
}

/** Redirects followed before giving up. */
export const MAX_REDIRECTS = 10;

/** An error message from below (fetch, ssh2, fs), redacted and without Bun's debugging hint. */
function describeError(e: unknown): string {
  const msg = messageOf(e);
  return redactText(msg.replace(/\s*For more information, pass `verbose: true` in the second argument to fetch\(\)\.?/, ""));
}

// ---------------------------------------------------------------------------

export function openSource(url: string, offset: number, opts: SourceOptions, signal?: AbortSignal): Promise<OpenedSource> {
  const scheme = url.slice(0, Math.max(0, url.indexOf(":")));
  switch (scheme) {
    case "http":
    case "https":
      return openHttp(url, offset, opts, signal);
    case "sftp":
      return openSftp(url, offset, opts, signal);
    case "file":
      return openFile(url, offset, signal);
    case "tftp":
      return openTftp(url, offset, signal, opts.tftp);
    default:
      return Promise.reject(new FetchError(`rd.usr.url=${redactUrl(url)}: unsupported scheme "${scheme.slice(0, 20)}"; expected http, https, sftp, tftp or file`, false));
  }
}

interface HttpAnswer {
  res: Response;
  url: string;
}

/**
 * GETs `url`, following at most MAX_REDIRECTS redirects by hand: only to
 * http(s), never from https down to http, never in a loop. Redirect trouble
 * is final: retrying the same chain cannot help.
 */
async function getFollowingRedirects(url: string, init: RequestInit): Promise<HttpAnswer> {
  const seen = new Set<string>([url]);
  try {
    seen.add(new URL(url).href);
  } catch {
    // fetch itself reports a bad URL.
  }
  let current = url;
  for (let redirects = 0; ; redirects++) {
    const res = await fetch(current, { ...init, redirect: "manual" });
    if (res.status < 300 || res.status > 399 || res.status === 304) return { res, url: current };
    await res.body?.cancel().catch(() => {});
    const location = res.headers.get("location");
    if (!location) throw new FetchError(`HTTP ${res.status} ${res.statusText} from ${redactUrl(current)} without a Location header`.replace(/ {2}/g, " "), false);
    let next: URL;
    try {
      next = new URL(location, current);
    } catch {
      throw new FetchError(`redirect to ${JSON.stringify(redactUrl(location).slice(0, 200))} refused: not a valid URL`, false);
    }
    if (next.protocol !== "http:" && next.protocol !== "https:") {
      throw new FetchError(`redirect to ${redactUrl(next.href)} refused: only http and https`, false);
    }
    if (current.startsWith("https:") && next.protocol === "http:") {
      throw new FetchError(`redirect from ${redactUrl(current)} to ${redactUrl(next.href)} refused: a downgrade from https to http`, false);
    }
    if (seen.has(next.href)) throw new FetchError(`redirect loop: ${redactUrl(current)} redirects back to ${redactUrl(next.href)}`, false);
    if (redirects + 1 > MAX_REDIRECTS) throw new FetchError(`too many redirects (${MAX_REDIRECTS})`, false);
    seen.add(next.href);
    current = next.href;
  }
}

async function openHttp(url: string, offset: number, opts: SourceOptions, signal?: AbortSignal): Promise<OpenedSource> {
  const abort = new AbortController();
  let stall: ReturnType<typeof setTimeout> | undefined;
  const arm = () => {
    clearTimeout(stall);
    stall = setTimeout(() => abort.abort(new Error(`no data for ${opts.stallMs / 1000} s`)), opts.stallMs);
  };
  const onAbort = () => abort.abort(signal?.reason ?? new Error("aborted"));
  const cleanup = () => {
    clearTimeout(stall);
    signal?.removeEventListener("abort", onAbort);
  };
  if (signal?.aborted) throw new FetchError("aborted", false);
  signal?.addEventListener("abort", onAbort, { once: true });
  arm();
  let res: Response;
  try {
    // GET, never HEAD: presigned object-store URLs reject HEAD.
    ({ res } = await getFollowingRedirects(url, {
      headers: offset > 0 ? { Range: `bytes=${offset}-` } : {},
      signal: abort.signal,
      proxy: opts.proxy,
      tls: { rejectUnauthorized: !opts.insecureTls },
      decompress: false,
    } as RequestInit));
  } catch (e) {
    cleanup();
    if (e instanceof FetchError) throw e;
    const msg = describeError(e);
    const cert = /certificate|self.signed|SSL|TLS/i.test(msg);
    throw new FetchError(`${cert ? "TLS error" : "connection failed"}: ${msg}`, !cert);
  }
  const fail = async (error: FetchError): Promise<never> => {
    cleanup();
    await res.body?.cancel().catch(() => {});
    throw error;
  };
  // The status decides before a single byte is hashed: a 404 page must
  // never turn up as a hash mismatch.
  if (res.status !== 200 && res.status !== 206) {
    await fail(new FetchError(`HTTP ${res.status} ${res.statusText}`.trim(), res.status >= 500 || res.status === 408 || res.status === 429));
  }
  let skip = 0;
  let total: number | null = null;
  /** Body bytes this answer announces (Content-Length, or the Content-Range span). */
  let announced: number | null = null;
  const lengthHeader = res.headers.get("content-length");
  const length = lengthHeader !== null && /^\d{1,15}$/.test(lengthHeader.trim()) ? Number(lengthHeader.trim()) : null;
  if (lengthHeader !== null && length === null) await fail(new FetchError(`server answered with Content-Length ${JSON.stringify(lengthHeader.slice(0, 40))}; expected a number of bytes`, false));
  if (res.status === 206) {
    const header = res.headers.get("content-range");
    const range = header?.match(/^bytes (\d{1,15})-(\d{1,15})\/(\d{1,15}|\*)$/);
    if (!range || Number(range[1]) !== offset) {
      await fail(new FetchError(`server answered Range: bytes=${offset}- with Content-Range ${JSON.stringify(header?.slice(0, 80) ?? null)}`, true));
    }
    const end = Number(range![2]);
    if (range![3] !== "*") total = Number(range![3]);
    // bytes=N- asks for everything from N: a range that stops early (or runs past the end) would make a short or long image.
    if (end < offset || (total !== null && end !== total - 1)) {
      await fail(new FetchError(`server answered Range: bytes=${offset}- with Content-Range "${header}"; expected bytes ${offset}-${total !== null ? total - 1 : "<end>"}/${total ?? "*"}`, false));
    }
    announced = end - offset + 1;
    if (length !== null && length !== announced) {
      await fail(new FetchError(`server answered with Content-Length ${length} but Content-Range "${header}" (${announced} bytes)`, false));
    }
  } else {
    // 200 to a Range request: the whole image again; drop what is verified.
    skip = offset;
    total = length;
    announced = length;
  }
  const body = res.body;
  if (!body) return fail(new FetchError("empty response body", true));
  const reader = body.getReader();
  async function* chunks(): AsyncGenerator<Uint8Array> {
    let received = 0;
    try {
      for (;;) {
        let r: Awaited<ReturnType<typeof reader.read>>;
        try {
          r = await reader.read();
        } catch (e) {
          throw new FetchError(`transfer interrupted: ${describeError(e)}`, true);
        }
        if (r.done) break;
        arm();
        const value = r.value;
        if (!value || value.length === 0) continue;
        received += value.length;
        if (announced !== null && received > announced) throw new FetchError(`the server sent more than the ${announced} bytes it announced`, false);
        yield value;
      }
      if (announced !== null && received < announced && !abort.signal.aborted) {
        throw new FetchError(`transfer interrupted: the body ended after ${received} of the ${announced} bytes announced`, true);
      }
    } finally {
      cleanup();
    }
  }
  return {
    total,
    skip,
    chunks: chunks(),
    async close() {
      cleanup();
      await reader.cancel().catch(() => {});
    },
  };
}

async function openFile(url: string, offset: number, signal?: AbortSignal): Promise<OpenedSource> {
  let path: string;
  try {
    path = decodeURIComponent(new URL(url).pathname);
  } catch {
    throw new FetchError(`rd.usr.url=${redactUrl(url)}: not a valid file:// URL`, false);
  }
  let st: fs.Stats;
  try {
    st = fs.statSync(path);
  } catch (e) {
    throw new FetchError(`cannot open ${path}: ${describeError(e)}`, false);
  }
  if (signal?.aborted) throw new FetchError("aborted", false);
  // A pipe cannot seek (pread fails with ESPIPE): it is read from where it is, and what a resume already has is skipped.
  const seekable = !st.isFIFO() && !st.isSocket();
  const stream = fs.createReadStream(path, seekable ? { start: offset, highWaterMark: 1 << 20 } : { highWaterMark: 1 << 20 });
  stream.on("error", () => {});
  // A pending read of a pipe or a stuck device may never return: the
  // caller stops waiting for it (it races every read against its signal),
  // and this closes the file.
  const onAbort = () => stream.destroy();
  signal?.addEventListener("abort", onAbort, { once: true });
  async function* chunks(): AsyncGenerator<Uint8Array> {
    try {
      for await (const c of stream as AsyncIterable<Uint8Array>) yield c;
    } catch (e) {
      throw new FetchError(`reading ${path} failed: ${describeError(e)}`, false);
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
  }
  return {
    // A FIFO or character device has no size to check against.
    total: st.isFile() ? st.size : null,
    skip: seekable ? 0 : offset,
    chunks: chunks(),
    async close() {
      signal?.removeEventListener("abort", onAbort);
      stream.destroy();
    },
  };
}

export function parseSftpUrl(url: string): { host: string; port: number; username: string; path: string } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new FetchError(`rd.usr.url=${redactUrl(url)}: not a valid URL`, false);
  }
  if (!u.username) throw new FetchError(`rd.usr.url=${redactUrl(url)}: sftp URLs need a user (sftp://user@host/path)`, false);
  if (u.password) throw new FetchError(`rd.usr.url=${redactUrl(url)}: never put a password on the command line; ship it in /etc/bunboot/sftp/password in an appended cpio`, false);
  return { host: u.hostname.replace(/^\[|\]$/g, ""), port: u.port ? Number(u.port) : 22, username: decodeURIComponent(u.username), path: decodeURIComponent(u.pathname) };
}

/** "SHA256:<base64 without padding>" of a raw SSH public key blob, as ssh-keygen prints it. */
export function sshFingerprint(key: Uint8Array): string {
  return "SHA256:" + createHash("sha256").update(key).digest("base64").replace(/=+$/, "");
}

/**
 * Which credentials may be offered to the SFTP server. Without a pinned
 * host key the server is whoever answers: a password would go to it, so a
 * password alone is refused (before any connection) and a password next to
 * a key is not offered. A key reveals nothing to a rogue server, so key
 * authentication goes on, with a warning (the image is still checked
 * against its hash).
 */
export function sftpAuth(url: string, creds: SftpCredentials): { privateKey?: string; password?: string; warnings: string[] } {
  const target = parseSftpUrl(url);
  const where = `${target.host}:${target.port}`;
  if (!creds.privateKey && !creds.password) {
    throw new FetchError(`rd.usr.url=${redactUrl(url)}: no SFTP credentials: build the initrd with --sftp-key, or append a cpio with /etc/bunboot/sftp/password`, false);
  }
  if (creds.hostKeySha256) return { privateKey: creds.privateKey, password: creds.password, warnings: [] };
  if (!creds.privateKey) {
    throw new FetchError(
      `rd.usr.url=${redactUrl(url)}: refusing to send the SFTP password to ${where}, whose host key is not pinned: whoever answers there would receive it. Pin the server's host key (build the initrd with --sftp-host-key SHA256:..., as ssh-keygen -lf prints it) or use key authentication (--sftp-key)`,
      false,
    );
  }
  const dropped = creds.password ? "the SFTP password is not offered to it, and " : "";
  return {
    privateKey: creds.privateKey,
    password: undefined,
    warnings: [`the SFTP server ${where} is not authenticated (no pinned host key: --sftp-host-key); ${dropped}the image is trusted only through its hash`],
  };
}

async function openSftp(url: string, offset: number, opts: SourceOptions, signal?: AbortSignal): Promise<OpenedSource> {
  const target = parseSftpUrl(url);
  const creds = opts.sftp ?? {};
  const auth = sftpAuth(url, creds);
  const { default: SftpClient } = await import("ssh2-sftp-client");
  const client = new SftpClient("bunboot");
  let stream: NodeJS.ReadableStream | null = null;
  const onAbort = () => {
    (stream as unknown as { destroy?: () => void } | null)?.destroy?.();
    void client.end().catch(() => {});
  };
  if (signal?.aborted) throw new FetchError("aborted", false);
  signal?.addEventListener("abort", onAbort, { once: true });
  const cleanup = () => signal?.removeEventListener("abort", onAbort);
  let hostKeyProblem: string | null = null;
  try {
    await client.connect({
      host: target.host,
      port: target.port,
      username: target.username,
      privateKey: auth.privateKey,
      password: auth.password,
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
    cleanup();
    await client.end().catch(() => {});
    if (hostKeyProblem) throw new FetchError(`SFTP ${target.host}:${target.port}: ${hostKeyProblem}`, false);
    const msg = describeError(e);
    throw new FetchError(`SFTP connection to ${target.host}:${target.port} failed: ${msg}`, !/authentication/i.test(msg));
  }
  let total: number | null = null;
  try {
    total = (await client.stat(target.path)).size;
  } catch (e) {
    cleanup();
    await client.end().catch(() => {});
    throw new FetchError(`SFTP ${target.path}: ${describeError(e)}`, false);
  }
  stream = client.createReadStream(target.path, { start: offset, highWaterMark: 256 * 1024 } as never) as unknown as NodeJS.ReadableStream;
  const s = stream;
  async function* chunks(): AsyncGenerator<Uint8Array> {
    try {
      for await (const c of s as AsyncIterable<Uint8Array>) yield c;
    } catch (e) {
      throw new FetchError(`SFTP transfer interrupted: ${describeError(e)}`, true);
    }
  }
  return {
    total,
    skip: 0,
    chunks: chunks(),
    async close() {
      cleanup();
      (s as unknown as { destroy?: () => void }).destroy?.();
      await client.end().catch(() => {});
    },
  };
}
