// The arm64 initrd (bun build.ts --arch arm64: dist/initrd-arm64.img) booting
// Debian's arm64 kernel in qemu-system-aarch64 -M virt -cpu max under TCG.
// Emulating aarch64 on x86 is several times slower than the x64 scenarios,
// so there are only two: the verity boot on the Flatcar disk layout and a PXE
// boot with /usr.squashfs appended. Each prints how long it took.
import { describe, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { archFixtures } from "./harness/fixtures.ts";
import { expectVerityBootFromUsrA } from "./harness/handover.ts";
import { CACHE, concatInitrds, cpioArchive, USR_A_UUID } from "./harness/images.ts";
import { bootToStage2, REPO, Vm, type VmOptions } from "./harness/vm.ts";
import { archInputs } from "../lib/initrd/arch.ts";

const BOOT_MS = 600_000;
const INITRD = archInputs("arm64", process.arch, REPO).out;
const SYSROOT = archInputs("arm64", process.arch, REPO).sysroot;

/** Debian's arm64 kernel from the sysroot (its vmlinuz is an EFI-stub raw Image, which QEMU loads as is). */
function arm64Kernel(): string {
  const boot = path.join(SYSROOT, "boot");
  const k = fs.existsSync(boot) ? fs.readdirSync(boot).filter((f) => f.startsWith("vmlinuz-")).sort() : [];
  if (k.length === 0) throw new Error(`no vmlinuz-* in ${boot}: run bash scripts/arm64-sysroot.sh (scripts/deps.sh does)`);
  return path.join(boot, k.at(-1)!);
}

function requireArm64Initrd(): string {
  if (!fs.existsSync(INITRD)) throw new Error(`${INITRD} is missing: run \`bun build.ts --arch arm64\` first (scripts/test.sh does)`);
  return INITRD;
}

const vmOptions = (o: Pick<VmOptions, "name" | "initrd" | "disks" | "append">): VmOptions => ({
  arch: "aarch64",
  machine: "virt",
  cpu: "max",
  kernel: arm64Kernel(),
  initrd: requireArm64Initrd(),
  // The default 1024 MiB: stage 1 holds the compressed initrd, the payload
  // image and (PXE) the appended /usr image, as on x64.
  ...o,
});

async function timedBoot(vm: Vm): Promise<{ facts: Record<string, string>; seconds: number }> {
  const t0 = performance.now();
  const facts = await bootToStage2(vm, BOOT_MS);
  const seconds = (performance.now() - t0) / 1000;
  // The kernel's own clock at the stage-2 init's first line: the boot without QEMU's start.
  const kernelS = vm.console.match(/\[\s*(\d+\.\d+)\][^\n]*\n[^\n]*STAGE2: pid=/)?.[1];
  console.log(`arm64 ${vm.opts.name}: QEMU start -> stage 2 done in ${seconds.toFixed(1)} s${kernelS ? ` (kernel clock at stage 2: ${kernelS} s)` : ""}`);
  return { facts, seconds };
}

describe("arm64: boot to the full initrd (qemu-system-aarch64 -M virt -cpu max, TCG)", () => {
  requireArm64Initrd();
  const fx = archFixtures("arm64");

  test("arm64 1. verity /usr by PARTUUID on the Flatcar disk layout", async () => {
    const vm = new Vm(
      vmOptions({
        name: "arm64-verity-partuuid",
        disks: [fx.flatcarDisk],
        append: `mount.usr=/dev/mapper/usr verity.usr=PARTUUID=${USR_A_UUID} rootflags=rw mount.usrflags=ro consoleblank=0 root=LABEL=ROOT verity.usrhash=${fx.usrA.rootHash}`,
      }),
    );
    const { facts } = await timedBoot(vm);
    // As boot.test.ts scenario 1.
    expectVerityBootFromUsrA(facts, vm.console, { rootHash: fx.usrA.rootHash, usrPartUuid: USR_A_UUID, usrDevice: "/dev/vda3" });
    // It really was the arm64 kernel on the PL011 console.
    expect(vm.console).toMatch(/Machine model: linux,dummy-virt/);
    expect(facts.cmdline).toContain("console=ttyAMA0");
  }, BOOT_MS + 90_000);

  test("arm64 2. PXE: /usr.squashfs appended to the initrd, no disk", async () => {
    const usrCpio = cpioArchive(path.join(CACHE, "usr-arm64.cpio"), [{ path: "usr.squashfs", hostFile: fx.usrSquashfs }]);
    const initrd = concatInitrds(path.join(CACHE, "initrd-arm64-pxe.img"), [requireArm64Initrd(), usrCpio]);
    const vm = new Vm(vmOptions({ name: "arm64-pxe", initrd, append: "" }));
    const { facts } = await timedBoot(vm);
    expect(facts.pid).toBe("1");
    expect(facts.root).toBe("overlay");
    expect(facts.stage1_procs).toBe("");
    expect(facts.sysusr).toMatch(/^\/dev\/loop\d+ squashfs ro/);
    expect(facts.slot).toBe("USR-A");
    expect(facts.usr_squashfs).toBe("present");
    expect(facts.payload_mounts).toBe("0");
    expect(facts.mapper).toBe("missing");
  }, BOOT_MS + 90_000);
});
