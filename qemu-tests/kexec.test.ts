// kexec reboot into the next A/B /usr slot, inside one QEMU run: -no-reboot ends QEMU on any
// firmware reset, so a second kernel booting in the same run can only have come through kexec.
// The disks are written by the guest (snapshot off, on a per-scenario copy) so the GPT can be
// checked on the host afterwards with sfdisk and sgdisk.
import { describe, expect, test } from "bun:test";
import { requireInitrd } from "./harness/fixtures.ts";
import { USR_A_UUID, USR_B_UUID } from "./harness/images.ts";
import { embeddedKernel } from "./harness/embedded-kernel.ts";
import { diskCopy, KEXEC_DRIVERS, kexecDisk, kexecFixtures, OEM_APPEND, OEM_ID } from "./harness/kexec-images.ts";
import { DIST_INIT_BINARY, Vm } from "./harness/vm.ts";

// Two boots under TCG, on a machine shared with other VMs.
const RUN_MS = 600_000;

function sh(argv: string[]): string {
  const r = Bun.spawnSync(argv, { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`${argv.join(" ")} exited ${r.exitCode}: ${r.stderr.toString()}`);
  return r.stdout.toString();
}

/** sfdisk's view of partition n's attributes ("GUID:49,52"). */
function attrs(disk: string, n: number): string | undefined {
  const t = JSON.parse(sh(["/usr/sbin/sfdisk", "-J", disk])) as { partitiontable: { partitions: Array<{ node: string; attrs?: string }> } };
  return t.partitiontable.partitions.find((p) => p.node.endsWith(String(n)))?.attrs;
}

function boot1Append(usrHash: string, extra = ""): string {
  return `mount.usr=/dev/mapper/usr verity.usr=PARTUUID=${USR_A_UUID} rootflags=rw mount.usrflags=ro consoleblank=0 root=LABEL=ROOT verity.usrhash=${usrHash} ${KEXEC_DRIVERS} ${extra}`.trim();
}

/**
 * What the kernel prints when it unpacks an initrd a boot loader (or kexec) gave it: the first
 * with CONFIG_BLK_DEV_RAM, the second without. A built-in initramfs prints neither.
 */
const INITRD_FROM_LOADER = /Trying to unpack rootfs image as initramfs|Unpacking initramfs/;

function kernelBoots(out: string): number {
  return out.split("\n").filter((l) => /\] Linux version \d/.test(l)).length;
}

/**
 * Boots USR-A on `disk`, whose stage 2 kexecs into USR-B, and waits for USR-B's stage 2 to finish
 * and power off. Returns the console and where boot 2 starts in it.
 */
async function kexecAToB(name: string, disk: string, append: string): Promise<{ out: string; boot2From: number }> {
  const vm = new Vm({ name, disks: [disk], snapshot: false, memoryMiB: 1536, append });
  let boot2From = 0;
  try {
    await vm.expect(/STAGE2: slot=USR-A\n/, RUN_MS);
    await vm.expect("bunboot kexec: rebooting into USR-B via kexec", RUN_MS);
    boot2From = vm.console.length;
    await vm.expect(/STAGE2: slot=USR-B\n/, RUN_MS, boot2From);
    await vm.expect("STAGE2: done", RUN_MS, boot2From);
    await vm.waitExit(120_000);
  } finally {
    vm.kill();
  }
  return { out: vm.console, boot2From };
}

describe("kexec reboot into the next /usr slot", () => {
  requireInitrd();
  const fx = kexecFixtures();

  test("1. USR-A kexecs into USR-B with GRUB's command line; tries 1 -> 0 in both GPT copies", async () => {
    const disk = diskCopy("kexec-ab");
    const { out, boot2From } = await kexecAToB("kexec-ab", disk, boot1Append(fx.usrA.rootHash));
    const expected = [
      "mount.usr=/dev/mapper/usr",
      `verity.usr=PARTUUID=${USR_B_UUID}`,
      "rootflags=rw mount.usrflags=ro consoleblank=0 root=LABEL=ROOT console=ttyS0,115200n8",
      "flatcar.first_boot=detected",
      `flatcar.oem.id=${OEM_ID}`,
      OEM_APPEND,
      `verity.usrhash=${fx.usrB.rootHash}`,
    ].join(" ");
    // Boot 1 planned it...
    const boot1 = out.slice(0, boot2From);
    expect(boot1).toContain(`bunboot kexec:   slot:       USR-B (partition 4, PARTUUID ${USR_B_UUID}): priority=2 tries=1 successful=0`);
    expect(boot1).toContain("bunboot kexec:   kernel:     flatcar/vmlinuz-b on the ESP");
    expect(boot1).toContain(`bunboot kexec:   cmdline:    ${expected}`);
    expect(boot1).toContain("bunboot kexec:   GPT change: USR-B tries 1 -> 0, written to the backup GPT, then the primary");
    expect(boot1).toContain("bunboot kexec: GPT updated");
    // ...and boot 2, in the same QEMU run (no firmware in between), is the second kernel on USR-B.
    expect(kernelBoots(boot1)).toBe(1);
    expect(kernelBoots(out)).toBe(2);
    const boot2 = out.slice(boot2From);
    expect(boot2).toContain(`STAGE2: cmdline=${expected}\n`);
    expect(boot2).toContain("STAGE2: pid=1");
    expect(boot2).toContain("STAGE2: verity=usr");
    expect(boot2).toContain(`verity.usr=PARTUUID=${USR_B_UUID} is /dev/vda4`);
    // The guest sees the decremented counter; with no tries left, the next choice is USR-A again.
    expect(boot2).toContain(`bunboot kexec:   usr slot:   USR-B (partition 4, PARTUUID ${USR_B_UUID}): priority=2 tries=0 successful=0`);
    expect(boot2).toContain("bunboot kexec:   disk:       /dev/vda (512-byte sectors, primary GPT valid, backup GPT valid)");
    expect(boot2).toContain("STAGE2: dryrun_exit=0");
    // On the host: both copies valid, USR-B's tries gone, USR-A untouched.
    expect(sh(["/usr/sbin/sgdisk", "-v", disk])).toContain("No problems found");
    expect(attrs(disk, 4)).toBe("GUID:49");
    expect(attrs(disk, 3)).toBe("GUID:48,56");
  }, RUN_MS + 180_000);

  test("2. kexec disabled (kexec_load_disabled=1): the reason, then a normal reboot; GPT untouched", async () => {
    const disk = diskCopy("kexec-disabled");
    const vm = new Vm({ name: "kexec-disabled", disks: [disk], snapshot: false, memoryMiB: 1536, append: boot1Append(fx.usrA.rootHash, "bunboot_test.kexec_disabled") });
    try {
      await vm.expect(/STAGE2: slot=USR-A\n/, RUN_MS);
      await vm.expect("STAGE2: kexec_load_disabled=1", RUN_MS);
      // --no-fallback: the reason, no reboot, a distinct exit status.
      await vm.expect("STAGE2: no_fallback_exit=3", RUN_MS);
      await vm.expect("bunboot kexec: falling back to a normal reboot", RUN_MS);
      // reboot(2) resets the machine, which -no-reboot turns into QEMU exiting.
      await vm.waitExit(120_000);
    } finally {
      vm.kill();
    }
    const out = vm.console;
    const reason = "bunboot kexec: kexec is not possible: kexec is disabled on this system (kernel.kexec_load_disabled=1) [EPERM]";
    expect(out.split(reason).length - 1).toBe(2); // once with --no-fallback, once before the fallback
    expect(out).toContain("bunboot kexec: not rebooting (--no-fallback)");
    expect(out).not.toContain("GPT updated");
    expect(out).not.toContain("STAGE2: kexec_exit");
    expect(kernelBoots(out)).toBe(1);
    // GRUB will count this boot's try itself after the firmware reboot: nothing was written.
    expect(sh(["/usr/sbin/sgdisk", "-v", disk])).toContain("No problems found");
    expect(attrs(disk, 4)).toBe("GUID:49,52");
  }, RUN_MS + 180_000);

  // Flatcar's kernel carries its minimal initrd. Here the update's kernel (USR-B) is one built in
  // the test from Debian's kernel source with bunboot's archive linked in (CONFIG_INITRAMFS_SOURCE,
  // its stage-1 drivers as modules of that build); boot 1 loads it with no --initrd at all.
  test("3. USR-A kexecs into a kernel that embeds bunboot (no --initrd): its own initramfs and modules boot USR-B", async () => {
    const kernel = embeddedKernel(DIST_INIT_BINARY);
    // The Bun runtime makes this kernel 60 MB: the ESP of this disk is 128 MiB.
    const pristine = kexecDisk("kexec-embedded", { ...fx, vmlinuzB: kernel.bzImage, espMiB: 128 });
    const disk = diskCopy("kexec-embedded-run", pristine);
    const { out, boot2From } = await kexecAToB("kexec-embedded", disk, boot1Append(fx.usrA.rootHash, "bunboot_test.kexec_embedded"));
    const boot1 = out.slice(0, boot2From);
    const boot2 = out.slice(boot2From);
    // Boot 1: the Debian kernel with an initrd from the boot loader, loading the next kernel alone.
    expect(boot1).toMatch(INITRD_FROM_LOADER);
    expect(boot1).toContain("bunboot kexec:   kernel:     flatcar/vmlinuz-b on the ESP");
    expect(boot1).toContain("bunboot kexec:   initrd:     none (the kernel embeds its initramfs: KEXEC_FILE_NO_INITRAMFS)");
    expect(boot1).toContain("bunboot kexec: GPT updated");
    expect(boot1).not.toContain("STAGE2: kexec_exit");
    // Boot 2, in the same QEMU run: the embedded kernel, no initrd handed over, bunboot from the
    // flat archive inside the kernel image, loading that kernel's own modules.
    expect(kernelBoots(out)).toBe(2);
    expect(boot2).toContain(`] Linux version ${kernel.release} `);
    expect(boot2).not.toMatch(INITRD_FROM_LOADER);
    expect(boot2).toContain("bunboot starting (PID 1, flat initramfs)");
    // The builder wrote down which base modules this kernel has (no sd_mod: no SCSI here).
    expect(boot2).not.toContain("(base modules) exited");
    expect(boot2).toContain(`verity.usr=PARTUUID=${USR_B_UUID} is /dev/vda4`);
    expect(boot2).toContain(`STAGE2: kernel=${kernel.release}\n`);
    const modules = /STAGE2: modules=(.*)\n/.exec(boot2)?.[1]?.trim().split(" ") ?? [];
    for (const m of ["virtio_blk", "dm_mod", "dm_verity", "loop", "squashfs", "overlay", "vfat", "nls_cp437", "ext4"]) expect(modules).toContain(m);
    expect(boot2).toContain("STAGE2: pid=1");
    expect(boot2).toContain("STAGE2: verity=usr");
    expect(boot2).toContain(`bunboot kexec:   usr slot:   USR-B (partition 4, PARTUUID ${USR_B_UUID}): priority=2 tries=0 successful=0`);
    expect(boot2).toContain("STAGE2: dryrun_exit=0");
    expect(attrs(disk, 4)).toBe("GUID:49");
    // The kernel build (about 4 minutes from nothing on 2 CPUs) comes on top of two boots.
  }, 2 * RUN_MS + 1_200_000);
});
