// Orphan reaping for PID 1. Every orphan is re-parented to us and stays a
// zombie until we wait for it; but Bun waits for its own children and a
// blanket waitpid(-1) would steal their exit status (Bun then throws
// ECHILD). So only zombies Bun did not spawn are reaped, by pid.
import fs from "node:fs";
import { reapIfExited } from "./sys/index.ts";
import { spawnedPids } from "./spawn.ts";

export function reapOrphans(): number {
  let reaped = 0;
  let pids: string[];
  try {
    pids = fs.readdirSync("/proc").filter((d) => /^\d+$/.test(d));
  } catch {
    return 0;
  }
  for (const p of pids) {
    const pid = Number(p);
    if (pid === 1 || spawnedPids.has(pid)) continue;
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/${p}/stat`, "utf8");
    } catch {
      continue;
    }
    // "pid (comm) S ppid ...": comm may hold spaces and parentheses.
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (rest[0] === "Z" && rest[1] === "1" && reapIfExited(pid)) reaped++;
  }
  return reaped;
}

export function startReaper(intervalMs = 5000): void {
  setInterval(reapOrphans, intervalMs).unref();
}
