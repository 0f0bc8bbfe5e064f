// Waiting for the device a DeviceRef names: woken by every uevent, re-runs
// coldplug now and then (events can be lost), says once what it waits for
// and every few seconds that it still waits, and on timeout lists what it
// did see so the user can correct the parameter.
import fs from "node:fs";
import type { DeviceRef } from "../cmdline.ts";
import { formatDeviceRef } from "../cmdline.ts";
import { log } from "../log.ts";
import type { DeviceManager } from "../uevent/manager.ts";
import { describeDevice, listBlockDevices } from "./blockdevs.ts";
import { matchDevices, normaliseRef, refNeedsFsProbe } from "./match.ts";

export class DeviceError extends Error {
  constructor(
    message: string,
    readonly param: string,
  ) {
    super(message);
  }
}

const STILL_WAITING_MS = 5000;
const RECOLDPLUG_MS = 2000;

function isBlockDevice(path: string): boolean {
  try {
    return fs.statSync(path).isBlockDevice();
  } catch {
    return false;
  }
}

export async function waitForDevice(
  param: string,
  ref: DeviceRef,
  timeoutSec: number,
  devices: DeviceManager,
  onStillWaiting?: () => Promise<string | null>,
): Promise<string> {
  const what = `${param}=${formatDeviceRef(ref)}`;
  const r = normaliseRef(ref);
  const probeFs = refNeedsFsProbe(r);
  const t0 = performance.now();
  let lastReport = t0;
  let lastColdplug = t0;
  let announced = false;
  for (;;) {
    if (r.kind === "path" && isBlockDevice(r.value)) return r.value;
    if (r.kind !== "path") {
      // sysfs shows a device a moment before devtmpfs has its node.
      const found = matchDevices(r, listBlockDevices({ probeFs })).filter((d) => isBlockDevice(d.devPath));
      if (found.length === 1) {
        log.info(`${what} is ${found[0]!.devPath}`);
        return found[0]!.devPath;
      }
      if (found.length > 1) {
        throw new DeviceError(
          `${what} matches ${found.length} devices, expected exactly one:\n${found.map((d) => "  " + describeDevice(d)).join("\n")}\nUse a unique PARTUUID= or UUID= instead.`,
          param,
        );
      }
    }
    const now = performance.now();
    const elapsed = now - t0;
    if (timeoutSec > 0 && elapsed >= timeoutSec * 1000) {
      const seen = listBlockDevices({ probeFs: true });
      const hint = await onStillWaiting?.();
      throw new DeviceError(
        `timed out after ${timeoutSec} s waiting for ${what} (rd.earlytimeout=${timeoutSec}). Block devices seen:\n` +
          (seen.length ? seen.map((d) => "  " + describeDevice(d)).join("\n") : "  none: no disk driver found a disk") +
          (hint ? `\n${hint}` : ""),
        param,
      );
    }
    if (!announced) {
      log.info(`waiting for ${what}${timeoutSec > 0 ? ` (up to ${timeoutSec} s, rd.earlytimeout=)` : ""}`);
      announced = true;
    } else if (now - lastReport >= STILL_WAITING_MS) {
      lastReport = now;
      const extra = await onStillWaiting?.();
      log.info(`still waiting for ${what} (${Math.round(elapsed / 1000)} s)${extra ? `; ${extra}` : ""}`);
    }
    if (now - lastColdplug >= RECOLDPLUG_MS) {
      lastColdplug = now;
      devices.coldplug();
    }
    await devices.nextEvent(500);
  }
}
