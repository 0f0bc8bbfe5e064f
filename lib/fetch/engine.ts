// Download, verify and write the /usr image in one pass: source -> verifier
// (only verified bytes come out) -> unwrapper (squashfs bytes of a PXE cpio)
// -> file. Used by the init for rd.usr.url= and by `bunboot fetch` on hosts.
import fs from "node:fs";
import { FetchError, openSource, type SourceOptions } from "./sources.ts";
import { UsrImageUnwrapper, UnwrapError } from "./unwrap.ts";
import { StreamHashError, type StreamVerifier } from "../streamhash.ts";

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
}

export interface FetchResult {
  bytesIn: number;
  bytesOut: number;
  format: "squashfs" | "cpio" | "raw";
  resumed: number;
  seconds: number;
}

export class FetchFailure extends Error {
  constructor(
    message: string,
    readonly url: string,
    readonly offset: number | null,
    readonly param: string,
  ) {
    super(message);
  }
}

function freeBytes(path: string): number | null {
  try {
    const dir = path.slice(0, path.lastIndexOf("/")) || "/";
    const st = fs.statfsSync(dir);
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
      if ((e as NodeJS.ErrnoException).code === "ENOSPC") {
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

export async function fetchImage(plan: FetchPlan): Promise<FetchResult> {
  const t0 = performance.now();
  const fd = fs.openSync(plan.out, "w", 0o644);
  const unwrapper = plan.unwrap ? new UsrImageUnwrapper() : null;
  let bytesOut = 0;
  let resumed = 0;
  let transferAttempt = 0;
  let everConnected = false;
  let lastProgress = 0;
  let checkedSpace = false;
  const sink = (verified: Uint8Array[]) => {
    for (const v of verified) {
      for (const piece of unwrapper ? unwrapper.push(v) : [v]) {
        writeAll(fd, piece, plan.out);
        bytesOut += piece.length;
      }
    }
  };
  try {
    for (;;) {
      const offset = plan.verifier.verifiedLength;
      let src;
      try {
        src = await openSource(plan.url, offset, plan.source);
      } catch (e) {
        if (!(e instanceof FetchError) || !e.retryable) throw e;
        // Before the first answer the network may still be settling: keep
        // trying, with backoff, until the deadline.
        const waited = performance.now() - t0;
        if (!everConnected && waited < plan.connectDeadlineMs) {
          const delay = Math.min(8000, 500 * 2 ** Math.min(transferAttempt, 4));
          plan.log(`cannot reach the server yet (${e.message}); retrying in ${(delay / 1000).toFixed(1)} s`);
          transferAttempt++;
          await Bun.sleep(delay);
          continue;
        }
        if (everConnected && ++transferAttempt < plan.attempts) {
          plan.log(`reconnect failed (${e.message}); retrying (attempt ${transferAttempt + 1} of ${plan.attempts})`);
          await Bun.sleep(1000 * transferAttempt);
          continue;
        }
        throw e;
      }
      if (!everConnected) transferAttempt = 0;
      everConnected = true;
      if (!checkedSpace && src.total !== null) {
        checkedSpace = true;
        const free = freeBytes(plan.out);
        if (free !== null && src.total - bytesOut > free) {
          await src.close();
          throw new FetchFailure(
            `the image is ${(src.total / 1048576).toFixed(0)} MiB but only ${(free / 1048576).toFixed(0)} MiB of RAM is free for the initramfs: give the machine more RAM`,
            plan.url,
            null,
            "rd.usr.url",
          );
        }
      }
      let skip = src.skip;
      // Bytes of the image received so far, verified or still pending.
      let received = offset;
      if (skip > 0) plan.log(`the server ignored the Range request: skipping the ${skip} bytes already verified`);
      try {
        for await (const raw of src.chunks) {
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
        await src.close();
        if (e instanceof FetchError && e.retryable && ++transferAttempt < plan.attempts) {
          plan.verifier.discardPending();
          resumed++;
          plan.log(`connection dropped after ${plan.verifier.verifiedLength} verified bytes (${e.message}); resuming from byte ${plan.verifier.verifiedLength} (attempt ${transferAttempt + 1} of ${plan.attempts})`);
          await Bun.sleep(500 * transferAttempt);
          continue;
        }
        throw e;
      }
      await src.close();
      if (src.total !== null && received < src.total) {
        // The body ended early without an error (a proxy cutting it): resume.
        if (++transferAttempt < plan.attempts) {
          plan.verifier.discardPending();
          resumed++;
          plan.log(`transfer ended at byte ${received} of ${src.total}; resuming from byte ${plan.verifier.verifiedLength} (attempt ${transferAttempt + 1} of ${plan.attempts})`);
          continue;
        }
      }
      break;
    }
    sink(plan.verifier.end());
    unwrapper?.end();
    fs.fsyncSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    // Nothing unverified may stay where the boot could pick it up.
    fs.rmSync(plan.out, { force: true });
    if (e instanceof FetchFailure) throw new FetchFailure(e.message, plan.url, e.offset, e.param);
    if (e instanceof StreamHashError) throw new FetchFailure(`verification failed at byte ${e.offset}: ${e.message}`, plan.url, e.offset, plan.verifier.describe().startsWith("sha256") ? "rd.usr.hash" : "rd.usr.url");
    if (e instanceof UnwrapError) throw new FetchFailure(e.message, plan.url, null, "rd.usr.url");
    if (e instanceof FetchError) throw new FetchFailure(e.message, plan.url, null, "rd.usr.url");
    throw e;
  }
  fs.closeSync(fd);
  return {
    bytesIn: plan.verifier.verifiedLength,
    bytesOut,
    format: unwrapper?.format ?? "raw",
    resumed,
    seconds: (performance.now() - t0) / 1000,
  };
}
