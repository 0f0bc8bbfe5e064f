// The foundation scenarios: a real Debian kernel boots dist/initrd.img in
// QEMU against disks built with sfdisk, mksquashfs and veritysetup.
import { describe, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { decodeNewc } from "../lib/initrd/cpio.ts";
import { fixtures, requireInitrd } from "./harness/fixtures.ts";
import { expectHandover, expectVerityBootFromUsrA } from "./harness/handover.ts";
import { CACHE, concatInitrds, cpioArchive, USR_A_UUID } from "./harness/images.ts";
import { bootToStage2 as runStage2, REPO, Vm } from "./harness/vm.ts";

const BOOT_MS = 240_000;

const bootToStage2 = (vm: Vm) => runStage2(vm, BOOT_MS);
/**
 * The same init in the flat layout (scripts/test.sh builds it beside
 * dist/initrd.img, which has the default payload layout).
 */
const FLAT_INITRD = path.join(REPO, "dist/initrd-flat.img");

describe("boot to the full initrd", () => {
  requireInitrd();
  const fx = fixtures();

  test("1. verity /usr by PARTUUID with Flatcar's default command line and hash offset", async () => {
    const vm = new Vm({
      name: "verity-partuuid",
      disks: [fx.flatcarDisk],
      append: `mount.usr=/dev/mapper/usr verity.usr=PARTUUID=${USR_A_UUID} rootflags=rw mount.usrflags=ro consoleblank=0 root=LABEL=ROOT verity.usrhash=${fx.usrA.rootHash}`,
    });
    const facts = await bootToStage2(vm);
    expectVerityBootFromUsrA(facts, vm.console, { rootHash: fx.usrA.rootHash, usrPartUuid: USR_A_UUID, usrDevice: "/dev/vda3" });
  }, BOOT_MS + 90_000);

  test("2. verity by PARTLABEL=USR-B picks the right slot when both exist", async () => {
    const vm = new Vm({
      name: "verity-partlabel-b",
      disks: [fx.abDisk],
      append: `mount.usr=/dev/mapper/usr verity.usr=PARTLABEL=USR-B verity.usrhash=${fx.usrB.rootHash}`,
    });
    const facts = await bootToStage2(vm);
    expectHandover(facts);
    expect(facts.slot).toBe("USR-B");
    expect(facts.verity).toMatch(/^0 \d+ verity V$/);
    expect(vm.console).toContain("verity.usr=PARTLABEL=USR-B is /dev/vda4");
  }, BOOT_MS + 90_000);

  test("3. plain ext4 /usr without verity by LABEL", async () => {
    const vm = new Vm({
      name: "plain-label",
      disks: [fx.plainDisk],
      append: `mount.usr=LABEL=USRPLAIN mount.usrfstype=ext4`,
    });
    const facts = await bootToStage2(vm);
    expectHandover(facts);
    expect(facts.sysusr).toMatch(/^\/dev\/vda2 ext4 ro/);
    expect(facts.mapper).toBe("missing");
    expect(facts.slot).toBe("USR-A");
  }, BOOT_MS + 90_000);

  test("4. PXE: /usr.squashfs and /oem from appended cpios, no disk", async () => {
    const usrCpio = cpioArchive(path.join(CACHE, "usr.cpio"), [{ path: "usr.squashfs", hostFile: fx.usrSquashfs }]);
    const oemCpio = cpioArchive(path.join(CACHE, "oem.cpio"), [
      { path: "oem/grub.cfg", data: new TextEncoder().encode('set oem_id="qemu"\n') },
      { path: "oem/marker", data: new TextEncoder().encode("from the oem cpio\n") },
    ]);
    const initrd = concatInitrds(path.join(CACHE, "initrd-pxe.img"), [requireInitrd(), usrCpio, oemCpio]);
    const vm = new Vm({ name: "pxe", initrd, append: "" });
    const facts = await bootToStage2(vm);
    expect(facts.pid).toBe("1");
    expect(facts.root).toBe("overlay");
    expect(facts.sysusr).toMatch(/^\/dev\/loop\d+ squashfs ro/);
    expect(facts.slot).toBe("USR-A");
    expect(facts.usr_squashfs).toBe("present");
    expect(facts.oem).toBe("grub.cfg marker");
    expect(facts.oem_fs).toBe("tmpfs");
  }, BOOT_MS + 90_000);

  test("5. a wrong verity.usrhash mounts nothing and reaches the emergency prompt", async () => {
    const wrong = "0".repeat(64);
    const vm = new Vm({
      name: "verity-wrong-hash",
      disks: [fx.flatcarDisk],
      append: `mount.usr=/dev/mapper/usr verity.usr=PARTUUID=${USR_A_UUID} verity.usrhash=${wrong} rd.emergency.timeout=5`,
    });
    try {
      await vm.expect("Press Enter for emergency shell or wait 5 seconds for reboot.", BOOT_MS);
      // No answer: the init reboots, which -no-reboot turns into a QEMU exit.
      await vm.waitExit(60_000);
    } finally {
      vm.kill();
    }
    const out = vm.console;
    expect(out).toContain('boot failed in step "verity"');
    expect(out).toContain(`expected (verity.usrhash=): ${wrong}`);
    expect(out).toContain(`found on disk:              ${fx.usrA.rootHash}`);
    expect(out).toContain("parameter to check: verity.usrhash=");
    expect(out).not.toContain("Kernel panic");
    expect(out).not.toContain("STAGE2:");
    expect(out).not.toMatch(/mounted .* on \/sysusr\/usr/);
  }, BOOT_MS + 90_000);

  test("6. the flat layout: the kernel unpacks everything, no payload image, stage 2 gets the RAM back", async () => {
    const vm = new Vm({
      name: "flat-verity",
      initrd: FLAT_INITRD,
      disks: [fx.flatcarDisk],
      append: `mount.usr=/dev/mapper/usr verity.usr=PARTUUID=${USR_A_UUID} verity.usrhash=${fx.usrA.rootHash}`,
    });
    const facts = await bootToStage2(vm);
    expectHandover(facts);
    expect(facts.slot).toBe("USR-A");
    expect(facts.verity).toMatch(/^0 \d+ verity V$/);
    expect(vm.console).toMatch(/Freeing initrd memory: \d+K/);
    // The init ran straight from the initramfs: no payload image was ever mounted.
    expect(vm.console).toContain("bunboot starting (PID 1, flat initramfs)");
  }, BOOT_MS + 90_000);

  test("7. the flat layout with PXE: /usr.squashfs appended after the archive", async () => {
    const usrCpio = cpioArchive(path.join(CACHE, "usr.cpio"), [{ path: "usr.squashfs", hostFile: fx.usrSquashfs }]);
    const initrd = concatInitrds(path.join(CACHE, "initrd-flat-pxe.img"), [FLAT_INITRD, usrCpio]);
    const facts = await bootToStage2(new Vm({ name: "flat-pxe", initrd, append: "" }));
    expect(facts.pid).toBe("1");
    expect(facts.sysusr).toMatch(/^\/dev\/loop\d+ squashfs ro/);
    expect(facts.usr_squashfs).toBe("present");
    expect(facts.payload_mounts).toBe("0");
  }, BOOT_MS + 90_000);
});

describe("early microcode in front of the initrd", () => {
  test("8. an initrd built with --microcode DIR starts with the early archive, and still boots the verity /usr", async () => {
    const fx = fixtures();
    // Test blobs: the firmware packages are not available here. Under QEMU the
    // CPU reports a hypervisor and Linux loads no microcode, so this shows only
    // what it can: the archive in front does not disturb the unpacking.
    const ucode = path.join(CACHE, "microcode");
    fs.rmSync(ucode, { recursive: true, force: true });
    fs.mkdirSync(path.join(ucode, "intel-ucode"), { recursive: true });
    fs.mkdirSync(path.join(ucode, "amd-ucode"), { recursive: true });
    fs.writeFileSync(path.join(ucode, "intel-ucode/06-8e-09"), Buffer.alloc(2048, 0x5a));
    fs.writeFileSync(path.join(ucode, "amd-ucode/microcode_amd_fam17h.bin"), Buffer.alloc(1024, 0xa5));
    const initrd = path.join(CACHE, "initrd-microcode.img");
    const r = Bun.spawnSync(
      [process.execPath, path.join(REPO, "build.ts"), "--no-config", "--init-binary", path.join(REPO, "dist/bunboot-init"), "--compress", "zstd", "--compress-level", "3", "--microcode", ucode, "--out", initrd],
      { cwd: REPO, env: { ...process.env, BUN_BE_BUN: "1" }, stdout: "pipe", stderr: "pipe" },
    );
    expect(r.stderr.toString()).toBe("");
    expect(r.stdout.toString()).toContain("microcode: early archive with GenuineIntel.bin from 1 blob(s), AuthenticAMD.bin from 1 blob(s)");
    // The early archive, uncompressed, at byte 0; the compressed initrd after it.
    const head = fs.readFileSync(initrd).subarray(0, 8192);
    const early = decodeNewc(new Uint8Array(head)).entries.map((e) => e.path);
    expect(early).toEqual(["kernel", "kernel/x86", "kernel/x86/microcode", "kernel/x86/microcode/AuthenticAMD.bin", "kernel/x86/microcode/GenuineIntel.bin"]);
    const vm = new Vm({
      name: "verity-microcode",
      initrd,
      disks: [fx.flatcarDisk],
      append: `mount.usr=/dev/mapper/usr verity.usr=PARTUUID=${USR_A_UUID} verity.usrhash=${fx.usrA.rootHash}`,
    });
    const facts = await bootToStage2(vm);
    expectVerityBootFromUsrA(facts, vm.console, { rootHash: fx.usrA.rootHash, usrPartUuid: USR_A_UUID, usrDevice: "/dev/vda3" });
  }, BOOT_MS + 120_000);
});
