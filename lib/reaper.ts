// Orphan reaping for PID 1. Every orphan is re-parented to us and stays a
// zombie until we wait for it; but Bun waits for its own children and a
// blanket waitpid(-1) would steal their exit status (Bun then throws
// ECHILD). So only zombies Bun did not spawn are reaped, by pid.
import { reapIfExited } from "./sys/index.ts";
import { processIds, readProcStat } from "./proc-stat.ts";
import { spawnedPids } from "./spawn.ts";

export function reapOrphans(): number {
  let reaped = 0;
  for (const pid of processIds()) {
    if (pid === 1 || spawnedPids.has(pid)) continue;
    const st = readProcStat(pid);
    if (st?.state === "Z" && st.ppid === 1 && reapIfExited(pid)) reaped++;
  }
  return reaped;
}

export function startReaper(intervalMs = 5000): void {
  setInterval(reapOrphans, intervalMs).unref();
}
