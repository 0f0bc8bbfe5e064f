// The shim's early driver loading (EARLY_COLDPLUG in lib/initrd/initrd.ts)
// runs in the background into the init's time. It must be over before the
// switch root: a modprobe still running would hold files of the detached
// payload image (keeping it in RAM) and carry a first-stage process into
// stage 2. It normally ends seconds before; this waits, bounded, and stops
// it if it hangs.
import { log } from "./log.ts";
import { messageOf } from "./errors.ts";
import { processIds, readProcStat } from "./proc-stat.ts";

/** The variable the shim passes the job's PID in. */
export const EARLY_COLDPLUG_ENV = "BUNBOOT_EARLY_COLDPLUG";

/** The PIDs below `pid` (children, grandchildren, ...), from /proc. */
function descendants(pid: number): number[] {
  const parentOf = new Map<number, number>();
  for (const p of processIds()) {
    const st = readProcStat(p);
    if (st) parentOf.set(p, st.ppid);
  }
  const out: number[] = [];
  const frontier = [pid];
  while (frontier.length > 0) {
    const p = frontier.pop()!;
    for (const [child, parent] of parentOf) if (parent === p && !out.includes(child)) (out.push(child), frontier.push(child));
  }
  return out;
}

/**
 * Waits until the shim's job is gone (or a zombie, for the reaper), at most
 * `timeoutMs`, then kills it and everything it started. Takes the variable
 * out of `env`, which stage 2 inherits. A value that is not a PID, or a
 * process that is not our child, is ignored: the variable may have come from
 * the command line.
 */
export async function awaitEarlyColdplug(env: Record<string, string | undefined>, timeoutMs = 30_000, parentPid = 1): Promise<"none" | "done" | "killed"> {
  const raw = env[EARLY_COLDPLUG_ENV];
  delete env[EARLY_COLDPLUG_ENV];
  if (raw === undefined) return "none";
  if (!/^[1-9][0-9]{0,9}$/.test(raw)) {
    log.warn(`ignoring ${EARLY_COLDPLUG_ENV}=${JSON.stringify(raw.slice(0, 40))}: not a process id`);
    return "none";
  }
  const pid = Number(raw);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const st = readProcStat(pid);
    if (!st || st.state === "Z" || st.ppid !== parentPid) return "done";
    if (Date.now() >= deadline) break;
    await Bun.sleep(50);
  }
  const victims = [pid, ...descendants(pid)];
  log.warn(`the shim's early driver loading (pid ${pid}) is still running after ${timeoutMs / 1000} s; stopping it and ${victims.length - 1} process(es) it started before the switch root`);
  for (const v of victims) {
    try {
      process.kill(v, "SIGKILL");
    } catch (e) {
      log.debug(`kill ${v}: ${messageOf(e)}`);
    }
  }
  return "killed";
}
