// The consoles a Flatcar machine boots with: `console=tty0
// console=ttyS0,115200n8` (the kernel writes to both, /dev/console is the
// last one) and `console=hvc0` on a virtio console, whose driver is a module
// the kernel does not have when it starts /init (lib/initrd/initrd.ts,
// CONSOLE_LATE). On each, the boot log and the failure must be readable and
// the emergency shell must run on that console with it as its controlling
// terminal. docs/consoles.md.
import { describe, expect, test } from "bun:test";
import { fixtures, requireInitrd } from "./harness/fixtures.ts";
import { CACHE, USR_A_UUID } from "./harness/images.ts";
import { expectCtrlCStopsJob } from "./harness/shell.ts";
import { vmSlots } from "./harness/slots.ts";
import { bootToStage2, Vm, type VmOptions } from "./harness/vm.ts";

const BOOT_MS = 240_000;
/** A PARTUUID no disk has: the boot fails in wait-usr after rd.earlytimeout=. */
const ABSENT = "6c9ae0e9-0d4a-4e6f-9bb1-9a7e5b2b9b01";
const FAILING = `verity.usr=PARTUUID=${ABSENT} verity.usrhash=${"0".repeat(64)} rd.earlytimeout=3 rd.emergency.timeout=120`;

/** The virtio console on the host's stdio; the serial port (no console on it) goes to a file. */
const HVC = (name: string): Pick<VmOptions, "kernelConsole" | "consoleArgs"> => ({
  kernelConsole: "console=hvc0",
  consoleArgs: ["-device", "virtio-serial-pci", "-chardev", "stdio,id=c0", "-device", "virtconsole,chardev=c0", "-serial", `file:${CACHE}/${name}.ttyS0`],
});

/**
 * A failing boot, read and answered on the console the test is attached to:
 * the boot log and the failure are there, Enter gives the shell, the shell's
 * terminal is `tty` and Ctrl-C stops its foreground job (job control needs
 * the console as controlling terminal). Returns what the shell printed.
 */
async function failThenShell(vm: Vm, tty: string): Promise<string> {
  try {
    await vm.expect("Press Enter for emergency shell or wait 120 seconds for reboot.", BOOT_MS);
    vm.send("\n");
    await vm.expect("bunboot# ", 60_000);
    const mark = vm.console.length;
    vm.send("echo CONSOLE-OK-$((40 + 2)) tty=$(tty) active=[$(cat /sys/class/tty/console/active)] unopened=$(dmesg | grep -c 'unable to open an initial console')\n");
    await vm.expect(/CONSOLE-OK-42 tty=\S+ active=\[[^\]]*\] unopened=\d+/, 30_000, mark);
    await expectCtrlCStopsJob(vm);
    const shell = vm.console.slice(mark);
    expect(shell).toContain(`tty=${tty} `);
    return shell;
  } finally {
    vm.kill();
  }
}

function expectBootLogAndFailure(out: string): void {
  expect(out).toMatch(/bunboot\S*: bunboot starting \(PID 1,/);
  expect(out).toMatch(/bunboot\S*: step device-manager: done in \d+ ms/);
  expect(out).toContain(`waiting for verity.usr=PARTUUID=${ABSENT} (up to 3 s, rd.earlytimeout=)`);
  expect(out).toContain('boot failed in step "wait-usr"');
  expect(out).toContain(`timed out after 3 s waiting for verity.usr=PARTUUID=${ABSENT}`);
  expect(out).toContain("parameter to check: verity.usr=");
  expect(out).toContain('starting emergency shell (Enter pressed)');
}

describe.concurrent("consoles", () => {
  requireInitrd();

  test("console=tty0 console=ttyS0,115200n8: boot log, failure and a working emergency shell on the serial port", async () => {
    // The VM starts inside its slot: QEMU runs from the constructor on, and the prompt's timeout with it.
    const { vm, shell } = await vmSlots.run(async () => {
      const vm = new Vm({ name: "console-tty0-ttyS0", kernelConsole: "console=tty0 console=ttyS0,115200n8", append: FAILING });
      return { vm, shell: await failThenShell(vm, "/dev/ttyS0") };
    });
    // The kernel writes to both; the last console= is /dev/console.
    expect(shell).toContain("active=[tty0 ttyS0]");
    expect(shell).toContain("unopened=0");
    expectBootLogAndFailure(vm.console);
  }, 3 * BOOT_MS);

  test("console=hvc0 (virtio_console a module): the shim opens the console late; boot log, failure and emergency shell on hvc0", async () => {
    const { vm, shell } = await vmSlots.run(async () => {
      const vm = new Vm({ name: "console-hvc0-failure", ...HVC("console-hvc0-failure"), append: FAILING });
      return { vm, shell: await failThenShell(vm, "/dev/hvc0") };
    });
    // The kernel did start /init without a console; the shim made up for it.
    expect(shell).toContain("active=[hvc0]");
    expect(shell).toContain("unopened=1");
    expect(vm.console).toMatch(/bunboot: the kernel had no console at start; \/dev\/console opened after loading virtio_pci virtio_mmio virtio_console \(\d+ tenths of a second\)/);
    expectBootLogAndFailure(vm.console);
  }, 3 * BOOT_MS);

  test("console=hvc0: a good boot's log and stage 2 are on hvc0", async () => {
    const fx = fixtures();
    const { vm, facts } = await vmSlots.run(async () => {
      const vm = new Vm({
        name: "console-hvc0-boot",
        ...HVC("console-hvc0-boot"),
        disks: [fx.flatcarDisk],
        append: `mount.usr=/dev/mapper/usr verity.usr=PARTUUID=${USR_A_UUID} verity.usrhash=${fx.usrA.rootHash}`,
      });
      return { vm, facts: await bootToStage2(vm, BOOT_MS) };
    });
    expect(facts.slot).toBe("USR-A");
    const out = vm.console;
    expect(out).toMatch(/bunboot\S*: bunboot starting \(PID 1,/);
    expect(out).toMatch(/bunboot\S*: step verity: done in \d+ ms/);
    expect(out).toContain("switching root to /realinit");
    expect(out).toContain("STAGE2: done");
  }, 3 * BOOT_MS);
});
