// bunboot fetch URL (--hashes LIST | --sha256 HEX | --insecure) -o OUT
// The init's download engine on a host: check an image and its hash list
// before a fleet boots them, and measure throughput without a VM.
import fs from "node:fs";
import parseArgs from "yargs-parser";
import { fetchImage, FetchFailure } from "../lib/fetch/engine.ts";
import { ChunkVerifier, NoVerifier, parseStreamHashList, WholeImageVerifier, type StreamVerifier } from "../lib/streamhash.ts";

export const summary = "download and verify an image as the init does (HTTP(S), SFTP, file)";

const USAGE = `usage: bunboot fetch URL -o OUT (--hashes LIST | --sha256 HEX | --insecure)
  [--unwrap] (extract usr.squashfs from a cpio image, as the init does)
  [--proxy URL] [--sftp-key FILE] [--sftp-password-file FILE] [--sftp-host-key SHA256:...] [--attempts N]
  [--min-rate BYTES_PER_SEC] (fail when the server sends less over a minute; default 4096, 0: off)
  [--deadline SECONDS] (give up on the whole download after this long) [--quiet]
  A password (--sftp-password-file) is only sent to a server whose host key is pinned (--sftp-host-key).
  OUT appears only once the image is complete and verified.`;

function positive(name: string, value: unknown, allowZero: boolean): number {
  const n = Number(value);
  if (typeof value !== "string" || !/^\d+(\.\d+)?$/.test(value) || (!allowZero && n === 0)) {
    throw new Error(`--${name} expects a ${allowZero ? "non-negative" : "positive"} number, got ${JSON.stringify(value)}`);
  }
  return n;
}

export async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv, {
    string: ["o", "hashes", "sha256", "proxy", "sftp-key", "sftp-password-file", "sftp-host-key", "attempts", "min-rate", "deadline"],
    boolean: ["insecure", "unwrap", "quiet", "help"],
    configuration: { "strip-dashed": true },
  });
  if (args.help) {
    console.log(USAGE);
    return 0;
  }
  if (args._.length !== 1 || !args.o) {
    console.error(USAGE);
    return 2;
  }
  const url = String(args._[0]);
  let verifier: StreamVerifier;
  if (args.hashes) verifier = new ChunkVerifier(parseStreamHashList(fs.readFileSync(args.hashes, "utf8"), args.hashes));
  else if (args.sha256) {
    const hex = String(args.sha256).replace(/^sha256:/, "").toLowerCase();
    if (!/^[0-9a-f]{64}$/.test(hex)) throw new Error(`--sha256 expects 64 hex digits, got ${JSON.stringify(args.sha256)}`);
    verifier = new WholeImageVerifier(hex);
  } else if (args.insecure) verifier = new NoVerifier();
  else throw new Error("refusing an unverified download: give --hashes LIST or --sha256 HEX (or --insecure)");
  const pinned = !(verifier instanceof NoVerifier);
  const quiet = Boolean(args.quiet);
  const attempts = args.attempts !== undefined ? Math.floor(positive("attempts", args.attempts, false)) : 5;
  const minBytesPerSec = args.minRate !== undefined ? positive("min-rate", args.minRate, true) : undefined;
  const deadlineMs = args.deadline !== undefined ? positive("deadline", args.deadline, false) * 1000 : undefined;
  // Ctrl-C removes the temporary file instead of leaving it behind.
  const stop = new AbortController();
  const onSignal = (sig: NodeJS.Signals) => stop.abort(new Error(`interrupted (${sig})`));
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  const r = await fetchImage({
    url,
    out: String(args.o),
    verifier,
    unwrap: Boolean(args.unwrap),
    attempts,
    minBytesPerSec,
    deadlineMs,
    signal: stop.signal,
    connectDeadlineMs: 10_000,
    source: {
      insecureTls: pinned,
      proxy: args.proxy,
      stallMs: 30_000,
      sftp: {
        privateKey: args.sftpKey ? fs.readFileSync(args.sftpKey, "utf8") : undefined,
        password: args.sftpPasswordFile ? fs.readFileSync(args.sftpPasswordFile, "utf8").trim() : undefined,
        hostKeySha256: args.sftpHostKey,
      },
    },
    log: (l) => quiet || console.error(`bunboot fetch: ${l}`),
    progress: quiet ? undefined : (done, total, rate) => console.error(`bunboot fetch: ${(done / 1048576).toFixed(1)} MiB${total ? ` of ${(total / 1048576).toFixed(1)} MiB` : ""}, ${(rate / 1048576).toFixed(1)} MiB/s`),
  })
    .catch((e) => {
      if (e instanceof FetchFailure && e.aborted) {
        console.error(`bunboot fetch: ${e.message}; ${args.o} was not written`);
        return null;
      }
      throw e;
    })
    .finally(() => {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
    });
  if (r === null) return 130;
  if (!quiet) console.error(`bunboot fetch: ${r.bytesIn} bytes verified (${verifier.describe()}), ${r.bytesOut} written to ${args.o} in ${r.seconds.toFixed(2)} s${r.resumed ? `, resumed ${r.resumed}x` : ""}`);
  return 0;
}
