// The device manager, like `mdev -d` plus `mdev -s`: a netlink listener
// that loads a module for every MODALIAS the kernel announces (hotplug), and
// a coldplug pass over the devices that existed before we started listening.
// devtmpfs creates the /dev nodes itself, so there is nothing else to do for
// a device; waiters are woken on every event to re-check what they wait for.
import fs from "node:fs";
import { log } from "../log.ts";
import type { ModuleLoader } from "../kmod.ts";
import { openUeventSocket, close, errnoNameOf } from "../sys/index.ts";
import { parseNetlinkUevent, parseUeventFile, type Uevent } from "./parse.ts";
import { messageOf } from "../errors.ts";
import { readSysValue } from "../fsutil.ts";

export class DeviceManager {
  private fd: number | null = null;
  private stopped = false;
  private waiters: Array<() => void> = [];
  eventCount = 0;

  /** `sysfs` is a seam for tests. */
  constructor(
    private readonly modules: Pick<ModuleLoader, "request">,
    private readonly sysfs = "/sys",
  ) {}

  /** Starts listening; must run before coldplug so no device falls in between. */
  start(): void {
    this.stopped = false;
    if (this.fd !== null) return;
    this.fd = openUeventSocket();
    const fd = this.fd;
    void this.readLoop(fd).catch((e) => {
      // A dead listener means hotplugged devices go unnoticed; the periodic
      // re-coldplug in waits still finds them, so say it and carry on.
      log.warn(`uevent listener stopped: ${messageOf(e)}`);
      if (this.fd === fd) {
        close(fd);
        this.fd = null;
      }
    });
  }

  /**
   * Stops handling events. The blocked read on the pool thread stays until
   * the process execs (switch root); closing its fd would not wake it.
   */
  stop(): void {
    this.stopped = true;
  }

  private async readLoop(fd: number): Promise<void> {
    const buf = Buffer.alloc(64 * 1024);
    while (!this.stopped) {
      const n = await new Promise<number>((resolve, reject) =>
        fs.read(fd, buf, 0, buf.length, null, (err, bytes) => {
          // ENOBUFS: the kernel dropped events while we were busy; the
          // re-coldplug in device waits recovers what they announced.
          if (err && errnoNameOf(err) === "ENOBUFS") resolve(0);
          else if (err) reject(err);
          else resolve(bytes);
        }),
      );
      if (n === 0) continue;
      if (this.stopped) break;
      const ev = parseNetlinkUevent(buf.subarray(0, n));
      if (ev) this.handle(ev);
    }
    if (this.fd === fd) {
      close(fd);
      this.fd = null;
    }
  }

  private handle(ev: Uevent): void {
    this.eventCount++;
    log.debug(`uevent ${ev.action} ${ev.devpath}${ev.env.SUBSYSTEM ? ` (${ev.env.SUBSYSTEM})` : ""}${ev.env.MODALIAS ? ` modalias=${ev.env.MODALIAS}` : ""}`);
    if (ev.action === "add" && ev.env.MODALIAS) this.modules.request([ev.env.MODALIAS]);
    for (const w of this.waiters.splice(0)) w();
  }

  /**
   * Coldplug: asks for a module for every device already on a bus. Reading
   * the modalias files directly is cheaper than replaying "add" into every
   * uevent file, and it is idempotent, so waits re-run it to catch events
   * lost to a full socket buffer. Some buses announce MODALIAS in the uevent
   * only and have no modalias file: an SD card's "mmc:block" (mmc_block),
   * found while the shim's early job loaded sdhci_pci, before the listener
   * ran. For a device without the file its uevent file is read instead.
   */
  coldplug(): number {
    const aliases: string[] = [];
    let buses: string[] = [];
    try {
      buses = fs.readdirSync(`${this.sysfs}/bus`);
    } catch {
      return 0;
    }
    for (const bus of buses) {
      let devices: string[] = [];
      try {
        devices = fs.readdirSync(`${this.sysfs}/bus/${bus}/devices`);
      } catch {
        continue;
      }
      for (const d of devices) {
        const dir = `${this.sysfs}/bus/${bus}/devices/${d}`;
        const alias = readSysValue(`${dir}/modalias`) ?? modaliasOfUevent(readSysValue(`${dir}/uevent`));
        if (alias) aliases.push(alias);
      }
    }
    this.modules.request(aliases);
    return aliases.length;
  }

  /** Resolves on the next uevent or after `ms`, whichever is first. */
  nextEvent(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        resolve();
      }
      this.waiters.push(done);
    });
  }
}

/** MODALIAS= of a uevent file's text (null: no file, or a device no driver binds by alias). */
export function modaliasOfUevent(text: string | null): string | null {
  return text === null ? null : (parseUeventFile(text).MODALIAS ?? null);
}
