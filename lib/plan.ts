// Decides where /usr comes from, before any device is touched. Pure: the
// inputs are the parsed command line and what the initramfs holds, so every
// combination of parameters is unit-tested without a VM.
import type { BootParams, DeviceRef } from "./cmdline.ts";
import { formatDeviceRef } from "./cmdline.ts";
import { parseMountOptions, type MountOptions } from "./mountopts.ts";
import { MS_FLAGS } from "./msflags.ts";

export const MAPPER_USR = "/dev/mapper/usr";

export type UsrPlan =
  | { kind: "verity"; data: DeviceRef; rootHash: string; fsType: string; options: MountOptions }
  | { kind: "plain"; device: DeviceRef; fsType: string; options: MountOptions }
  | { kind: "squashfs-file"; image: string };

export class PlanError extends Error {
  constructor(
    message: string,
    readonly param: string,
  ) {
    super(message);
  }
}

export interface InitramfsFacts {
  /** /usr.squashfs arrived in an appended cpio (PXE). */
  hasUsrSquashfs: boolean;
}

export function planUsr(p: BootParams, facts: InitramfsFacts): UsrPlan {
  const fsType = p.mountUsrFsType || "auto";
  const options = parseMountOptions(p.mountUsrFlags, "mount.usrflags");
  if (p.verityUsr) {
    if (!p.verityUsrHash) {
      throw new PlanError(
        `verity.usr=${formatDeviceRef(p.verityUsr)} is set but verity.usrhash= is missing: without the root hash /usr cannot be verified, and an unverified /usr is never mounted`,
        "verity.usrhash",
      );
    }
    // The verified mapping is the only thing that may be mounted; a
    // mount.usr naming anything else would bypass verification.
    if (p.mountUsr && !(p.mountUsr.kind === "path" && p.mountUsr.value === MAPPER_USR)) {
      throw new PlanError(
        `mount.usr=${formatDeviceRef(p.mountUsr)} conflicts with verity.usr=${formatDeviceRef(p.verityUsr)}: with verity, /usr is mounted from ${MAPPER_USR} (set mount.usr=${MAPPER_USR} or drop it)`,
        "mount.usr",
      );
    }
    // dm-verity devices are read-only: force ro rather than fail the mount
    // with EACCES when mount.usrflags= leaves it out.
    const ro = { ...options, flags: options.flags | MS_FLAGS.RDONLY, readOnly: true };
    return { kind: "verity", data: p.verityUsr, rootHash: p.verityUsrHash, fsType, options: ro };
  }
  if (p.verityUsrHash) {
    throw new PlanError(`verity.usrhash= is set but verity.usr= is missing: name the partition that holds /usr and its hash tree`, "verity.usr");
  }
  if (p.mountUsr) {
    if (p.mountUsr.kind === "path" && p.mountUsr.value === MAPPER_USR) {
      throw new PlanError(`mount.usr=${MAPPER_USR} needs verity.usr= and verity.usrhash= to create that device`, "verity.usr");
    }
    return { kind: "plain", device: p.mountUsr, fsType, options };
  }
  if (facts.hasUsrSquashfs) return { kind: "squashfs-file", image: "/usr.squashfs" };
  throw new PlanError(
    "no /usr to boot: the command line has neither verity.usr= (with verity.usrhash=) nor mount.usr=, and no /usr.squashfs was appended to the initrd",
    "verity.usr",
  );
}
