// The /init shim's early driver loading, run under busybox sh with a stand-in
// for busybox that records what would have run: whether it starts must follow
// the command line the way the init reads it (lib/cmdline.ts), whatever the
// spacing or quoting the kernel accepts.
import { describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { shimScript } from "./initrd.ts";
import { EARLY_COLDPLUG_ENV } from "../early-coldplug.ts";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "bunboot-shim-test-"));

/** Runs the shim's early-coldplug block; returns what it ran and the PID it passed on. */
function runEarlyColdplug(cmdline: string, inheritedEnv: Record<string, string> = {}): { ran: string[]; pid: string } {
  const script = shimScript({ modules: [] });
  const start = script.indexOf(`unset ${EARLY_COLDPLUG_ENV}`);
  const end = script.indexOf("esac\n", start) + 5;
  expect(start).toBeGreaterThan(0);
  const cmdlineFile = path.join(tmp, "cmdline");
  const log = path.join(tmp, "ran");
  fs.writeFileSync(cmdlineFile, cmdline + "\n");
  fs.rmSync(log, { force: true });
  const fakeBusybox = path.join(tmp, "busybox");
  fs.writeFileSync(fakeBusybox, `#!/bin/busybox sh\ncase "$1" in cat) exec /bin/busybox cat "${cmdlineFile}" ;; *) echo "$1" >> "${log}" ;; esac\n`, { mode: 0o755 });
  // The stand-in also takes modprobe's place: nothing may load on the test host.
  const block = script.slice(start, end).replaceAll("/sbin/modprobe", `${fakeBusybox} modprobe`);
  expect(block).not.toContain("/sbin/");
  const body = `B=${fakeBusybox}\n${block}wait\necho "pid=\${${EARLY_COLDPLUG_ENV}:-}"\n`;
  const r = Bun.spawnSync(["/bin/busybox", "sh", "-c", body], { env: { PATH: "/usr/bin:/bin", ...inheritedEnv } });
  expect(r.exitCode).toBe(0);
  const ran = fs.existsSync(log) ? fs.readFileSync(log, "utf8").trim().split("\n").sort() : [];
  return { ran, pid: r.stdout.toString().match(/pid=(.*)/)?.[1] ?? "" };
}

describe("the shim's early driver loading", () => {
  test("runs on a plain command line and passes its PID on", () => {
    const r = runEarlyColdplug("root=LABEL=ROOT verity.usrhash=abc quiet");
    // xargs is the stand-in too, so only the base modules' modprobe shows up.
    expect(r.ran).toEqual(["find", "modprobe", "mount", "sort", "tr", "xargs"]);
    expect(r.pid).toMatch(/^[1-9]\d*$/);
  });

  test("does not run when the init must act first, however the word is written", () => {
    for (const cmdline of [
      "rd.driver.blacklist=virtio_blk",
      "quiet\trd.driver.blacklist=nouveau",
      '"rd.driver.blacklist=nouveau"',
      "rd.driver.pre=virtio_scsi",
      "rd.earlyshell",
      "rd.earlyshell=1",
      "rd.break=pre-udev",
      '"rd.break=pre-udev"',
      "rd.break=pre-mount rd.break=pre-udev",
    ]) {
      const r = runEarlyColdplug(cmdline);
      expect({ cmdline, ran: r.ran, pid: r.pid }).toEqual({ cmdline, ran: [], pid: "" });
    }
  });

  test("a PID smuggled in through the command line's environment is dropped when it does not run", () => {
    const r = runEarlyColdplug("rd.earlyshell", { [EARLY_COLDPLUG_ENV]: "1" });
    expect(r.pid).toBe("");
  });
});
