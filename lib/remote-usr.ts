// rd.usr.url= at boot: choose the verifier (the initrd's stream-hash list is
// the trust root; rd.usr.hash= otherwise), collect SFTP credentials from the
// initrd, and stream the image to /usr.squashfs with progress on the console.
import fs from "node:fs";
import type { BootParams } from "./cmdline.ts";
import { consoleWrite, log } from "./log.ts";
import { fetchImage, FetchFailure } from "./fetch/engine.ts";
import { redactUrl, type SftpCredentials } from "./fetch/sources.ts";
import { ChunkVerifier, NoVerifier, parseStreamHashList, WholeImageVerifier, type StreamVerifier } from "./streamhash.ts";
import type { UsrPlan } from "./plan.ts";
import { BootError } from "./errors.ts";
import { readOptional } from "./fsutil.ts";

import { SFTP_HOST_KEY, SFTP_KEY, SFTP_PASSWORD, USR_HASHES } from "./paths.ts";

export function sftpCredentials(): SftpCredentials {
  return {
    privateKey: readOptional(SFTP_KEY) ?? undefined,
    // Arrives in an appended cpio, never on the command line.
    password: readOptional(SFTP_PASSWORD)?.trim() ?? undefined,
    hostKeySha256: readOptional(SFTP_HOST_KEY)?.trim() ?? undefined,
  };
}

function verifierFor(plan: Extract<UsrPlan, { kind: "remote" }>): StreamVerifier {
  if (plan.hashList) return new ChunkVerifier(parseStreamHashList(fs.readFileSync(USR_HASHES, "utf8"), USR_HASHES));
  if (plan.sha256) return new WholeImageVerifier(plan.sha256);
  return new NoVerifier();
}

/**
 * Fetches the /usr image to plan.image. The file appears there only once it
 * is complete and verified. `signal` abandons the fetch (a superseded boot
 * attempt): the transfer stops, the promise rejects, nothing is left behind.
 */
export async function fetchUsr(plan: Extract<UsrPlan, { kind: "remote" }>, p: BootParams, buildId: string, signal?: AbortSignal): Promise<void> {
  const verifier = verifierFor(plan);
  const pinned = !(verifier instanceof NoVerifier);
  if (plan.insecure && !pinned) log.warn("rd.usr.insecure=1: the /usr image will NOT be verified");
  if (pinned && plan.url.startsWith("https:")) log.info("TLS certificate checks are skipped for the /usr download: its content is verified against the pinned hash instead");
  log.info(`fetching /usr from ${redactUrl(plan.url)} (verified by ${verifier.describe()})`);
  let lastLine = "";
  try {
    const r = await fetchImage({
      url: plan.url,
      out: plan.image,
      verifier,
      unwrap: true,
      attempts: 6,
      connectDeadlineMs: 60_000,
      source: { insecureTls: pinned, proxy: p.proxy, stallMs: 30_000, sftp: plan.url.startsWith("sftp:") ? sftpCredentials() : undefined },
      signal,
      log: (l) => log.info(l),
      progress: (done, total, rate) => {
        const line = `fetching /usr: ${(done / 1048576).toFixed(1)} MiB${total ? ` of ${(total / 1048576).toFixed(1)} MiB (${Math.floor((done * 100) / total)}%)` : ""}, ${(rate / 1048576).toFixed(1)} MiB/s`;
        if (line !== lastLine) consoleWrite(`bunboot: ${line}\n`);
        lastLine = line;
      },
    });
    log.info(`fetched /usr: ${r.bytesIn} bytes verified, ${r.bytesOut} bytes of squashfs (${r.format}) in ${r.seconds.toFixed(1)} s${r.resumed ? `, resumed ${r.resumed} time(s)` : ""}`);
  } catch (e) {
    if (e instanceof FetchFailure) {
      throw new BootError(
        `fetching the /usr image failed:\n${e.url}\n${e.message}${e.offset !== null ? `\nat byte offset ${e.offset}` : ""}\nthis initrd (build ${buildId}) expects ${verifier.describe()}; nothing was mounted`,
        { param: e.param, cause: e },
      );
    }
    throw e;
  }
}
