// Logging for PID 1: every line goes to the kernel log (/dev/kmsg, so it is
// in dmesg next to the kernel's own timestamps) and to the console; debug
// lines reach the console only with rd.debug/rd.earlytrace. A copy is kept
// in memory and flushed to /run/bunboot/log once /run exists, for the
// emergency shell.
import fs from "node:fs";
import { logBody, stepDoneText } from "./bootlog.ts";
import { messageOf } from "./errors.ts";

export type Level = "err" | "warn" | "info" | "debug";
const KMSG_PRIO: Record<Level, number> = { err: 3, warn: 4, info: 6, debug: 7 };
// kmsg truncates records around 1 KiB; keep lines well below it.
const MAX_LINE = 900;

let kmsgFd: number | null = null;
let consoleFd: number | null = null;
let verbose = false;
let logFile: number | null = null;
const backlog: string[] = [];
const startMs = performance.now();
let step = "init";

export function setVerbose(on: boolean): void {
  verbose = on;
}
export function isVerbose(): boolean {
  return verbose;
}

let consoleLoglevel = 0;

/** Opens the sinks; called once /dev is mounted (before that, stderr is the console). */
export function openSinks(): void {
  // The kernel rate-limits /dev/kmsg writers to a burst of 10 lines; a
  // boot log with gaps is useless, so lift it (fails harmlessly when the
  // command line pinned printk.devkmsg).
  bestEffort("lifting the /dev/kmsg rate limit", () => fs.writeFileSync("/proc/sys/kernel/printk_devkmsg", "on\n"));
  try {
    kmsgFd ??= fs.openSync("/dev/kmsg", "w");
  } catch {
    kmsgFd = null;
  }
  try {
    // Records below console_loglevel are echoed on the console by the
    // kernel itself; printing them too would show every line twice. Unless
    // the rate limit is really off, kmsg may drop lines: then print all.
    const unlimited = fs.readFileSync("/proc/sys/kernel/printk_devkmsg", "utf8").trim() === "on";
    consoleLoglevel = unlimited ? Number(fs.readFileSync("/proc/sys/kernel/printk", "utf8").trim().split(/\s+/)[0]) || 0 : 0;
  } catch {
    consoleLoglevel = 0;
  }
  try {
    consoleFd ??= fs.openSync("/dev/console", "w");
  } catch {
    consoleFd = null;
  }
}

/** Starts writing the in-memory log to a file (under /run) and keeps appending to it. */
export function persistTo(path: string): void {
  try {
    fs.mkdirSync(path.slice(0, path.lastIndexOf("/")), { recursive: true });
    logFile = fs.openSync(path, "a");
    fs.writeSync(logFile, backlog.join(""));
  } catch {
    logFile = null;
  }
}

function uptime(): string {
  return ((performance.now() - startMs) / 1000).toFixed(3);
}

function emit(level: Level, text: string): void {
  for (const raw of text.split("\n")) {
    const line = raw.length > MAX_LINE ? raw.slice(0, MAX_LINE) + "…" : raw;
    const body = logBody(step, line);
    const record = `[${uptime()}] ${level === "info" ? "" : level + ": "}${body}\n`;
    backlog.push(record);
    if (backlog.length > 5000) backlog.shift();
    if (logFile !== null) safeWrite(logFile, record);
    if (kmsgFd !== null) safeWrite(kmsgFd, `<${KMSG_PRIO[level]}>${body}\n`);
    const echoedByKernel = kmsgFd !== null && KMSG_PRIO[level] < consoleLoglevel;
    const toConsole = (level !== "debug" || verbose) && !echoedByKernel;
    if (toConsole) {
      // Debug lines carry their own time: the trace is read for timing.
      const consoleLine =
        level === "debug"
          ? `[${uptime()}] ${logBody(step, line)}\n`
          : level === "info"
            ? `bunboot: ${line}\n`
            : `bunboot: ${level === "err" ? "ERROR" : "warning"}: ${line}\n`;
      if (consoleFd !== null) safeWrite(consoleFd, consoleLine);
      else safeWrite(2, consoleLine);
    }
  }
}

function safeWrite(fd: number, s: string): void {
  try {
    fs.writeSync(fd, s);
  } catch {
    // A full or broken sink must never take PID 1 down. Silent: logging the
    // failure would write to the sinks again (not bestEffort, for that reason).
  }
}

export const log = {
  err: (t: string) => emit("err", t),
  warn: (t: string) => emit("warn", t),
  info: (t: string) => emit("info", t),
  debug: (t: string) => {
    if (verbose) emit("debug", t);
    else {
      // Not shown, but kept for /run/bunboot/log: the emergency shell's first read.
      const record = `[${uptime()}] debug: ${logBody(step, t)}\n`;
      backlog.push(record);
      if (backlog.length > 5000) backlog.shift();
      if (logFile !== null) safeWrite(logFile, record);
    }
  },
};

/**
 * Runs something synchronous the boot can do without (a clock read, an
 * unmount on the way out): a failure is logged at debug level with what was
 * being done, never thrown, and the result is undefined. Safe before the
 * sinks are open (the line waits in memory for /run/bunboot/log) and in the
 * host commands (a debug line is printed only when verbose).
 */
export function bestEffort<T>(what: string, fn: () => T): T | undefined {
  try {
    return fn();
  } catch (e) {
    log.debug(`${what}: ignored ${messageOf(e)}`);
    return undefined;
  }
}

/** Raw text to the console only (prompts, progress), no prefix. */
export function consoleWrite(text: string): void {
  if (consoleFd !== null) safeWrite(consoleFd, text);
  else safeWrite(2, text);
}

export function currentStep(): string {
  return step;
}

/**
 * Runs one named boot step: the name prefixes every line logged inside it,
 * and its duration is logged at the end (the benchmark reads these lines).
 */
export async function runStep<T>(name: string, fn: () => Promise<T> | T): Promise<T> {
  const previous = step;
  step = name;
  const t0 = performance.now();
  log.debug(`step ${name}: start`);
  try {
    const result = await fn();
    log.info(stepDoneText(name, performance.now() - t0));
    return result;
  } catch (e) {
    if (e instanceof StepFailure) throw e;
    throw new StepFailure(name, e);
  } finally {
    step = previous;
  }
}

/** An error tagged with the boot step it happened in. */
export class StepFailure extends Error {
  constructor(
    readonly step: string,
    override readonly cause: unknown,
  ) {
    super(messageOf(cause));
  }
}
