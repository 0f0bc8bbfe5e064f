// NFSv4 for /usr, with the kernel's own client: mount(2) with the server's
// address in the options is all it takes (the mount.nfs helper exists for
// name resolution, NFSv3's mount protocol and locking, none of which NFSv4
// needs). Two uses:
//   - verity.usr=nfs://HOST/PATH/FILE: the export's directory is mounted
//     read-only under /run, and the image file becomes a read-only loop
//     device, on which the verity step runs as on a disk partition;
//   - mount.usr=HOST:/EXPORT with rd.usr.insecure=1: the export is /usr.
// The mount under /run moves into stage 2 with /run, so the system shows
// where its /usr comes from.
import fs from "node:fs";
import { log } from "../log.ts";
import { BootError, messageOf } from "../errors.ts";
import { attachLoop, errnoNameOf, mount, MS } from "../sys/index.ts";
import { isMountpoint } from "../mounts.ts";
import type { BootParam } from "../errors.ts";
import { escapeControls } from "../text.ts";
import { resolveHost } from "./resolve.ts";
import type { MountOptions } from "../mountopts.ts";
import { NFS_DEFAULT_PORT, type NfsExport } from "./ref.ts";

/** Where verity.usr=nfs:// mounts the image's directory. */
export const NFS_IMAGE_DIR = "/run/bunboot/usr-nfs";

/**
 * NFSv4 minor versions, newest first; the kernel's client is told one at a
 * time, as mount.nfs does, since a server refuses one it lacks.
 */
const MINOR_VERSIONS = ["4.2", "4.1", "4.0"];

/**
 * The mount data for one attempt, pure. TCP; a soft mount with timeo=100
 * (10 s) and retrans=3: a server that stops answering fails a read with EIO
 * after about 40 s instead of hanging it, in stage 1 (where a hang would
 * leave PID 1 stuck in a read with no shell) and in stage 2 (reads work again
 * once the server answers; /usr is read-only, so a soft mount risks no lost
 * writes). No locking (a read-only /usr takes no locks). The client address
 * for NFSv4.0 callbacks is left to the kernel, which uses the address of the
 * connection. `extra` (mount.usrflags=) comes last, so its options win.
 */
export function nfsMountData(address: string, port: number, version: string, extra = ""): string {
  return [`vers=${version}`, `addr=${address}`, `port=${port}`, "proto=tcp", "soft", "timeo=100", "retrans=3", ...(extra ? [extra] : [])].join(",");
}

/** The port the kernel will use: the last port= of the extra options, else the default. */
export function effectivePort(port: number, extra = ""): number {
  const m = [...extra.matchAll(/(?:^|,)port=(\d+)(?=,|$)/g)].at(-1);
  return m ? Number(m[1]) : port;
}

/**
 * Mounts HOST:PATH read-only at target, trying NFSv4.2, 4.1 and 4.0 in turn.
 * Returns the version that worked.
 */
export function mountNfs(opts: { host: string; address: string; port: number; path: string; target: string; flags: number; extraData?: string; param: BootParam }): string {
  const source = `${opts.host}:${opts.path}`;
  const port = effectivePort(opts.port, opts.extraData);
  fs.mkdirSync(opts.target, { recursive: true });
  const failures: string[] = [];
  for (const version of MINOR_VERSIONS) {
    try {
      mount(source, opts.target, "nfs4", opts.flags | MS.RDONLY, nfsMountData(opts.address, opts.port, version, opts.extraData));
      log.info(`mounted ${escapeControls(source)} (NFS ${version}, server ${opts.address}:${port}) on ${opts.target}`);
      return version;
    } catch (e) {
      const code = errnoNameOf(e);
      failures.push(`NFS ${version}: ${messageOf(e)}`);
      // Only "this version is not spoken" is worth another version (the
      // kernel says EPROTONOSUPPORT, or EINVAL for a minor version it lacks).
      if (code !== "EPROTONOSUPPORT" && code !== "EINVAL") break;
    }
  }
  const last = failures.at(-1) ?? "";
  const hint = /ENODEV/.test(last)
    ? " (the nfsv4 module is missing or failed to load: see the modprobe lines above)"
    : /ETIMEDOUT|EHOSTUNREACH|ECONNREFUSED|ENETUNREACH/.test(last)
      ? ` (is an NFSv4 server listening on ${opts.address}:${port}?)`
      : /ENOENT|EACCES|EPERM/.test(last)
        ? ` (does the server export ${opts.path} to this machine?)`
        : "";
  throw new BootError(`cannot mount ${escapeControls(source)} over NFS: ${failures.join("; ")}${hint}`, { param: opts.param });
}

/**
 * verity.usr=nfs://: the directory mounted (or still mounted by the previous
 * attempt), the image file opened read-only, and a read-only loop device over
 * it. The loop device's fd is returned open: with autoclear the device goes
 * once the last holder closes it, so the caller closes it after the verity
 * mapping holds the device.
 */
export async function attachNfsImage(src: { host: string; port: number; dir: string; file: string }): Promise<{ dev: string; fd: number }> {
  const address = await resolveHost(src.host, "verity.usr", "NFS server");
  if (isMountpoint(NFS_IMAGE_DIR)) log.info(`${NFS_IMAGE_DIR} is still mounted from the previous attempt`);
  else mountNfs({ host: src.host, address, port: src.port, path: src.dir, target: NFS_IMAGE_DIR, flags: MS.NODEV | MS.NOSUID | MS.NOEXEC, param: "verity.usr" });
  const image = `${NFS_IMAGE_DIR}/${src.file}`;
  let fd: number;
  try {
    fd = fs.openSync(image, "r");
  } catch (e) {
    throw new BootError(`verity.usr: cannot open ${escapeControls(src.file)} in ${src.host}:${escapeControls(src.dir)}: ${messageOf(e)}`, { param: "verity.usr" });
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new BootError(`verity.usr: ${escapeControls(src.file)} in ${src.host}:${escapeControls(src.dir)} is not a regular file`, { param: "verity.usr" });
    const loop = attachLoop(fd, image, (p) => fs.openSync(p, "r"));
    log.info(`${src.host}:${escapeControls(`${src.dir === "/" ? "" : src.dir}/${src.file}`)} (${st.size} bytes) is ${loop.dev}, read-only`);
    return loop;
  } finally {
    fs.closeSync(fd);
  }
}

/** mount.usr=HOST:/EXPORT (rd.usr.insecure=1): the export itself is /usr, with mount.usrflags= added. */
export async function mountNfsUsr(plan: { export: NfsExport; options: MountOptions }, target: string): Promise<void> {
  const address = await resolveHost(plan.export.host, "mount.usr", "NFS server");
  log.warn(`/usr is ${plan.export.host}:${escapeControls(plan.export.path)} over NFS and nothing verifies it (rd.usr.insecure=1)`);
  mountNfs({ host: plan.export.host, address, port: NFS_DEFAULT_PORT, path: plan.export.path, target, flags: plan.options.flags, extraData: plan.options.data, param: "mount.usr" });
}
