// The disks the scenarios share, built once per test run (the same process
// runs every qemu-tests file, so module state is the cache).
import fs from "node:fs";
import path from "node:path";
import {
  buildStage2,
  concatInitrds,
  cpioArchive,
  buildUsrTree,
  CACHE,
  ext4,
  FLATCAR_USR_BYTES,
  gptDisk,
  LINUX_FS_TYPE,
  squashfs,
  USR_A_UUID,
  USR_B_UUID,
  USR_TYPE,
  verityImage,
  type VerityImage,
} from "./images.ts";
import { DIST_INITRD } from "./vm.ts";
import type { Arch } from "../../lib/initrd/arch.ts";

export interface Fixtures {
  bootengine: string;
  usrA: VerityImage;
  usrB: VerityImage;
  /** Flatcar layout, only USR-A populated. */
  flatcarDisk: string;
  /** Both slots populated with different /usr images. */
  abDisk: string;
  /** An ext4 /usr without verity, LABEL=USRPLAIN. */
  plainDisk: string;
  usrSquashfs: string;
}

let cached: Fixtures | null = null;

export function requireInitrd(): string {
  if (!fs.existsSync(DIST_INITRD)) throw new Error(`${DIST_INITRD} is missing: run \`bun build.ts\` first (scripts/test.sh does)`);
  return DIST_INITRD;
}

/** dist/initrd.img plus a cpio with extra files, as a boot loader would append it. */
export function initrdWith(name: string, files: Array<{ path: string; data: Uint8Array }>): string {
  const extra = cpioArchive(path.join(CACHE, `${name}.cpio`), files);
  return concatInitrds(path.join(CACHE, `initrd-${name}.img`), [requireInitrd(), extra]);
}

export function fixtures(): Fixtures {
  if (cached) return cached;
  fs.mkdirSync(CACHE, { recursive: true });
  const bootengine = buildStage2();
  const usrTreeA = buildUsrTree("a", "USR-A", bootengine);
  const usrTreeB = buildUsrTree("b", "USR-B", bootengine);
  const usrA = verityImage(squashfs(usrTreeA, path.join(CACHE, "usr-a.squashfs")), path.join(CACHE, "usr-a.verity"));
  const usrB = verityImage(squashfs(usrTreeB, path.join(CACHE, "usr-b.squashfs")), path.join(CACHE, "usr-b.verity"));
  const esp = { label: "EFI-SYSTEM", type: "c12a7328-f81f-11d2-ba4b-00a0c93ec93b", sizeBytes: 1 << 20 };
  const boot = { label: "BIOS-BOOT", type: "21686148-6449-6e6f-744e-656564454649", sizeBytes: 1 << 20 };
  const flatcarDisk = gptDisk(path.join(CACHE, "flatcar.disk"), [
    esp,
    boot,
    { label: "USR-A", type: USR_TYPE, uuid: USR_A_UUID, sizeBytes: FLATCAR_USR_BYTES, image: usrA.path },
    { label: "USR-B", type: USR_TYPE, uuid: USR_B_UUID, sizeBytes: FLATCAR_USR_BYTES },
  ]);
  const abDisk = gptDisk(path.join(CACHE, "ab.disk"), [
    esp,
    boot,
    { label: "USR-A", type: USR_TYPE, uuid: USR_A_UUID, sizeBytes: FLATCAR_USR_BYTES, image: usrA.path },
    { label: "USR-B", type: USR_TYPE, uuid: USR_B_UUID, sizeBytes: FLATCAR_USR_BYTES, image: usrB.path },
  ]);
  const plainDisk = gptDisk(path.join(CACHE, "plain.disk"), [
    esp,
    { label: "USR-PLAIN", type: LINUX_FS_TYPE, sizeBytes: 64 << 20, image: ext4(usrTreeA, path.join(CACHE, "usr-plain.ext4"), "USRPLAIN") },
  ]);
  cached = { bootengine, usrA, usrB, flatcarDisk, abDisk, plainDisk, usrSquashfs: path.join(CACHE, "usr-a.squashfs") };
  return cached;
}

export interface ArchFixtures {
  bootengine: string;
  usrA: VerityImage;
  /** Flatcar layout, only USR-A populated. */
  flatcarDisk: string;
  usrSquashfs: string;
}
const archCached = new Map<Arch, ArchFixtures>();

/**
 * The Flatcar-layout disk and the PXE /usr image for another architecture's
 * scenarios: the disk layout and verity are the same, only the stage-2 test
 * init inside /usr is built from that architecture's busybox and dmsetup.
 */
export function archFixtures(arch: Arch): ArchFixtures {
  const hit = archCached.get(arch);
  if (hit) return hit;
  fs.mkdirSync(CACHE, { recursive: true });
  const bootengine = buildStage2(arch);
  const usrTree = buildUsrTree(`a-${arch}`, "USR-A", bootengine);
  const usrSquashfs = squashfs(usrTree, path.join(CACHE, `usr-a-${arch}.squashfs`));
  const usrA = verityImage(usrSquashfs, path.join(CACHE, `usr-a-${arch}.verity`));
  const flatcarDisk = gptDisk(path.join(CACHE, `flatcar-${arch}.disk`), [
    { label: "EFI-SYSTEM", type: "c12a7328-f81f-11d2-ba4b-00a0c93ec93b", sizeBytes: 1 << 20 },
    { label: "BIOS-BOOT", type: "21686148-6449-6e6f-744e-656564454649", sizeBytes: 1 << 20 },
    { label: "USR-A", type: USR_TYPE, uuid: USR_A_UUID, sizeBytes: FLATCAR_USR_BYTES, image: usrA.path },
    { label: "USR-B", type: USR_TYPE, uuid: USR_B_UUID, sizeBytes: FLATCAR_USR_BYTES },
  ]);
  const fx = { bootengine, usrA, flatcarDisk, usrSquashfs };
  archCached.set(arch, fx);
  return fx;
}
