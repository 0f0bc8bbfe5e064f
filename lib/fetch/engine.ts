// Download, verify and write the /usr image: source -> verifier -> unwrapper
// (squashfs bytes of a PXE cpio) -> a temporary file next to the output,
// renamed into place only once everything is verified, unwrapped and synced.
// Used by the init for rd.usr.url= and by `bunboot fetch` on hosts.
//
// With a stream-hash list only proven bytes leave the verifier, so the
// unwrapper runs as the bytes stream. With a whole-image hash nothing is
// proven before the last byte: the served bytes go to a temporary file,
// are verified, and only then unwrapped (a served squashfs is renamed as is).
import fs from "node:fs";
import { randomBytes } from "node:crypto";
import { FetchError, openSource, redactUrl, sftpAuth, type OpenedSource, type SourceOptions } from "./sources.ts";
import { UsrImageUnwrapper, UnwrapError } from "./unwrap.ts";
import { StreamHashError, type StreamVerifier } from "../streamhash.ts";
import { BootError, messageOf, type BootParam } from "../errors.ts";
import { errnoNameOf } from "../sys/index.ts";

export interface FetchPlan {
  url: string;
  out: string;
  verifier: StreamVerifier;
  source: SourceOptions;
  /** Attempts for the transfer itself (after the first byte arrived once). */
  attempts: number;
  /** Total time to keep trying to reach the server while the network settles. */
  connectDeadlineMs: number;
  /** Unwrap a cpio holding usr.squashfs (the init); the host command keeps the image as served. */
  unwrap: boolean;
  log: (line: string) => void;
  progress?: (done: number, total: number | null, bytesPerSec: number) => void;
  /**
   * Stops the fetch: the transfer is cut, backoff sleeps end, and
   * fetchImage rejects with a FetchFailure whose `aborted` is true. The
   * output path is never written by an aborted fetch.
   */
  signal?: AbortSignal;
  /**
   * A connection that delivers fewer than this many bytes per second over
   * the last `rateWindowMs` (checked once it has been open that long) is a
   * dripping server: the fetch fails, naming the rate. Default 4096; 0 turns
   * the check off.
   */
  minBytesPerSec?: number;
  /** The window of `minBytesPerSec`, and its grace period. Default 60 000. */
  rateWindowMs?: number;
  /** Overall limit for the whole fetch, every attempt included. Default: none. */
  deadlineMs?: number;
}

export interface FetchResult {
  bytesIn: number;
  bytesOut: number;
  format: "squashfs" | "cpio" | "raw";
  resumed: number;
  seconds: number;
}

/** A failed fetch: a boot failure (naming rd.usr.url= or rd.usr.hash=) with where it failed. */
export class FetchFailure extends BootError {
  /** The URL with any credentials redacted (safe to print). */
  readonly url: string;
  constructor(
    message: string,
    url: string,
    readonly offset: number | null,
    override readonly param: BootParam,
    /** The caller's signal stopped the fetch. */
    readonly aborted = false,
  ) {
    super(message, { param });
    this.name = "FetchFailure";
    this.url = redactUrl(url);
  }
}

export const DEFAULT_MIN_BYTES_PER_SEC = 4096;
export const DEFAULT_RATE_WINDOW_MS = 60_000;

function dirOf(path: string): string {
  const slash = path.lastIndexOf("/");
  return slash < 0 ? "." : path.slice(0, slash) || "/";
}

function freeBytes(path: string): number | null {
  try {
    const st = fs.statfsSync(dirOf(path));
    return Number(st.bavail) * Number(st.bsize);
  } catch {
    return null;
  }
}

function writeAll(fd: number, data: Uint8Array, out: string): void {
  let done = 0;
  while (done < data.length) {
    try {
      done += fs.writeSync(fd, data, done, data.length - done);
    } catch (e) {
      if (errnoNameOf(e) === "ENOSPC") {
        throw new FetchFailure(
          `no space left while writing ${out}: the initramfs is a tmpfs in RAM (by default at most half of it), and the image does not fit. Give the machine more RAM.`,
          "",
          null,
          "rd.usr.url",
        );
      }
      throw e;
    }
  }
}

/** Sleeps, unless the signal fires first (then rejects with its reason). */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Awaits `p` unless the signal fires first. `p` may settle later: its
 * rejection is handled here, so it never surfaces as an unhandled rejection
 * (which PID 1 treats as a failed boot).
 */
function unlessAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  p.catch(() => {});
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });
}

/**
 * Closes a source without letting a dead connection hang the fetch: at most
 * 5 s, and not at all once the fetch was stopped.
 */
async function closeSource(src: OpenedSource, signal: AbortSignal): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const limit = new Promise<void>((resolve) => (timer = setTimeout(resolve, 5000)));
  await Promise.race([unlessAborted(src.close(), signal).catch(() => {}), limit]);
  clearTimeout(timer);
}

function reasonText(reason: unknown): string {
  if (reason instanceof Error && reason.name !== "AbortError" && reason.message) return `: ${reason.message}`;
  if (typeof reason === "string" && reason) return `: ${reason}`;
  return " (aborted by the caller)";
}

function seconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(3))} s`;
}

function fsyncDir(dir: string): void {
  try {
    const fd = fs.openSync(dir, "r");
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    // Best effort (tmpfs, or a directory that cannot be opened): the file itself is synced.
  }
}

export async function fetchImage(plan: FetchPlan): Promise<FetchResult> {
  const t0 = performance.now();
  const fail = (message: string, offset: number | null = null, param: BootParam = "rd.usr.url") => new FetchFailure(message, plan.url, offset, param);

  // One signal for everything that stops the fetch for good: the caller,
  // the overall deadline, a dripping server.
  const ctl = new AbortController();
  const onCallerAbort = () => ctl.abort(new FetchFailure(`the download was abandoned${reasonText(plan.signal?.reason)}`, plan.url, null, "rd.usr.url", true));
  if (plan.signal?.aborted) onCallerAbort();
  else plan.signal?.addEventListener("abort", onCallerAbort, { once: true });
  const deadline =
    plan.deadlineMs !== undefined ? setTimeout(() => ctl.abort(fail(`the download did not finish within its deadline of ${seconds(plan.deadlineMs!)}`)), plan.deadlineMs) : undefined;
  const stopped = () => {
    if (ctl.signal.aborted) throw ctl.signal.reason;
  };
  const minRate = plan.minBytesPerSec ?? DEFAULT_MIN_BYTES_PER_SEC;
  const rateWindow = plan.rateWindowMs ?? DEFAULT_RATE_WINDOW_MS;

  // Temporary files beside the output (same filesystem: rename is atomic),
  // unique per call: an abandoned fetch still running never shares one.
  const tag = `${process.pid}-${randomBytes(4).toString("hex")}`;
  const partial = `${plan.out}.partial-${tag}`;
  // Whole-image hash + unwrap: the served bytes, kept until the hash is checked.
  const deferUnwrap = plan.unwrap && plan.verifier.verifiesAtEnd;
  const served = deferUnwrap ? `${plan.out}.download-${tag}` : partial;
  const temps = [...new Set([served, partial])];
  const streamUnwrapper = plan.unwrap && !deferUnwrap ? new UsrImageUnwrapper() : null;

  let fd = -1;
  let bytesOut = 0;
  let resumed = 0;
  let transferAttempt = 0;
  let everConnected = false;
  let lastProgress = 0;
  let checkedSpace = false;
  let format: FetchResult["format"] = "raw";
  const sink = (verified: Uint8Array[]) => {
    for (const v of verified) {
      for (const piece of streamUnwrapper ? streamUnwrapper.push(v) : [v]) {
        writeAll(fd, piece, plan.out);
        bytesOut += piece.length;
      }
    }
  };
  try {
    stopped();
    if (plan.url.startsWith("sftp:")) {
      // Once, before any connection: a password without a pinned host key is refused here.
      for (const w of sftpAuth(plan.url, plan.source.sftp ?? {}).warnings) plan.log(w);
    }
    fd = fs.openSync(served, "wx", 0o644);
    for (;;) {
      stopped();
      const offset = plan.verifier.verifiedLength;
      let src: OpenedSource;
      try {
        src = await unlessAborted(openSource(plan.url, offset, plan.source, ctl.signal), ctl.signal);
      } catch (e) {
        stopped();
        if (!(e instanceof FetchError) || !e.retryable) throw e;
        // Before the first answer the network may still be settling: keep
        // trying, with backoff, until the deadline.
        const waited = performance.now() - t0;
        if (!everConnected && waited < plan.connectDeadlineMs) {
          const delay = Math.min(8000, 500 * 2 ** Math.min(transferAttempt, 4));
          plan.log(`cannot reach the server yet (${e.message}); retrying in ${(delay / 1000).toFixed(1)} s`);
          transferAttempt++;
          await sleep(delay, ctl.signal);
          continue;
        }
        if (everConnected && ++transferAttempt < plan.attempts) {
          plan.log(`reconnect failed (${e.message}); retrying (attempt ${transferAttempt + 1} of ${plan.attempts})`);
          await sleep(1000 * transferAttempt, ctl.signal);
          continue;
        }
        throw e;
      }
      if (!everConnected && src.note) plan.log(src.note);
      if (!everConnected) transferAttempt = 0;
      everConnected = true;
      if (!checkedSpace && src.total !== null) {
        checkedSpace = true;
        const free = freeBytes(plan.out);
        if (free !== null && src.total - bytesOut > free) {
          await closeSource(src, ctl.signal);
          throw fail(`the image is ${(src.total / 1048576).toFixed(0)} MiB but only ${(free / 1048576).toFixed(0)} MiB of RAM is free for the initramfs: give the machine more RAM`);
        }
      }
      let skip = src.skip;
      // Bytes of the image received so far, verified or still pending.
      let received = offset;
      if (skip > 0) plan.log(`${src.skipReason ?? "the server ignored the Range request"}: skipping the ${skip} bytes already verified`);

      // The minimum rate: bytes from the server over the last window,
      // sampled at most 20 times a window (lenient by one sample).
      const opened = performance.now();
      let fromServer = 0;
      const samples: Array<[number, number]> = [[opened, 0]];
      const checkRate = () => {
        if (minRate <= 0 || ctl.signal.aborted) return;
        const now = performance.now();
        if (now - samples.at(-1)![0] >= rateWindow / 20) samples.push([now, fromServer]);
        if (now - opened < rateWindow) return;
        const from = now - rateWindow;
        while (samples.length > 1 && samples[1]![0] <= from) samples.shift();
        const inWindow = fromServer - samples[0]![1];
        if (inWindow < (minRate * rateWindow) / 1000) {
          ctl.abort(fail(`the server sent ${inWindow} bytes in the last ${seconds(rateWindow)} (below the minimum of ${minRate} bytes/s)`, plan.verifier.verifiedLength));
        }
      };
      const rateTimer = minRate > 0 ? setInterval(checkRate, Math.max(20, Math.min(1000, rateWindow / 10))) : undefined;
      const it = src.chunks[Symbol.asyncIterator]();
      try {
        for (;;) {
          const next = await unlessAborted(it.next(), ctl.signal);
          if (next.done) break;
          const raw = next.value;
          fromServer += raw.length;
          checkRate();
          stopped();
          let chunk = raw;
          if (skip > 0) {
            const drop = Math.min(skip, chunk.length);
            skip -= drop;
            chunk = chunk.subarray(drop);
            if (chunk.length === 0) continue;
          }
          received += chunk.length;
          sink(plan.verifier.push(chunk));
          const now = performance.now();
          if (plan.progress && now - lastProgress > 2000) {
            lastProgress = now;
            plan.progress(plan.verifier.verifiedLength, src.total, plan.verifier.verifiedLength / ((now - t0) / 1000));
          }
        }
      } catch (e) {
        clearInterval(rateTimer);
        await closeSource(src, ctl.signal);
        stopped();
        if (e instanceof FetchError && e.retryable && ++transferAttempt < plan.attempts) {
          plan.verifier.discardPending();
          resumed++;
          plan.log(`connection dropped after ${plan.verifier.verifiedLength} verified bytes (${e.message}); resuming from byte ${plan.verifier.verifiedLength} (attempt ${transferAttempt + 1} of ${plan.attempts})`);
          await sleep(500 * transferAttempt, ctl.signal);
          continue;
        }
        throw e;
      }
      clearInterval(rateTimer);
      await closeSource(src, ctl.signal);
      stopped();
      if (src.total !== null && received !== src.total) {
        if (received > src.total) throw fail(`the server sent ${received} bytes of an image it said is ${src.total} bytes`, src.total);
        // The body ended early without an error (a proxy cutting it): resume.
        if (++transferAttempt < plan.attempts) {
          plan.verifier.discardPending();
          resumed++;
          plan.log(`transfer ended at byte ${received} of ${src.total}; resuming from byte ${plan.verifier.verifiedLength} (attempt ${transferAttempt + 1} of ${plan.attempts})`);
          continue;
        }
        // Never a silent success with a short image, verified or not.
        throw fail(`the transfer ended at byte ${received} of ${src.total} announced, ${plan.attempts} times`, received);
      }
      break;
    }
    sink(plan.verifier.end());
    streamUnwrapper?.end();
    if (streamUnwrapper) format = streamUnwrapper.format!;
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = -1;
    let ready = partial;
    if (deferUnwrap) {
      // The served bytes are proven: now they may be read as an archive.
      const r = await unwrapFile(served, partial, plan.out, ctl.signal);
      format = r.format;
      bytesOut = r.bytesOut;
      ready = r.path;
    }
    // No await between this check and the rename: an abandoned fetch never
    // puts its file in place.
    stopped();
    fs.renameSync(ready, plan.out);
    fsyncDir(dirOf(plan.out));
  } catch (e) {
    // Nothing unverified or partial may stay where the boot could pick it up.
    if (fd >= 0) fs.closeSync(fd);
    for (const t of temps) fs.rmSync(t, { force: true });
    if (ctl.signal.aborted) throw ctl.signal.reason;
    if (e instanceof FetchFailure) throw new FetchFailure(e.message, plan.url, e.offset, e.param, e.aborted);
    if (e instanceof StreamHashError) throw fail(`verification failed at byte ${e.offset}: ${e.message}`, e.offset, plan.verifier.describe().startsWith("sha256") ? "rd.usr.hash" : "rd.usr.url");
    if (e instanceof UnwrapError) throw fail(e.message);
    if (e instanceof FetchError) throw fail(e.message);
    const code = (e as NodeJS.ErrnoException | null)?.code;
    if (code) throw fail(`writing ${plan.out} failed: ${messageOf(e)}`);
    throw e;
  } finally {
    clearTimeout(deadline);
    plan.signal?.removeEventListener("abort", onCallerAbort);
  }
  for (const t of temps) fs.rmSync(t, { force: true });
  return {
    bytesIn: plan.verifier.verifiedLength,
    bytesOut,
    format,
    resumed,
    seconds: (performance.now() - t0) / 1000,
  };
}

/**
 * Unwraps the verified image at `from` into `to`. A squashfs as served
 * needs no copy: `from` itself is the result. The caller removes both.
 */
async function unwrapFile(from: string, to: string, out: string, signal: AbortSignal): Promise<{ path: string; format: "squashfs" | "cpio"; bytesOut: number }> {
  const input = await fs.promises.open(from, "r");
  let fd = -1;
  try {
    const u = new UsrImageUnwrapper();
    const buf = Buffer.allocUnsafe(1 << 20);
    let bytesOut = 0;
    for (;;) {
      if (signal.aborted) throw signal.reason;
      const { bytesRead } = await input.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      const pieces = u.push(buf.subarray(0, bytesRead));
      if (u.format === "squashfs") {
        // Served as a squashfs: the verified file is the image.
        u.end();
        return { path: from, format: "squashfs", bytesOut: (await input.stat()).size };
      }
      if (fd < 0 && pieces.length > 0) fd = fs.openSync(to, "wx", 0o644);
      // Written before the next read reuses the buffer.
      for (const p of pieces) {
        writeAll(fd, p, out);
        bytesOut += p.length;
      }
    }
    u.end();
    if (fd < 0) fd = fs.openSync(to, "wx", 0o644);
    fs.fsyncSync(fd);
    return { path: to, format: "cpio", bytesOut };
  } finally {
    await input.close();
    if (fd >= 0) fs.closeSync(fd);
  }
}
