// The failure path: say what failed and how to debug it, then offer a shell
// or reboot. PID 1 never exits; this function returns only to let the caller
// retry the boot after the shell is left.
import fs from "node:fs";
import type { BootParams } from "./cmdline.ts";
import { consoleWrite, log } from "./log.ts";
import { pollIn, reboot, RB, sync } from "./sys/index.ts";
import { runOnConsole } from "./spawn.ts";

export const BUSYBOX = "/bin/busybox";
export const SHELL_ENV: Record<string, string> = {
  PATH: "/usr/sbin:/usr/bin:/sbin:/bin",
  HOME: "/",
  TERM: "linux",
  PS1: "bunboot# ",
  DM_DISABLE_UDEV: "1",
};

export interface FailureReport {
  step: string;
  message: string;
  param?: string;
}

/** The text printed on a failure; pure, so its wording is unit-tested. */
export function formatFailure(f: FailureReport, buildId: string): string {
  const lines = [`boot failed in step "${f.step}":`, ...f.message.split("\n").map((l) => "  " + l)];
  if (f.param) lines.push(`parameter to check: ${f.param}=`);
  lines.push(
    `to debug: add rd.debug or rd.earlytrace (log every step, command and uevent), rd.break=<pre-udev|pre-verity|pre-mount|pre-switch-root> or rd.earlyshell (shell at breakpoints); the boot log is in /run/bunboot/log (initrd build ${buildId})`,
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
      log.err(`${action} failed: ${e instanceof Error ? e.message : e}`);
    }
    Bun.sleepSync(1000);
  }
}

/**
 * Waits for Enter on the console. Polls without blocking and yields to the
 * event loop between polls, so signal handlers (Ctrl-Alt-Del), the uevent
 * listener and the reaper keep running while the prompt waits.
 */
async function waitForEnter(timeoutSec: number): Promise<boolean> {
  const deadline = Date.now() + timeoutSec * 1000;
  const buf = Buffer.alloc(256);
  while (Date.now() < deadline) {
    if (pollIn(0, 0)) {
      let n = 0;
      try {
        n = fs.readSync(0, buf, 0, buf.length, null);
      } catch {
        return false;
      }
      const got = buf.subarray(0, n);
      if (got.includes(10) || got.includes(13)) return true;
    }
    await Bun.sleep(100);
  }
  return false;
}

export async function emergencyShell(reason: string): Promise<void> {
  log.info(`starting emergency shell (${reason}); leave it with "exit" to retry the boot`);
  // setsid + cttyhack: the shell needs the real tty (not /dev/console) as its
  // controlling terminal for job control and Ctrl-C.
  const code = await runOnConsole([BUSYBOX, "setsid", BUSYBOX, "cttyhack", BUSYBOX, "sh", "-l"], SHELL_ENV);
  log.info(`emergency shell exited (${code})`);
}

export async function handleFailure(f: FailureReport, params: BootParams | null, buildId: string): Promise<void> {
  log.err(formatFailure(f, buildId));
  const action = params?.emergency ?? "prompt";
  const timeout = params?.emergencyTimeoutSec ?? 60;
  const shellAllowed = params?.shellAllowed ?? true;
  if (action === "reboot" || action === "poweroff" || action === "halt") powerAction(action);
  if (!shellAllowed) {
    log.err(`rd.shell=0: no emergency shell; rebooting in ${timeout} seconds`);
    await Bun.sleep(timeout * 1000);
    powerAction("reboot");
  }
  if (action === "shell") {
    await emergencyShell("rd.emergency=shell");
    return;
  }
  consoleWrite(`\nPress Enter for emergency shell or wait ${timeout} seconds for reboot.\n`);
  if (await waitForEnter(timeout)) {
    await emergencyShell("Enter pressed");
    return;
  }
  powerAction("reboot");
}
