// The failure path: say what failed and how to debug it, then offer a shell
// or reboot. PID 1 never exits; this function returns only to let the caller
// retry the boot after the shell is left.
import fs from "node:fs";
import { BREAKPOINTS, type BootParams } from "./cmdline.ts";
import { ARGON2ID_HASH } from "./config.ts";
import { BUSYBOX, EMERGENCY_PASSWORD_HASH } from "./paths.ts";
import { consoleWrite, log } from "./log.ts";
import { discardInput, errnoNameOf, pollIn, reboot, RB, setEcho, sync } from "./sys/index.ts";
import { runOnConsole } from "./spawn.ts";
import { messageOf, type BootParam } from "./errors.ts";

export const SHELL_ENV: Record<string, string> = {
  PATH: "/usr/sbin:/usr/bin:/sbin:/bin",
  HOME: "/",
  TERM: "linux",
  PS1: "bunboot# ",
  DM_DISABLE_UDEV: "1",
};

/** Who may have a shell: rd.shell=0 refuses it outright; a password hash asks first. */
export interface ShellPolicy {
  allowed: boolean;
  /** null: the console is trusted. "unreadable": a hash was installed but cannot be used. */
  passwordHash: string | null | "unreadable";
  /** How long a password prompt waits for input; 0 waits forever. */
  timeoutSec: number;
}

/**
 * The installed password hash. A file that exists but does not hold a
 * usable hash locks the shell rather than opening it: a damaged initrd must
 * not turn a locked-down console into an open one.
 */
export function readPasswordHash(path = EMERGENCY_PASSWORD_HASH): ShellPolicy["passwordHash"] {
  let text: string;
  try {
    text = fs.readFileSync(path, "utf8");
  } catch (e) {
    return errnoNameOf(e) === "ENOENT" ? null : "unreadable";
  }
  const hash = text.trim();
  return ARGON2ID_HASH.test(hash) ? hash : "unreadable";
}

/** Seconds to wait after the n-th wrong password in a row: 1, 2, 4 … capped at 60. */
export function wrongPasswordDelaySec(failures: number): number {
  return failures <= 0 ? 0 : Math.min(60, 2 ** (failures - 1));
}

export interface FailureReport {
  step: string;
  message: string;
  param?: BootParam;
}

/** The text printed on a failure; pure, so its wording is unit-tested. */
export function formatFailure(f: FailureReport, buildId: string): string {
  const lines = [`boot failed in step "${f.step}":`, ...f.message.split("\n").map((l) => "  " + l)];
  if (f.param) lines.push(`parameter to check: ${f.param}=`);
  lines.push(
    `to debug: add rd.debug or rd.earlytrace (log every step, command and uevent), rd.break=<${BREAKPOINTS.join("|")}> or rd.earlyshell (shell at breakpoints); the boot log is in /run/bunboot/log (initrd build ${buildId})`,
  );
  return lines.join("\n");
}

export function powerAction(action: "reboot" | "poweroff" | "halt"): never {
  log.info(`${action} now`);
  sync();
  const cmd = action === "reboot" ? RB.AUTOBOOT : action === "poweroff" ? RB.POWER_OFF : RB.HALT_SYSTEM;
  for (;;) {
    try {
      reboot(cmd);
    } catch (e) {
      log.err(`${action} failed: ${messageOf(e)}`);
    }
    Bun.sleepSync(1000);
  }
}

/**
 * Reads one line from the console; null on timeout (0: wait forever) or when
 * the console cannot be read. Polls without blocking and yields to the event
 * loop between polls, so signal handlers (Ctrl-Alt-Del), the uevent listener
 * and the reaper keep running while the prompt waits.
 */
async function readConsoleLine(timeoutSec: number): Promise<string | null> {
  const deadline = timeoutSec === 0 ? Infinity : Date.now() + timeoutSec * 1000;
  const buf = Buffer.alloc(256);
  const line: number[] = [];
  while (Date.now() < deadline) {
    if (pollIn(0, 0)) {
      let n = 0;
      try {
        n = fs.readSync(0, buf, 0, buf.length, null);
      } catch {
        return null;
      }
      for (const b of buf.subarray(0, n)) {
        if (b === 10 || b === 13) return Buffer.from(line).toString("utf8");
        // A password longer than this is noise; keep memory bounded.
        if (line.length < 4096) line.push(b);
      }
    }
    await Bun.sleep(100);
  }
  return null;
}

/**
 * Asks for the emergency password until it is right or nobody answers
 * within the timeout. Wrong answers wait longer each time, so guessing at the
 * console is slow; the waits are logged to the kernel log for the fleet's
 * log collection.
 */
async function passwordAccepted(policy: ShellPolicy): Promise<boolean> {
  if (policy.passwordHash === null) return true;
  if (policy.passwordHash === "unreadable") {
    log.err(`${EMERGENCY_PASSWORD_HASH} is present but holds no argon2id hash: the emergency shell stays locked`);
    return false;
  }
  // Echo goes off before the prompt is printed and stays off for the whole
  // dialog: the line discipline echoes as characters arrive, so anything
  // typed as soon as the prompt shows (or during a wait) would be shown.
  const echo = setEcho(0, false);
  try {
    for (let failures = 0; ; ) {
      consoleWrite("Emergency shell password: ");
      const answer = await readConsoleLine(policy.timeoutSec);
      consoleWrite("\n");
      if (answer === null) {
        log.warn("no password entered for the emergency shell");
        return false;
      }
      let ok = false;
      try {
        ok = await Bun.password.verify(answer, policy.passwordHash, "argon2id");
      } catch (e) {
        log.err(`checking the emergency password failed: ${messageOf(e)}`);
      }
      if (ok) return true;
      failures++;
      const delay = wrongPasswordDelaySec(failures);
      log.warn(`wrong password for the emergency shell (${failures} in a row); next try in ${delay} s`);
      await Bun.sleep(delay * 1000);
      // Guesses typed during the wait are dropped, or the wait would not slow anyone down.
      discardInput(0);
    }
  } finally {
    if (echo !== null) setEcho(0, echo);
  }
}

/**
 * Runs the emergency shell if the policy lets it; returns whether it ran.
 * Every shell the init offers (failures, breakpoints) goes through here, so
 * rd.shell=0 and the password cannot be bypassed by another path.
 */
export async function emergencyShell(reason: string, policy: ShellPolicy): Promise<boolean> {
  if (!policy.allowed) {
    log.warn(`rd.shell=0: no shell (${reason})`);
    return false;
  }
  if (!(await passwordAccepted(policy))) return false;
  log.info(`starting emergency shell (${reason}); leave it with "exit" to retry the boot`);
  // setsid + cttyhack: the shell needs the real tty (not /dev/console) as its
  // controlling terminal for job control and Ctrl-C.
  const code = await runOnConsole([BUSYBOX, "setsid", BUSYBOX, "cttyhack", BUSYBOX, "sh", "-l"], SHELL_ENV);
  log.info(`emergency shell exited (${code})`);
  return true;
}

/** The shell policy of this boot: from the command line when it was read, else the defaults. */
export function shellPolicyOf(params: BootParams | null): ShellPolicy {
  return { allowed: params?.shellAllowed ?? true, passwordHash: readPasswordHash(), timeoutSec: params?.emergencyTimeoutSec ?? 60 };
}

/** What the failure path does after the report; pure, so the choices are unit-tested. */
export function failureAction(params: BootParams | null): { kind: "power"; action: "reboot" | "poweroff" | "halt" } | { kind: "wait-then-reboot"; timeoutSec: number } | { kind: "shell" } | { kind: "prompt"; timeoutSec: number } {
  const action = params?.emergency ?? "prompt";
  const timeoutSec = params?.emergencyTimeoutSec ?? 60;
  if (action === "reboot" || action === "poweroff" || action === "halt") return { kind: "power", action };
  if (!(params?.shellAllowed ?? true)) return { kind: "wait-then-reboot", timeoutSec };
  return action === "shell" ? { kind: "shell" } : { kind: "prompt", timeoutSec };
}

/** When the machine reboots by itself, in words: rd.emergency.timeout=0 means never. */
function rebootWhen(timeoutSec: number): string {
  return timeoutSec === 0 ? "no automatic reboot (rd.emergency.timeout=0)" : `rebooting in ${timeoutSec} seconds`;
}

export async function handleFailure(f: FailureReport, params: BootParams | null, buildId: string): Promise<void> {
  log.err(formatFailure(f, buildId));
  const next = failureAction(params);
  const policy = shellPolicyOf(params);
  switch (next.kind) {
    case "power":
      powerAction(next.action);
    case "wait-then-reboot":
      // 0 keeps the message on the screen for good; Ctrl-Alt-Del still reboots.
      log.err(`rd.shell=0: no emergency shell; ${rebootWhen(next.timeoutSec)}`);
      if (next.timeoutSec === 0) for (;;) await Bun.sleep(3_600_000);
      await Bun.sleep(next.timeoutSec * 1000);
      powerAction("reboot");
    case "shell":
      if (await emergencyShell("rd.emergency=shell", policy)) return;
      powerAction("reboot");
    case "prompt":
      consoleWrite(
        next.timeoutSec === 0
          ? `\nPress Enter for emergency shell (rd.emergency.timeout=0: no automatic reboot).\n`
          : `\nPress Enter for emergency shell or wait ${next.timeoutSec} seconds for reboot.\n`,
      );
      if ((await readConsoleLine(next.timeoutSec)) !== null && (await emergencyShell("Enter pressed", policy))) return;
      powerAction("reboot");
  }
}
