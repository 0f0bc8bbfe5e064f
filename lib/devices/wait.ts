// Waiting for the device a DeviceRef names: woken by every uevent, re-runs
// coldplug now and then (events can be lost), says once what it waits for
// and every few seconds that it still waits, and on timeout lists what it
// did see so the user can correct the parameter.
import fs from "node:fs";
import { escapeControls } from "../text.ts";
import { formatDeviceRef, type DeviceRef } from "./ref.ts";
import { log } from "../log.ts";
import { BootError, type BootParam } from "../errors.ts";
import type { DeviceManager } from "../uevent/manager.ts";
import { describeDevice, listBlockDevices, type BlockDevice } from "./blockdevs.ts";
import { matchDevices, normaliseRef, refNeedsFsProbe } from "./match.ts";

const STILL_WAITING_MS = 5000;
const RECOLDPLUG_MS = 2000;

/**
 * The settle window after the first match: the wait answers once no block
 * device appeared (or went) for SETTLE_QUIET_MS, and at the latest
 * SETTLE_MAX_MS after the first match. Disks of one controller show up
 * within milliseconds of each other; the window is for a second controller
 * (or a USB stick with a copy of the image) that is a moment slower, whose
 * partition with the same PARTUUID/LABEL must turn the boot into the
 * "several devices match" error instead of a silent pick. Cost: every boot
 * from a disk waits SETTLE_QUIET_MS more (up to SETTLE_MAX_MS while block
 * devices keep appearing). A duplicate slower than that is not seen.
 */
export const SETTLE_QUIET_MS = 1000;
export const SETTLE_MAX_MS = 3000;

function isBlockDeviceNode(path: string): boolean {
  try {
    return fs.statSync(path).isBlockDevice();
  } catch {
    return false;
  }
}

export interface WaitOptions {
  /** See SETTLE_QUIET_MS. */
  settleQuietMs?: number;
  /** See SETTLE_MAX_MS; 0 answers at the first match. */
  settleMaxMs?: number;
  /** The block devices present now (default: listBlockDevices, from sysfs). A seam for tests. */
  listDevices?: (probeFs: boolean) => BlockDevice[];
  /** Whether devtmpfs has the node yet (default: stat). A seam for tests. */
  isBlockDevice?: (path: string) => boolean;
  /**
   * Answer at the first match and run the settle window behind the boot's
   * back: the promise handed over rejects with the "several devices match"
   * error if a second match turns up (or the match goes away) within the
   * window. The init awaits it before the switch root, so a disk boot does
   * not pay for the window while verity and the mounts run.
   */
  settleInBackground?: (settled: Promise<void>) => void;
  /** How often the wait says it still waits (default STILL_WAITING_MS). */
  stillWaitingMs?: number;
}

/** The part of the device manager a wait uses. */
export type DeviceEvents = Pick<DeviceManager, "coldplug" | "nextEvent">;

/** Which block devices exist, for telling "something appeared or went" in the settle window. */
// Devices the boot makes itself (the verity mapping, the loop devices of the
// full initrd and the payload, RAM disks) are no sign of a slower disk, and
// counting them kept the window open while verity and the mounts ran: the
// benchmark showed the switch root waiting 1.4 s for it.
const MADE_BY_THE_BOOT = /^(loop|dm-|ram|zram)\d/;

export function shapeOf(devices: BlockDevice[]): string {
  return devices
    .map((d) => d.name)
    .filter((n) => !MADE_BY_THE_BOOT.test(n))
    .join("\n");
}

export async function waitForDevice(
  param: BootParam,
  ref: DeviceRef,
  timeoutSec: number,
  devices: DeviceEvents,
  onStillWaiting?: () => Promise<string | null>,
  opts: WaitOptions = {},
): Promise<string> {
  const listDevices = opts.listDevices ?? ((probeFs: boolean) => listBlockDevices({ probeFs }));
  const isBlockDevice = opts.isBlockDevice ?? isBlockDeviceNode;
  const settleQuietMs = opts.settleQuietMs ?? SETTLE_QUIET_MS;
  const settleMaxMs = opts.settleMaxMs ?? SETTLE_MAX_MS;
  const stillWaitingMs = opts.stillWaitingMs ?? STILL_WAITING_MS;
  // Labels come from the command line and from disks: escaped wherever shown.
  const what = `${param}=${escapeControls(formatDeviceRef(ref))}`;
  const describe = (d: BlockDevice) => "  " + escapeControls(describeDevice(d));
  const r = normaliseRef(ref);
  const probeFs = refNeedsFsProbe(r);

  /**
   * The devices present and those the reference matches. More than one match
   * is an error at once; a match counts even before devtmpfs has its node
   * (sysfs shows a device a moment earlier), since it is a duplicate all the same.
   */
  function lookup(): { present: BlockDevice[]; matches: BlockDevice[] } {
    const present = listDevices(probeFs);
    const matches = matchDevices(r, present);
    if (matches.length > 1) {
      throw new BootError(
        `${what} matches ${matches.length} devices, expected exactly one:\n${matches.map(describe).join("\n")}\nUse a unique PARTUUID= or UUID= instead.`,
        { param },
      );
    }
    return { present, matches };
  }

  /** The single usable match, if there is one now. */
  function usable(matches: BlockDevice[]): string | null {
    return matches.length === 1 && isBlockDevice(matches[0]!.devPath) ? matches[0]!.devPath : null;
  }

  /**
   * After the first match: keeps listening until the block devices have been
   * quiet for settleQuietMs (bounded by settleMaxMs), re-checking for a
   * second match at every event, then answers with the match as it stands
   * (null if it went away meanwhile, and the wait goes on).
   */
  async function settle(first: string, present: BlockDevice[]): Promise<string | null> {
    if (settleMaxMs <= 0) return first;
    const start = performance.now();
    let lastChange = start;
    let shape = shapeOf(present);
    for (;;) {
      const now = performance.now();
      const left = Math.min(settleQuietMs - (now - lastChange), settleMaxMs - (now - start));
      if (left <= 0) break;
      await devices.nextEvent(left);
      const seen = lookup();
      const s = shapeOf(seen.present);
      if (s !== shape) {
        shape = s;
        lastChange = performance.now();
      }
    }
    const dev = usable(lookup().matches);
    log.debug(`${what}: no other match within ${Math.round(performance.now() - start)} ms after the first`);
    return dev;
  }

  /**
   * The block devices present, for the still-waiting report: listed with
   * their identities the first time and whenever they change, so an
   * operator sees "a disk, but not the one named" without a shell; counted
   * otherwise, so a long wait does not repeat the list every 5 s. The
   * superblocks are read only when the set changed: a disk that hangs on
   * reads would otherwise stall every report (and the timeout behind it),
   * and a PARTUUID wait never needed them.
   */
  let reportedShape: string | null = null;
  let reportedAt = 0;
  function deviceReport(elapsedSec: number): string {
    const shape = shapeOf(listDevices(false));
    if (shape === reportedShape) return shape === "" ? "block devices: still none" : `block devices: the same ${shape.split("\n").length} as at ${reportedAt} s`;
    const disks = listDevices(true).filter((d) => !MADE_BY_THE_BOOT.test(d.name));
    reportedShape = shape;
    reportedAt = elapsedSec;
    return disks.length === 0 ? "block devices: none yet" : `block devices:\n${disks.map(describe).join("\n")}`;
  }

  const t0 = performance.now();
  let lastReport = t0;
  let lastColdplug = t0;
  let announced = false;
  for (;;) {
    // A /dev path names one node by itself: nothing to disambiguate.
    if (r.kind === "path" && isBlockDevice(r.value)) return r.value;
    if (r.kind !== "path") {
      const { present, matches } = lookup();
      const first = usable(matches);
      if (first !== null && opts.settleInBackground) {
        opts.settleInBackground(
          settle(first, present).then((dev) => {
            if (dev !== first) throw new BootError(`${what} was ${first}, but ${dev === null ? "it went away" : `it is now ${dev}`} while the boot went on`, { param });
          }),
        );
        log.info(`${what} is ${first}`);
        return first;
      }
      if (first !== null) {
        const dev = await settle(first, present);
        if (dev !== null) {
          log.info(`${what} is ${dev}`);
          return dev;
        }
      }
    }
    const now = performance.now();
    const elapsed = now - t0;
    if (timeoutSec > 0 && elapsed >= timeoutSec * 1000) {
      const seen = listDevices(true);
      // The boot's own devices (the payload image's loop device) are listed
      // apart: beside them, "no disk" must still read as "no disk".
      const disks = seen.filter((d) => !MADE_BY_THE_BOOT.test(d.name));
      const own = seen.filter((d) => MADE_BY_THE_BOOT.test(d.name));
      const hint = await onStillWaiting?.();
      throw new BootError(
        `timed out after ${timeoutSec} s waiting for ${what} (rd.earlytimeout=${timeoutSec}). Block devices seen:\n` +
          (disks.length ? disks.map(describe).join("\n") : "  none: no disk driver found a disk") +
          (own.length ? `\n  besides the boot's own: ${own.map((d) => escapeControls(d.name)).join(", ")}` : "") +
          (hint ? `\n${hint.split("\n").map(escapeControls).join("\n")}` : ""),
        { param },
      );
    }
    if (!announced) {
      log.info(`waiting for ${what}${timeoutSec > 0 ? ` (up to ${timeoutSec} s, rd.earlytimeout=)` : ""}`);
      announced = true;
    } else if (now - lastReport >= stillWaitingMs) {
      lastReport = now;
      const sec = Math.round(elapsed / 1000);
      const extra = await onStillWaiting?.();
      // One report, indented below its first line: the hint tells "no
      // driver" and "driver but no disk" apart, the devices "disk but not
      // the one named". The hint quotes sysfs (driver and host names):
      // escaped like the device lists.
      const details = [...(extra ? extra.split("\n").map(escapeControls) : []), ...deviceReport(sec).split("\n")];
      log.info(`still waiting for ${what} (${sec} s)\n${details.map((l) => "  " + l).join("\n")}`);
    }
    if (now - lastColdplug >= RECOLDPLUG_MS) {
      lastColdplug = now;
      devices.coldplug();
    }
    await devices.nextEvent(Math.min(500, stillWaitingMs));
  }
}
