// Reading processes from /proc/PID/stat, for the orphan reaper and the wait
// for the shim's early driver loading.
import fs from "node:fs";

export interface ProcStat {
  /** One letter: R, S, D, Z, ... */
  state: string;
  ppid: number;
}

/** State and parent of a /proc/PID/stat line; the command name may hold any byte, ")" included. */
export function parseProcStat(text: string): ProcStat | null {
  const close = text.lastIndexOf(")");
  if (close < 0) return null;
  const f = text.slice(close + 1).trim().split(/\s+/);
  const ppid = Number(f[1]);
  if (!f[0] || !/^[A-Za-z]$/.test(f[0]) || !Number.isSafeInteger(ppid)) return null;
  return { state: f[0], ppid };
}

/** The stat of one process, or null when it is gone or unreadable. */
export function readProcStat(pid: number): ProcStat | null {
  try {
    return parseProcStat(fs.readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return null;
  }
}

/** PIDs of the processes now in /proc (none if /proc cannot be read). */
export function processIds(): number[] {
  try {
    return fs.readdirSync("/proc").filter((d) => /^\d+$/.test(d)).map(Number);
  } catch {
    return [];
  }
}
