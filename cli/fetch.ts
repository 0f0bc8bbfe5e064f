// bunboot fetch URL (--hashes LIST | --sha256 HEX | --insecure) -o OUT
// The init's download engine on a host: check an image and its hash list
// before a fleet boots them, and measure throughput without a VM.
import fs from "node:fs";
import parseArgs from "yargs-parser";
import { fetchImage } from "../lib/fetch/engine.ts";
import { ChunkVerifier, NoVerifier, parseStreamHashList, WholeImageVerifier, type StreamVerifier } from "../lib/streamhash.ts";

export const summary = "download and verify an image as the init does (HTTP(S), SFTP, file)";

const USAGE = `usage: bunboot fetch URL -o OUT (--hashes LIST | --sha256 HEX | --insecure)
  [--unwrap] (extract usr.squashfs from a cpio image, as the init does)
  [--proxy URL] [--sftp-key FILE] [--sftp-password-file FILE] [--sftp-host-key SHA256:...] [--attempts N] [--quiet]`;

export async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv, {
    string: ["o", "hashes", "sha256", "proxy", "sftp-key", "sftp-password-file", "sftp-host-key", "attempts"],
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
  const r = await fetchImage({
    url,
    out: String(args.o),
    verifier,
    unwrap: Boolean(args.unwrap),
    attempts: args.attempts ? Number(args.attempts) : 5,
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
  });
  if (!quiet) console.error(`bunboot fetch: ${r.bytesIn} bytes verified (${verifier.describe()}), ${r.bytesOut} written to ${args.o} in ${r.seconds.toFixed(2)} s${r.resumed ? `, resumed ${r.resumed}x` : ""}`);
  return 0;
}
