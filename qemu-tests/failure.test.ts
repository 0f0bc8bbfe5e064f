// Failure handling, the emergency shell and the debug toggles, driven
// through the serial console as an operator would.
import { describe, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { fixtures, initrdWith, requireInitrd } from "./harness/fixtures.ts";
import { CACHE, gptDisk, USR_A_UUID, USR_TYPE, FLATCAR_USR_BYTES } from "./harness/images.ts";
import { expectCtrlCStopsJob } from "./harness/shell.ts";
import { stage2Facts, Vm } from "./harness/vm.ts";

const BOOT_MS = 240_000;
const WRONG = "0".repeat(64);

function flatcarAppend(hash: string, extra = ""): string {
  return `mount.usr=/dev/mapper/usr verity.usr=PARTUUID=${USR_A_UUID} verity.usrhash=${hash} ${extra}`;
}

async function withVm<T>(vm: Vm, fn: (vm: Vm) => Promise<T>): Promise<T> {
  try {
    return await fn(vm);
  } finally {
    vm.kill();
  }
}

describe("failures and debugging", () => {
  requireInitrd();
  const fx = fixtures();

  test("1. wrong verity.usrhash: prompt, Enter gives a shell, exit retries and fails the same way", async () => {
    const vm = new Vm({ name: "emergency-shell", disks: [fx.flatcarDisk], append: flatcarAppend(WRONG, "rd.emergency.timeout=120") });
    await withVm(vm, async () => {
      await vm.expect("Press Enter for emergency shell", BOOT_MS);
      vm.send("\n");
      await vm.expect("bunboot# ", 60_000);
      const mark = vm.console.length;
      vm.send("echo round-$((40 + 2)); cat /run/bunboot/log | grep -c 'boot failed'\n");
      await vm.expect(/round-42\s+1\s/, 30_000, mark);
      // Job control: the shell owns the tty, so Ctrl-C stops a foreground job.
      await expectCtrlCStopsJob(vm);
      vm.send("exit\n");
      await vm.expect("boot attempt 2", 60_000, mark);
      const second = vm.console.length;
      await vm.expect("Press Enter for emergency shell", 120_000, mark);
      const retry = vm.console.slice(mark);
      expect(retry).toContain(`expected (verity.usrhash=): ${WRONG}`);
      expect(retry).not.toMatch(/already exists|Device or resource busy|unexpected error/);
      expect(second).toBeGreaterThan(mark);
    });
    expect(vm.console).toContain('boot failed in step "verity"');
    expect(vm.console).not.toContain("Kernel panic");
  }, BOOT_MS + 300_000);

  test("2. a missing disk: still-waiting lines, then a timeout listing the devices seen", async () => {
    // A disk with only USR-B: the PARTUUID of USR-A never shows up.
    const disk = gptDisk(path.join(CACHE, "only-b.disk"), [
      { label: "USR-B", type: USR_TYPE, uuid: "e03dd35c-7c2d-4a47-b3fe-27f15780a57c", sizeBytes: 8 << 20 },
    ]);
    const vm = new Vm({ name: "missing-disk", disks: [disk], append: flatcarAppend(fx.usrA.rootHash, "rd.earlytimeout=12 rd.emergency=poweroff") });
    await withVm(vm, async () => {
      await vm.waitExit(BOOT_MS);
    });
    const out = vm.console;
    expect(out).toContain(`waiting for verity.usr=PARTUUID=${USR_A_UUID} (up to 12 s, rd.earlytimeout=)`);
    expect(out.match(/still waiting for verity\.usr=PARTUUID=/g)?.length ?? 0).toBeGreaterThanOrEqual(2);
    // "A disk, but not the one named": the first report lists the disk that is there, with its
    // identities; the next one says it is unchanged.
    expect(out).toMatch(/still waiting for verity\.usr=PARTUUID=\S+ \(\d+ s\)\n(?:.*\n)*?.*block devices:\n(?:.*\n){0,3}?.*\/dev\/vda \([\d.]+ MiB\)\n(?:.*\n){0,3}?.*\/dev\/vda1 \(8\.0 MiB\) PARTUUID=e03dd35c-7c2d-4a47-b3fe-27f15780a57c PARTLABEL=USR-B/);
    expect(out).toMatch(/block devices: the same 2 as at \d+ s/);
    expect(out).toContain(`timed out after 12 s waiting for verity.usr=PARTUUID=${USR_A_UUID}`);
    expect(out).toMatch(/\/dev\/vda1 \(8\.0 MiB\) PARTUUID=e03dd35c-7c2d-4a47-b3fe-27f15780a57c PARTLABEL=USR-B/);
    expect(out).toContain("parameter to check: verity.usr=");
    expect(out).toContain("poweroff now");
  }, BOOT_MS + 60_000);

  test("2b. a blacklisted disk driver: the still-waiting lines name the device and the blacklisted module", async () => {
    const vm = new Vm({
      name: "blacklisted-driver",
      disks: [fx.flatcarDisk],
      append: flatcarAppend(fx.usrA.rootHash, "rd.driver.blacklist=virtio_blk rd.earlytimeout=7 rd.emergency=poweroff"),
    });
    await withVm(vm, async () => {
      await vm.waitExit(BOOT_MS);
    });
    expect(vm.console).toContain("blacklisted modules (rd.driver.blacklist=): virtio_blk");
    // "No driver": the report names the device and the blacklisted module, says that q35's
    // built-in AHCI has a driver and no disk, and that no block device appeared.
    expect(vm.console).toMatch(/still waiting for verity\.usr=PARTUUID=\S+ \(\d+ s\)\n(?:.*\n){0,3}?.*devices without a driver: virtio virtio\d+ \[virtio:d00000002v00001AF4\]: virtio_blk \(blacklisted\)\n(?:.*\n){0,3}?.*controllers with a driver but no disk: SCSI (host\d+ ?)+ \(ahci\): no SCSI device found on its bus\n(?:.*\n){0,3}?.*block devices: none yet/);
    expect(vm.console).toContain("none: no disk driver found a disk");
  }, BOOT_MS + 60_000);

  test("3. a corrupted /usr data block is refused by dm-verity (panic on corruption), nothing unverified is served", async () => {
    // Flip bytes inside the full initrd's data on a copy of USR-A after
    // formatting: the hash tree, and so the root hash check, still pass.
    const corrupt = path.join(CACHE, "usr-a-corrupt.verity");
    fs.copyFileSync(fx.usrA.path, corrupt);
    const fd = fs.openSync(corrupt, "r+");
    fs.writeSync(fd, Buffer.alloc(4096, 0xa5), 0, 4096, 1 << 20);
    fs.closeSync(fd);
    const disk = gptDisk(path.join(CACHE, "corrupt.disk"), [
      { label: "USR-A", type: USR_TYPE, uuid: USR_A_UUID, sizeBytes: FLATCAR_USR_BYTES, image: corrupt },
    ]);
    const vm = new Vm({ name: "verity-corrupt", disks: [disk], append: flatcarAppend(fx.usrA.rootHash) });
    await withVm(vm, async () => {
      await vm.waitExit(BOOT_MS);
    });
    const out = vm.console;
    expect(out).toContain("dm-verity /dev/mapper/usr: 0 2080752 verity V");
    expect(out).toMatch(/device-mapper: verity: .*data block \d+ is corrupted/);
    expect(out).toMatch(/Kernel panic - not syncing: dm-verity device corrupted/);
    // Stage 2 may start (the corrupted block is inside its image), but the
    // first read of that block stops the machine: it never finishes.
    expect(out).not.toContain("STAGE2: done");
  }, BOOT_MS + 60_000);

  test("4. rd.earlyshell stops at the four breakpoints in order; exiting each continues", async () => {
    const vm = new Vm({ name: "earlyshell", disks: [fx.flatcarDisk], append: flatcarAppend(fx.usrA.rootHash, "rd.earlyshell") });
    const seen: string[] = [];
    await withVm(vm, async () => {
      let from = 0;
      for (const bp of ["pre-udev", "pre-verity", "pre-mount", "pre-switch-root"]) {
        const m = await vm.expect(new RegExp(`breakpoint ${bp}: rd\\.earlyshell`), BOOT_MS, from);
        seen.push(bp);
        from = vm.console.indexOf(m[0], from) + m[0].length;
        await vm.expect("bunboot# ", 60_000, from);
        vm.send("exit\n");
      }
      await vm.expect("STAGE2: done", BOOT_MS, from);
      await vm.waitExit(60_000);
    });
    expect(seen).toEqual(["pre-udev", "pre-verity", "pre-mount", "pre-switch-root"]);
    expect(stage2Facts(vm.console).slot).toBe("USR-A");
  }, BOOT_MS * 2);

  test("5. rd.break=pre-mount gives one shell, at that point only", async () => {
    const vm = new Vm({ name: "break-pre-mount", disks: [fx.flatcarDisk], append: flatcarAppend(fx.usrA.rootHash, "rd.break=pre-mount rd.debug") });
    await withVm(vm, async () => {
      await vm.expect("breakpoint pre-mount: rd.break=pre-mount", BOOT_MS);
      await vm.expect("bunboot# ", 60_000);
      // At this point verity is open but /usr is not mounted yet.
      const mark = vm.console.length;
      // One echo, so that rd.debug lines written meanwhile cannot land between the answers.
      vm.send('echo "mapper=$(ls /dev/mapper | tr "\\n" ,) sysusr_mounts=$(grep -c sysusr /proc/mounts)"\n');
      await vm.expect("mapper=control,usr, sysusr_mounts=0", 30_000, mark);
      vm.send("exit\n");
      await vm.expect("STAGE2: done", BOOT_MS, mark);
      await vm.waitExit(60_000);
    });
    expect(vm.console.match(/breakpoint [a-z-]+: rd\./g)).toEqual(["breakpoint pre-mount: rd."]);
    // rd.debug shows the dm-verity table the init loads (what veritysetup open
    // --panic-on-corruption --hash-offset=1065345024 would load), and every uevent, with times.
    expect(vm.console).toMatch(
      /\[\s*\d+\.\d{3}\] bunboot\[verity\]: dm-verity table for usr: 0 2080752 verity 1 (\d+:\d+) \1 4096 4096 260094 260095 sha256 [0-9a-f]{64} [0-9a-f]{64} 1 panic_on_corruption/,
    );
    expect(vm.console).toMatch(/bunboot\[[a-z-]+\]: uevent add \/devices\/.*\(block\)/);
  }, BOOT_MS + 120_000);

  test("6. rd.emergency=poweroff: a failure powers the VM off by itself", async () => {
    const vm = new Vm({ name: "emergency-poweroff", disks: [fx.flatcarDisk], append: flatcarAppend(WRONG, "rd.emergency=poweroff") });
    await withVm(vm, async () => {
      await vm.waitExit(BOOT_MS);
    });
    expect(vm.console).toContain('boot failed in step "verity"');
    expect(vm.console).toContain("poweroff now");
    expect(vm.console).not.toContain("Press Enter");
  }, BOOT_MS + 60_000);

  test("6b. Ctrl-Alt-Del at the emergency prompt reboots cleanly", async () => {
    const monitorSocket = path.join(CACHE, "cad.monitor");
    const vm = new Vm({ name: "ctrl-alt-del", disks: [fx.flatcarDisk], append: flatcarAppend(WRONG, "rd.emergency.timeout=300"), monitorSocket });
    await withVm(vm, async () => {
      await vm.expect("Press Enter for emergency shell", BOOT_MS);
      await vm.monitor("sendkey ctrl-alt-delete");
      await vm.waitExit(60_000);
    });
    expect(vm.console).toMatch(/bunboot\S*: reboot now/);
    expect(vm.console).toContain("reboot: Restarting system");
    expect(vm.console).not.toContain("Kernel panic");
  }, BOOT_MS + 60_000);

  test("7a. a malformed verity.usr= is reported by name", async () => {
    const vm = new Vm({ name: "typo-verity-usr", disks: [fx.flatcarDisk], append: "verity.usr=FOO=bar verity.usrhash=" + fx.usrA.rootHash + " rd.emergency=poweroff" });
    await withVm(vm, async () => {
      await vm.waitExit(BOOT_MS);
    });
    expect(vm.console).toContain('boot failed in step "cmdline"');
    expect(vm.console).toContain("verity.usr=FOO=bar: expected PARTUUID=, PARTLABEL=, UUID=, LABEL= or a /dev/ path");
    expect(vm.console).toContain("parameter to check: verity.usr=");
    expect(vm.console).not.toMatch(/\n\s+at .*\(/);
  }, BOOT_MS + 60_000);

  test("7b. an unknown mount.usrflags= option is reported by name", async () => {
    const vm = new Vm({ name: "typo-usrflags", disks: [fx.flatcarDisk], append: flatcarAppend(fx.usrA.rootHash, "mount.usrflags=ro,bogus rd.emergency=poweroff") });
    await withVm(vm, async () => {
      await vm.waitExit(BOOT_MS);
    });
    expect(vm.console).toContain('boot failed in step "mount-usr"');
    expect(vm.console).toContain('the kernel rejected the options "bogus" from mount.usrflags=');
    expect(vm.console).toContain("parameter to check: mount.usrflags=");
  }, BOOT_MS + 60_000);

  test("8. rd.shell=0 never gives a shell: not at a breakpoint, not on failure; then it reboots", async () => {
    const vm = new Vm({ name: "no-shell", disks: [fx.flatcarDisk], append: flatcarAppend(WRONG, "rd.shell=0 rd.break=pre-verity rd.emergency=shell rd.emergency.timeout=3") });
    await withVm(vm, async () => {
      await vm.expect("rd.shell=0: no shell (breakpoint pre-verity", BOOT_MS);
      // Keys at the console change nothing.
      vm.send("\n\n");
      await vm.waitExit(BOOT_MS);
    });
    const out = vm.console;
    expect(out).toContain('boot failed in step "verity"');
    expect(out).toContain("rd.shell=0: no emergency shell; rebooting in 3 seconds");
    expect(out).toMatch(/bunboot\S*: reboot now/);
    expect(out).not.toContain("bunboot# ");
    expect(out).not.toContain("starting emergency shell");
    expect(out).not.toContain("Press Enter");
  }, BOOT_MS + 60_000);

  test("9. a password-protected emergency shell: a wrong password is refused and slowed down, the right one gives the shell", async () => {
    const password = "correct horse 42";
    // A small memory cost keeps the check quick under TCG; the builder takes any argon2id hash.
    const hash = await Bun.password.hash(password, { algorithm: "argon2id", memoryCost: 8192, timeCost: 2 });
    const initrd = initrdWith("emergency-password", [{ path: "etc/bunboot/emergency-password-hash", data: new TextEncoder().encode(hash + "\n") }]);
    const vm = new Vm({ name: "emergency-password", initrd, disks: [fx.flatcarDisk], append: flatcarAppend(WRONG, "rd.emergency.timeout=120") });
    await withVm(vm, async () => {
      await vm.expect("Press Enter for emergency shell", BOOT_MS);
      vm.send("\n");
      await vm.expect("Emergency shell password: ", 60_000);
      const mark = vm.console.length;
      vm.send("guess-one\n");
      await vm.expect("wrong password for the emergency shell (1 in a row); next try in 1 s", 60_000, mark);
      await vm.expect("Emergency shell password: ", 60_000, mark);
      const second = vm.console.length;
      vm.send("guess-two\n");
      await vm.expect("wrong password for the emergency shell (2 in a row); next try in 2 s", 60_000, second);
      await vm.expect("Emergency shell password: ", 60_000, second);
      const right = vm.console.length;
      vm.send(password + "\n");
      await vm.expect("bunboot# ", 60_000, right);
      const mark2 = vm.console.length;
      vm.send("echo unlocked-$((40 + 2))\n");
      await vm.expect("unlocked-42", 30_000, mark2);
    });
    // Echo is off while the password is typed: neither guess nor password reached the screen.
    expect(vm.console).not.toContain("guess-one");
    expect(vm.console).not.toContain(password);
    expect(vm.console).toContain("starting emergency shell (Enter pressed)");
  }, BOOT_MS + 240_000);

  test("10. a CPU the Bun runtime cannot run on: the shim says what is missing and offers the busybox shell, no kernel panic", async () => {
    const vm = new Vm({ name: "cpu-qemu64", cpu: "qemu64", disks: [fx.flatcarDisk], append: flatcarAppend(fx.usrA.rootHash, "rd.emergency.timeout=120") });
    await withVm(vm, async () => {
      await vm.expect("Press Enter for emergency shell or wait 120 seconds for reboot.", BOOT_MS);
      vm.send("\n");
      await Bun.sleep(2000);
      const mark = vm.console.length;
      vm.send("echo shim-shell-$((40 + 2))\n");
      await vm.expect("shim-shell-42", 30_000, mark);
    });
    expect(vm.console).toMatch(/bunboot: this CPU lacks( \w+)+, which the Bun runtime needs \(x86-64-v2: Nehalem or newer/);
    expect(vm.console).toContain("popcnt");
    expect(vm.console).not.toContain("Kernel panic");
    expect(vm.console).not.toContain("invalid opcode");
  }, BOOT_MS + 60_000);

  test("10b. the same CPU with rd.emergency=poweroff powers off by itself", async () => {
    const vm = new Vm({ name: "cpu-qemu64-poweroff", cpu: "qemu64", disks: [fx.flatcarDisk], append: flatcarAppend(fx.usrA.rootHash, "rd.emergency=poweroff") });
    await withVm(vm, async () => {
      await vm.waitExit(BOOT_MS);
    });
    expect(vm.console).toContain("bunboot: poweroff now");
    expect(vm.console).not.toContain("Kernel panic");
  }, BOOT_MS + 60_000);
});
