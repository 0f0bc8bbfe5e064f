// mount(8)-style option strings -> mount(2) flags plus the filesystem's own
// data string. Pure, so the translation of mount.usrflags= is unit-tested.
import { showValue } from "./cmdline.ts";
import { MS_FLAGS } from "./msflags.ts";
import { BootError } from "./errors.ts";

export interface MountOptions {
  flags: number;
  data: string;
  readOnly: boolean;
}

// Options mount(8) turns into flags (the value is [set, clear]).
const FLAG_WORDS: Record<string, [number, number]> = {
  ro: [MS_FLAGS.RDONLY, 0],
  rw: [0, MS_FLAGS.RDONLY],
  nosuid: [MS_FLAGS.NOSUID, 0],
  suid: [0, MS_FLAGS.NOSUID],
  nodev: [MS_FLAGS.NODEV, 0],
  dev: [0, MS_FLAGS.NODEV],
  noexec: [MS_FLAGS.NOEXEC, 0],
  exec: [0, MS_FLAGS.NOEXEC],
  sync: [MS_FLAGS.SYNCHRONOUS, 0],
  async: [0, MS_FLAGS.SYNCHRONOUS],
  dirsync: [MS_FLAGS.DIRSYNC, 0],
  noatime: [MS_FLAGS.NOATIME, 0],
  atime: [0, MS_FLAGS.NOATIME],
  nodiratime: [MS_FLAGS.NODIRATIME, 0],
  diratime: [0, MS_FLAGS.NODIRATIME],
  relatime: [MS_FLAGS.RELATIME, 0],
  norelatime: [0, MS_FLAGS.RELATIME],
  strictatime: [MS_FLAGS.STRICTATIME, 0],
  lazytime: [MS_FLAGS.LAZYTIME, 0],
  nolazytime: [0, MS_FLAGS.LAZYTIME],
  silent: [MS_FLAGS.SILENT, 0],
  loud: [0, MS_FLAGS.SILENT],
  nosymfollow: [MS_FLAGS.NOSYMFOLLOW, 0],
  // Userspace-only words mount(8) accepts and drops.
  defaults: [0, 0],
  auto: [0, 0],
  noauto: [0, 0],
  nofail: [0, 0],
  user: [0, 0],
  nouser: [0, 0],
  _netdev: [0, 0],
};

/** The parameters mount options and filesystem types come from. */
export type MountParam = "mount.usrflags" | "usrflags" | "mount.usrfstype" | "usrfstype";

/**
 * A mount option string that cannot be passed on. The message names the
 * parameter and shows the value escaped and shortened (as command-line
 * errors do), so that the failure screen says what to fix; `param` is the
 * parameter for the emergency policy.
 */
export class MountOptionError extends BootError {
  override name = "MountOptionError";
  constructor(
    message: string,
    override readonly param: MountParam,
  ) {
    super(message, { param });
  }
}

/**
 * Parses "ro,noatime,compress=zstd" into flags and data ("compress=zstd").
 * `param` is the parameter the text came from (mount.usrflags= or its
 * legacy name usrflags=); it names the parameter in errors.
 */
export function parseMountOptions(text: string, param: MountParam = "mount.usrflags"): MountOptions {
  let flags = 0;
  const data: string[] = [];
  for (const raw of text.split(",")) {
    const opt = raw.trim();
    if (opt === "") continue;
    // The data string goes to the kernel unquoted; a quote or blank in it
    // means the user's quoting went wrong, and the kernel's error would not say so.
    if (/[\s"'\\]/.test(opt)) {
      throw new MountOptionError(`${param}=${showValue(text)}: option "${showValue(opt)}" contains a space, quote or backslash`, param);
    }
    if (/[\u0000-\u001f\u007f-\u009f]/.test(opt)) {
      throw new MountOptionError(`${param}=${showValue(text)}: option "${showValue(opt)}" contains a control character`, param);
    }
    const f = FLAG_WORDS[opt];
    if (f) {
      flags = (flags | f[0]) & ~f[1];
    } else if (opt.startsWith("x-") || opt.startsWith("X-")) {
      // comments for userspace tools (systemd uses x-systemd.*), never the kernel's
    } else {
      data.push(opt);
    }
  }
  return { flags, data: data.join(","), readOnly: (flags & MS_FLAGS.RDONLY) !== 0 };
}
