// Decides where /usr comes from, before any device is touched. Pure: the
// inputs are the parsed command line and what the initramfs holds, so every
// combination of parameters is unit-tested without a VM.
import type { BootParams } from "./cmdline.ts";
import { formatDeviceRef, type DeviceRef } from "./devices/ref.ts";
import { parseMountOptions, type MountOptions } from "./mountopts.ts";
import { MS_FLAGS } from "./msflags.ts";
import { redactUrl } from "./redact.ts";
import { BootError } from "./errors.ts";
import { formatNetworkUsr, formatNfsExport, type NetworkUsr, type NfsExport } from "./netusr/ref.ts";

export const MAPPER_USR = "/dev/mapper/usr";

export type UsrPlan =
  | { kind: "verity"; data: DeviceRef; rootHash: string; fsType: string; options: MountOptions }
  /** Diskless, block by block: the verity image is an NBD export or a file on NFS, verified as it is read. */
  | { kind: "verity-net"; source: NetworkUsr; rootHash: string; fsType: string; options: MountOptions }
  /** Diskless and unverified (rd.usr.insecure=1): an NFSv4 export mounted as /usr. */
  | { kind: "nfs"; export: NfsExport; options: MountOptions }
  | { kind: "plain"; device: DeviceRef; fsType: string; options: MountOptions }
  | { kind: "squashfs-file"; image: string }
  /** Diskless: fetch the image to /usr.squashfs, then boot it like an appended one. */
  | { kind: "remote"; url: string; image: string; sha256?: string; hashList: boolean; insecure: boolean };

export interface InitramfsFacts {
  /** /usr.squashfs arrived in an appended cpio (PXE). */
  hasUsrSquashfs: boolean;
  /** The builder baked a stream-hash list for the remote /usr image (--usr-hashes). */
  hasUsrHashList?: boolean;
}

function formatUsrRef(ref: DeviceRef | NetworkUsr | NfsExport): string {
  if (ref.kind === "nbd" || ref.kind === "nfs") return formatNetworkUsr(ref);
  if (ref.kind === "nfs-export") return formatNfsExport(ref);
  return formatDeviceRef(ref);
}

export function planUsr(p: BootParams, facts: InitramfsFacts): UsrPlan {
  const fsType = p.mountUsrFsType || "auto";
  const options = parseMountOptions(p.mountUsrFlags, p.mountUsrFlagsParam);
  if (p.verityUsr) {
    if (!p.verityUsrHash) {
      throw new BootError(
        `verity.usr=${formatUsrRef(p.verityUsr)} is set but verity.usrhash= is missing: without the root hash /usr cannot be verified, and an unverified /usr is never mounted`,
        { param: "verity.usrhash" },
      );
    }
    // The verified mapping is the only thing that may be mounted; a
    // mount.usr naming anything else would bypass verification.
    if (p.mountUsr && !(p.mountUsr.kind === "path" && p.mountUsr.value === MAPPER_USR)) {
      throw new BootError(
        `mount.usr=${formatUsrRef(p.mountUsr)} conflicts with verity.usr=${formatUsrRef(p.verityUsr)}: with verity, /usr is mounted from ${MAPPER_USR} (set mount.usr=${MAPPER_USR} or drop it)`,
        { param: "mount.usr" },
      );
    }
    // dm-verity devices are read-only: force ro rather than fail the mount
    // with EACCES when mount.usrflags= leaves it out.
    const ro = { ...options, flags: options.flags | MS_FLAGS.RDONLY, readOnly: true };
    if (p.verityUsr.kind === "nbd" || p.verityUsr.kind === "nfs") return { kind: "verity-net", source: p.verityUsr, rootHash: p.verityUsrHash, fsType, options: ro };
    return { kind: "verity", data: p.verityUsr, rootHash: p.verityUsrHash, fsType, options: ro };
  }
  if (p.verityUsrHash) {
    throw new BootError(`verity.usrhash= is set but verity.usr= is missing: name the partition that holds /usr and its hash tree`, { param: "verity.usr" });
  }
  if (p.mountUsr) {
    if (p.mountUsr.kind === "path" && p.mountUsr.value === MAPPER_USR) {
      throw new BootError(`mount.usr=${MAPPER_USR} needs verity.usr= and verity.usrhash= to create that device`, { param: "verity.usr" });
    }
    if (p.mountUsr.kind === "nfs-export") return planNfs(p, p.mountUsr, fsType, options);
    return { kind: "plain", device: p.mountUsr, fsType, options };
  }
  // An appended image wins over a URL (as in Fedora CoreOS): it is already here.
  if (facts.hasUsrSquashfs) return { kind: "squashfs-file", image: "/usr.squashfs" };
  if (p.usrUrl) {
    const sha256 = p.usrHash?.replace(/^sha256:/, "");
    if (!facts.hasUsrHashList && !sha256 && !p.usrInsecure) {
      throw new BootError(
        `rd.usr.url=${redactUrl(p.usrUrl)} has nothing to verify the image against: this initrd has no stream-hash list (build.ts --usr-hashes) and rd.usr.hash=sha256:<hex> is missing. An unverified /usr is refused unless rd.usr.insecure=1`,
        { param: "rd.usr.hash" },
      );
    }
    return { kind: "remote", url: p.usrUrl, image: "/usr.squashfs", sha256, hashList: facts.hasUsrHashList ?? false, insecure: p.usrInsecure };
  }
  throw new BootError(
    "no /usr to boot: the command line has neither verity.usr= (with verity.usrhash=), mount.usr= nor rd.usr.url=, and no /usr.squashfs was appended to the initrd",
    { param: "verity.usr" },
  );
}

/**
 * A plain NFS /usr: nothing verifies what the server sends, so it is refused
 * unless rd.usr.insecure=1 says so. Only NFSv4 is spoken (the kernel's client
 * needs no helper for it): HOST:/EXPORT needs mount.usrfstype=nfs4 to say it
 * is NFS, nfs4:HOST:/EXPORT says so itself.
 */
function planNfs(p: BootParams, exp: NfsExport, fsType: string, options: MountOptions): UsrPlan {
  const spelt = formatNfsExport(exp);
  if (exp.typed ? fsType !== "auto" && fsType !== "nfs4" && fsType !== "nfs" : fsType !== "nfs4" && fsType !== "nfs") {
    throw new BootError(
      exp.typed
        ? `mount.usr=${spelt} is an NFS export but mount.usrfstype=${fsType} says otherwise: drop mount.usrfstype= or set it to nfs4`
        : `mount.usr=${spelt} looks like an NFS export (HOST:/EXPORT) but mount.usrfstype=${fsType}: set mount.usrfstype=nfs4, or write mount.usr=nfs4:${spelt}`,
      { param: "mount.usrfstype" },
    );
  }
  if (!p.usrInsecure) {
    throw new BootError(
      `mount.usr=${spelt} is an NFS /usr, which nothing verifies: whoever answers for ${exp.host} decides what runs. It is refused unless rd.usr.insecure=1; ` +
        `for a verified /usr over the network use verity.usr=nfs://HOST/PATH/usr.img or verity.usr=nbd://HOST/EXPORT with verity.usrhash=`,
      { param: "rd.usr.insecure" },
    );
  }
  return { kind: "nfs", export: exp, options: { ...options, flags: options.flags | MS_FLAGS.RDONLY, readOnly: true } };
}
