// Module loading through kmod's modprobe (never busybox's: it ignores
// blacklists and alias globs). Requests are batched: while one modprobe runs,
// new aliases queue up and the next run takes them all, so a coldplug of a
// few hundred devices costs a handful of processes, not hundreds.
import fs from "node:fs";
import { log } from "./log.ts";
import { run } from "./spawn.ts";
import { messageOf } from "./errors.ts";

export const MODPROBE = "/sbin/modprobe";

/**
 * What every boot needs whatever the hardware: sd_mod is not requested by any
 * modalias (Flatcar loads it explicitly); loop, dm-verity, squashfs and
 * overlay back the mounts. The init loads them at its device-manager step;
 * the /init shim already starts them in its early job.
 */
export const BASE_MODULES: readonly string[] = ["sd_mod", "loop", "dm_mod", "dm_verity", "squashfs", "overlay"];

export class ModuleLoader {
  private queue = new Set<string>();
  private seen = new Set<string>();
  private running: Promise<void> | null = null;
  private idleWaiters: Array<() => void> = [];

  constructor(private readonly modprobe = MODPROBE) {}

  /** Queues aliases or module names; each one is asked for once per boot. */
  request(names: Iterable<string>): void {
    let added = false;
    for (const n of names) {
      if (!n || this.seen.has(n)) continue;
      this.seen.add(n);
      this.queue.add(n);
      added = true;
    }
    if (added && !this.running) this.running = this.drain();
  }

  /** Loads modules now and reports the ones modprobe could not load. */
  async load(names: readonly string[], why: string): Promise<void> {
    if (names.length === 0) return;
    const r = await run([this.modprobe, "-b", "-a", "--", ...names], { what: `load ${why}` });
    if (r.code !== 0) {
      log.warn(`modprobe ${names.join(" ")} (${why}) exited ${r.code}: ${r.stderr.trim() || "no message"}`);
    }
  }

  /** Module names an alias resolves to in this initrd (kmod's own matching, globs included). */
  async resolve(alias: string): Promise<string[]> {
    const r = await run([this.modprobe, "-R", "--", alias]);
    return r.code === 0 ? r.stdout.split("\n").map((l) => l.trim()).filter(Boolean) : [];
  }

  /** Resolves when no modprobe is running and nothing is queued. */
  idle(): Promise<void> {
    if (!this.running && this.queue.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** idle(), but gives up after `ms` with a warning instead of hanging the boot. */
  async idleWithin(ms: number): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = await Promise.race([
      this.idle().then(() => false),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(true), ms))),
    ]);
    clearTimeout(timer);
    if (timedOut) log.warn(`module loading still busy after ${ms / 1000} s (queued: ${[...this.queue].join(" ") || "none"}); going on`);
  }

  private async drain(): Promise<void> {
    try {
      while (this.queue.size > 0) {
        const batch = [...this.queue];
        this.queue.clear();
        // -q: most modaliases have no driver at all, which is not an error.
        const r = await run([this.modprobe, "-b", "-q", "-a", "--", ...batch], { what: `modalias batch of ${batch.length}` });
        if (r.code !== 0 && r.stderr.trim()) log.debug(`modprobe batch: ${r.stderr.trim()}`);
      }
    } catch (e) {
      log.warn(`modprobe could not run: ${messageOf(e)}`);
    } finally {
      // Whatever happened, later requests must start a new drain and
      // waiters must not hang.
      this.running = null;
      for (const w of this.idleWaiters.splice(0)) w();
    }
  }
}

export const BLACKLIST_CONF = "/etc/modprobe.d/bunboot-cmdline.conf";

/** The modprobe.d lines for rd.driver.blacklist= (pure, for tests). */
export function blacklistConf(modules: string[]): string {
  return modules.map((m) => `blacklist ${m}\n`).join("");
}

export function writeBlacklist(modules: string[]): void {
  if (modules.length === 0) return;
  fs.mkdirSync("/etc/modprobe.d", { recursive: true });
  fs.writeFileSync(BLACKLIST_CONF, blacklistConf(modules));
  log.info(`blacklisted modules (rd.driver.blacklist=): ${modules.join(" ")}`);
}
