// The /init shim's early driver loading, run under busybox sh with a stand-in
// for busybox that records what would have run: whether it starts must follow
// the command line the way the init reads it (lib/cmdline.ts), whatever the
// spacing or quoting the kernel accepts.
import { describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { LATE_CONSOLE_MODULES, LATE_CONSOLE_WAIT_TENTHS, shimScript } from "./initrd.ts";
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

/**
 * Runs the shim's open_console with the descriptors the kernel left (closed
 * when `closed`), a stand-in modprobe that records its arguments and may
 * make the console appear, a file (or, `consoleIsDirectory`, something that
 * opens for reading but not for writing) standing in for /dev/console, and
 * a stand-in /proc/cmdline.
 */
function runLateConsole(opts: { closed: boolean; consoleAppears: boolean; waitTenths?: number; cmdline?: string; consoleIsDirectory?: boolean }): {
  modprobe: string;
  fds: Record<string, string>;
  kmsg: string;
  console: string;
} {
  const dir = fs.mkdtempSync(path.join(tmp, "console-"));
  const console = path.join(dir, "console");
  const kmsg = path.join(dir, "kmsg");
  const cmdline = path.join(dir, "cmdline");
  const ran = path.join(dir, "modprobe-args");
  const report = path.join(dir, "fds");
  const modprobe = path.join(dir, "modprobe");
  fs.writeFileSync(kmsg, "");
  fs.writeFileSync(cmdline, `${opts.cmdline ?? "console=hvc0 verity.usr=PARTUUID=x"}\n`);
  const appear = opts.consoleIsDirectory ? `mkdir "${console}"` : `: > "${console}"`;
  fs.writeFileSync(modprobe, `#!/bin/busybox sh\necho "$*" >> "${ran}"\n${opts.consoleAppears ? appear + "\n" : ""}`, { mode: 0o755 });
  const script = shimScript({ modules: [] });
  const start = script.indexOf("open_console() {");
  const end = script.indexOf("say() {");
  expect(start).toBeGreaterThan(0);
  expect(end).toBeGreaterThan(start);
  let block = script
    .slice(start, end)
    .replaceAll("/sbin/modprobe", modprobe)
    .replaceAll("/dev/console", console)
    .replaceAll("/dev/kmsg", kmsg)
    .replaceAll("/proc/cmdline", cmdline);
  if (opts.waitTenths !== undefined) block = block.replaceAll(`${LATE_CONSOLE_WAIT_TENTHS}`, `${opts.waitTenths}`);
  expect(block).not.toContain("/sbin/");
  const body = `${opts.closed ? "exec 0<&- 1>&- 2>&-\n" : ""}B=/bin/busybox\n${block}open_console\nexec 3>"${report}"\nfor f in 0 1 2; do echo "$f=$($B readlink /proc/$$/fd/$f)" >&3; done\necho to-stdout\n`;
  const r = Bun.spawnSync(["/bin/busybox", "sh", "-c", body], { env: { PATH: "/usr/bin:/bin" }, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  expect(r.exitCode).toBe(0);
  const fds: Record<string, string> = {};
  for (const line of fs.readFileSync(report, "utf8").trim().split("\n")) fds[line.slice(0, line.indexOf("="))] = line.slice(line.indexOf("=") + 1);
  const read = (f: string) => (fs.existsSync(f) && fs.statSync(f).isFile() ? fs.readFileSync(f, "utf8") : "");
  return { modprobe: read(ran).trim(), fds, kmsg: read(kmsg), console: read(console) };
}

describe("the shim when the kernel had no console (console=hvc0, virtio_console a module)", () => {
  test("with the console the kernel opened, it does nothing", () => {
    const r = runLateConsole({ closed: false, consoleAppears: true });
    expect(r.modprobe).toBe("");
    expect(r.fds["0"]).toBe("/dev/null");
    expect(r.kmsg).toBe("");
  });

  test("with 0-2 closed it loads the console drivers and gives /dev/console to 0, 1 and 2", () => {
    const r = runLateConsole({ closed: true, consoleAppears: true });
    expect(r.modprobe).toBe(`-b -a -q -- ${LATE_CONSOLE_MODULES.join(" ")}`);
    expect(LATE_CONSOLE_MODULES).toContain("virtio_console");
    expect(new Set(Object.values(r.fds)).size).toBe(1);
    expect(r.fds["0"]).toEndWith("/console");
    // What the init and its children write goes there.
    expect(r.console).toBe("to-stdout\n");
    expect(r.kmsg).toMatch(/^<5>bunboot: the kernel had no console at start; \S+\/console opened after loading virtio_pci virtio_mmio virtio_console \(0 tenths of a second\)\n$/);
  });

  test("when the console never appears it gives up after the wait and holds 0-2 with /dev/null", () => {
    const t0 = performance.now();
    const r = runLateConsole({ closed: true, consoleAppears: false, waitTenths: 3 });
    expect(performance.now() - t0).toBeGreaterThanOrEqual(300);
    expect(r.fds).toEqual({ "0": "/dev/null", "1": "/dev/null", "2": "/dev/null" });
    expect(r.kmsg).toContain("<3>bunboot: no console to open even after loading virtio_pci virtio_mmio virtio_console: the boot goes on without one");
  });

  test("a console driver named in rd.driver.blacklist= is not loaded, however it is written; other blacklists do not stop it", () => {
    for (const cmdline of ["rd.driver.blacklist=virtio_console", 'rd.driver.blacklist=e1000,virtio-pci', '"rd.driver.blacklist=nvme,virtio_mmio"']) {
      const r = runLateConsole({ closed: true, consoleAppears: false, waitTenths: 1, cmdline: `console=hvc0 ${cmdline}` });
      expect(r.modprobe).toBe("");
      expect(r.fds["0"]).toBe("/dev/null");
    }
    const r = runLateConsole({ closed: true, consoleAppears: true, cmdline: "console=hvc0 rd.driver.blacklist=e1000,virtio_net" });
    expect(r.modprobe).toBe(`-b -a -q -- ${LATE_CONSOLE_MODULES.join(" ")}`);
    expect(r.fds["0"]).toEndWith("/console");
  });

  test("a console that opens for reading but not for writing does not end the shell (PID 1): 0-2 go to /dev/null", () => {
    const r = runLateConsole({ closed: true, consoleAppears: true, consoleIsDirectory: true });
    expect(r.fds).toEqual({ "0": "/dev/null", "1": "/dev/null", "2": "/dev/null" });
    expect(r.kmsg).toContain("<3>bunboot: no console to open");
  });

  test("the shim's own failures try the console first", () => {
    const script = shimScript({ modules: [] });
    expect(script).toMatch(/give_up\(\) \{\n  open_console\n/);
    // And the boot opens it after the payload is mounted, where modprobe exists.
    expect(script.indexOf("\nopen_console\n")).toBeGreaterThan(script.indexOf("mount -t squashfs"));
  });
});
