// The error type of boot failures, and the one way to show what was thrown.
// A failure that a command-line parameter can fix names it, and the failure
// screen prints it as "parameter to check: <name>=" (lib/emergency.ts): the
// name is a BootParam, so a misspelt one does not compile. Pure: the init,
// the host commands and the tests share it.

/**
 * Every kernel command-line parameter the init reads (docs/command-line.md
 * documents each one; lib/errors.test.ts keeps the two lists equal). A
 * failure can point at any of them: the cmdline step reports an invalid
 * value of each by name.
 */
export const BOOT_PARAMS = [
  // /usr
  "verity.usr",
  "verity.usrhash",
  "mount.usr",
  "usr",
  "mount.usrfstype",
  "usrfstype",
  "mount.usrflags",
  "usrflags",
  "init",
  // debugging, breakpoints, failures
  "rd.earlytimeout",
  "rd.earlyshell",
  "rd.break",
  "rd.earlytrace",
  "rd.debug",
  "rd.emergency",
  "rd.emergency.timeout",
  "rd.shell",
  // modules
  "rd.driver.pre",
  "rd.driver.blacklist",
  "modprobe.blacklist",
  // diskless /usr and network
  "rd.usr.url",
  "rd.usr.hash",
  "rd.usr.insecure",
  "ip",
  "BOOTIF",
  "nameserver",
  "rd.neednet",
  "proxy",
  // accepted, not used
  "console",
] as const;

export type BootParam = (typeof BOOT_PARAMS)[number];

const BOOT_PARAM_NAMES: ReadonlySet<string> = new Set(BOOT_PARAMS);

/** Whether a name from outside (a command-line key) is one of BOOT_PARAMS. */
export function isBootParam(name: string): name is BootParam {
  return BOOT_PARAM_NAMES.has(name);
}

/**
 * A boot failure: the message is what the failure screen shows, `param` the
 * command-line parameter to check, if one can fix it. Subclasses exist only
 * where a catch needs to tell the failure apart (FetchFailure,
 * MountOptionError, IpConfigError).
 */
export class BootError extends Error {
  override name = "BootError";
  readonly param?: BootParam;
  constructor(message: string, opts: { param?: BootParam; cause?: unknown } = {}) {
    super(message, "cause" in opts ? { cause: opts.cause } : undefined);
    this.param = opts.param;
  }
}

/** What a caught value says: an Error's message, anything else as text. */
export function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
