// Pure parsing of the kernel command line: tokenising (as the kernel does
// it) and turning the words into validated boot parameters. No I/O here, so
// that every rule can be tested without booting; the caller reads
// /proc/cmdline and decides what to do with the errors.
//
// Parameter names and meanings: /work/shared/spec/boot-contract.md and
// remote-usr.md.
import { DEVICE_EXPECTED, parseDeviceRef, type DeviceRef } from "./devices/ref.ts";
import { ParamError } from "./param-error.ts";

// ---------------------------------------------------------------------------
// Tokeniser
// ---------------------------------------------------------------------------

/** One word of the command line; `value` is null for a bare word ("rd.earlyshell"). */
export interface CmdlineWord {
  key: string;
  value: string | null;
}

const QUOTE = 0x22; // "
const EQUALS = 0x3d; // =

/**
 * The kernel's isspace(): its ctype table (lib/ctype.c) marks \t \n \v \f \r,
 * space and also byte 0xA0 (Latin-1 no-break space) as whitespace. We test
 * UTF-16 code units, so a caller that decodes /proc/cmdline as latin1 gets
 * byte-exact kernel behaviour; with UTF-8 decoding, U+00A0 still splits (the
 * kernel splits C2 A0 at the A0 byte too), but a multi-byte character whose
 * encoding contains the byte A0 (such as "à" = C3 A0) stays whole where the
 * kernel would cut it.
 */
function isKernelSpace(c: number): boolean {
  return c === 0x20 || (c >= 0x09 && c <= 0x0d) || c === 0xa0;
}

function skipSpaces(text: string, pos: number, end: number): number {
  while (pos < end && isKernelSpace(text.charCodeAt(pos))) pos++;
  return pos;
}

/**
 * Splits a command line into words exactly as the kernel's parse_args() /
 * next_arg() (lib/cmdline.c) does, so that we see the same parameters the
 * kernel saw:
 * - words are separated by whitespace, except inside double quotes; a '"'
 *   anywhere in a word toggles quoting and is otherwise kept literally;
 * - the key ends at the first '=' of the word, quoted or not (next_arg does
 *   not look at the quote state there); an '=' as the very first character
 *   does not count, since the kernel uses index 0 as "no '=' seen";
 * - if the value starts with '"', that quote is dropped and so is a '"' that
 *   ends the word; a word starting with '"' likewise loses that quote and a
 *   '"' that ends the word (at most one trailing quote is ever removed);
 * - an unbalanced quote makes the rest of the line part of the word;
 * - the string ends at a NUL, as the kernel's C string does.
 * One trailing "\n" is removed first: /proc/cmdline appends it to the line
 * the kernel parsed (it matters inside an unbalanced quote).
 *
 * The kernel stops parsing parameters at a bare "--" (the rest goes to init
 * as arguments); this function still returns those words, as {key: "--",
 * value: null} followed by the rest, and parseBootParams() stops there.
 *
 * Linear in the length of the text: one scan, one slice per key and value.
 */
export function splitCmdline(text: string): CmdlineWord[] {
  let end = text.indexOf("\0");
  if (end < 0) end = text.length;
  if (end === text.length && end > 0 && text.charCodeAt(end - 1) === 0x0a) end--;

  const words: CmdlineWord[] = [];
  let pos = skipSpaces(text, 0, end);
  while (pos < end) {
    let start = pos;
    let inQuote = false;
    let quoted = false;
    if (text.charCodeAt(start) === QUOTE) {
      start++;
      inQuote = true;
      quoted = true;
    }

    let i = start;
    let equals = -1;
    for (; i < end; i++) {
      const c = text.charCodeAt(i);
      if (!inQuote && isKernelSpace(c)) break;
      if (equals < 0 && c === EQUALS && i > start) equals = i;
      if (c === QUOTE) inQuote = !inQuote;
    }

    // Whether the character before the word's end (a '"') is cut off. Both
    // kernel rules look at that same character, so it is removed at most once.
    let dropLast = quoted && i > start && text.charCodeAt(i - 1) === QUOTE;
    if (equals < 0) {
      words.push({ key: text.slice(start, dropLast ? i - 1 : i), value: null });
    } else {
      let valueStart = equals + 1;
      if (valueStart < i && text.charCodeAt(valueStart) === QUOTE) {
        valueStart++;
        if (text.charCodeAt(i - 1) === QUOTE) dropLast = true;
      }
      // `key="` : the opening quote is also the closing one -> empty value.
      const valueEnd = Math.max(valueStart, dropLast ? i - 1 : i);
      words.push({ key: text.slice(start, equals), value: text.slice(valueStart, valueEnd) });
    }
    pos = skipSpaces(text, i, end);
  }
  return words;
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

// ParamError lives in its own module so that the device references (which
// throw it) need not import this file; showValue sits with escapeControls.
// Re-exported for the other command-line parsers and the tests.
export { ParamError } from "./param-error.ts";
export { escapeControls, showValue } from "./text.ts";

// ---------------------------------------------------------------------------
// Value parsers
// ---------------------------------------------------------------------------

export const FLAG_EXPECTED = "no value, 1, yes, on or true to enable; 0, no, off or false to disable";

/**
 * A boolean parameter. Unlike Flatcar's script (which tests only for the
 * word's presence), "=0" really means off. Case-insensitive, as systemd's
 * parse_boolean() is, because stage 2 reads the same command line.
 */
export function parseFlag(param: string, value: string | null): boolean {
  if (value === null) return true;
  switch (value.toLowerCase()) {
    case "1":
    case "yes":
    case "on":
    case "true":
      return true;
    case "0":
    case "no":
    case "off":
    case "false":
      return false;
    default:
      throw new ParamError(param, value, FLAG_EXPECTED);
  }
}

// The callers wait with timers in milliseconds, and timers treat anything
// above 2^31-1 ms as "fire now": cap so that a huge timeout can never turn
// into an immediate reboot.
export const TIMEOUT_MAX_SEC = Math.floor(0x7fffffff / 1000);
export const TIMEOUT_EXPECTED = `a whole number of seconds from 0 to ${TIMEOUT_MAX_SEC} (0 = wait forever)`;

function parseSeconds(param: string, value: string | null): number {
  // Digits only: no sign, exponent, hex or blanks that Number() would accept.
  if (value === null || !/^[0-9]{1,10}$/.test(value)) throw new ParamError(param, value, TIMEOUT_EXPECTED);
  const n = Number(value);
  if (n > TIMEOUT_MAX_SEC) throw new ParamError(param, value, TIMEOUT_EXPECTED);
  return n;
}

export const VERITY_HASH_EXPECTED = "64 hex digits (the sha256 dm-verity root hash)";

function parseRootHash(param: string, value: string | null): string {
  if (value === null || value.length !== 64 || !/^[0-9a-f]{64}$/i.test(value))
    throw new ParamError(param, value, VERITY_HASH_EXPECTED);
  return value.toLowerCase();
}

export const USR_HASH_EXPECTED = "sha256:<64 hex digits> (the digest of the whole image)";

/** rd.usr.hash=sha256:<hex>; kept with its algorithm prefix, normalised to lower case. */
function parseUsrHash(param: string, value: string | null): string {
  if (value === null || value.length !== 71 || !/^sha256:[0-9a-f]{64}$/i.test(value))
    throw new ParamError(param, value, USR_HASH_EXPECTED);
  return value.toLowerCase();
}

export const USR_URL_EXPECTED = "an http://, https://, sftp://user@host[:port]/path or file:///path URL";
export const USR_URL_ESCAPE_EXPECTED =
  "a URL whose %-escapes are % and two hex digits that decode to UTF-8 text without control characters (write a literal % as %25)";
export const USR_URL_PASSWORD_EXPECTED =
  "an sftp URL without a password: the command line is readable by every process and ends up in logs (ship it in /etc/bunboot/sftp/password in an appended cpio)";
export const USR_URL_SFTP_USER_EXPECTED = "an sftp URL with a user name: sftp://user@host[:port]/path";
export const USR_URL_QUERY_EXPECTED = "a file:// or sftp:// URL without ?query or #fragment (write ? as %3F and # as %23)";

/**
 * A URL as it may be shown in a message or log: the password of its userinfo
 * replaced by "***". Works on the raw text, since it must also cover values
 * the URL parser rejects ("sftp:u:p@h/x", "http:/u:p@h/x", a bad scheme).
 * The userinfo can only be in a stretch of text without '/', '?' or '#' (the
 * characters that end an authority); in every such stretch holding an '@',
 * whatever lies between its first ':' and its last '@' is hidden, as WHATWG
 * reads "u:p@ss@h" as user "u", password "p@ss". This may also hide part of a
 * path ("/a:b@c"), which in a message costs nothing. A password with an
 * unescaped '/', '?' or '#' is not one to the URL parser either, and is not
 * recognised.
 */
export function redactUrlPassword(url: string): string {
  if (!url.includes("@")) return url;
  // One scan over the stretches (a regex such as /[^/?#]*@/ would backtrack
  // quadratically on a long value without '@').
  return url
    .split(/([/?#])/)
    .map((stretch) => {
      const at = stretch.lastIndexOf("@");
      if (at < 0) return stretch;
      const colon = stretch.indexOf(":");
      return colon >= 0 && colon < at - 1 ? `${stretch.slice(0, colon + 1)}***${stretch.slice(at)}` : stretch;
    })
    .join("");
}

const CONTROL_RE = /[\u0000-\u001f\u007f-\u009f]/;

/** decodeURIComponent() that says "no" instead of throwing a bare URIError; control characters count as undecodable. */
function decodesCleanly(text: string): boolean {
  try {
    return !CONTROL_RE.test(decodeURIComponent(text));
  } catch {
    return false;
  }
}

// An sftp host: a DNS name or IPv4 address, or a bracketed IPv6 address.
const SFTP_HOST_RE = /^(?:[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?|\[[0-9A-Fa-f:.]+\])$/;

/**
 * rd.usr.url: only the schemes the fetcher implements. Blanks, control
 * characters and backslashes are refused because the WHATWG URL parser would
 * silently drop, encode or reinterpret them, fetching something other than
 * what the user sees. Every %-escape must be well-formed; file: paths and
 * sftp paths and user names are decoded by the fetcher, so theirs must also
 * decode to UTF-8 without control characters (the fetcher would otherwise
 * fail later with a bare "URI error"). sftp passwords are refused (they
 * belong in an appended cpio), and no message repeats a password.
 * Stored as given; the fetcher parses it again.
 */
function parseUsrUrl(param: string, value: string | null): string {
  const fail = (expected = USR_URL_EXPECTED): never => {
    throw new ParamError(param, value === null ? null : redactUrlPassword(value), expected);
  };
  // WHATWG also reads '\\' as '/' in http(s) URLs.
  if (value === null || /[\s\u0000-\u001f\u007f-\u009f\\]/.test(value)) return fail();
  // WHATWG would read "http:host/x" and "https:///host/x" as http(s)://host/x;
  // insist on the usual spelling, with a host right after "//" except for file:.
  if (!/^(?:(?:https?|sftp):\/\/[^/]|file:\/\/\/)/i.test(value)) return fail();
  // WHATWG keeps a stray '%' as it is; the fetcher's decoding would not.
  if (/%(?![0-9A-Fa-f]{2})/.test(value)) return fail(USR_URL_ESCAPE_EXPECTED);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return fail();
  }
  switch (url.protocol) {
    case "http:":
    case "https:":
      if (url.hostname === "") fail();
      break;
    case "sftp:":
      if (url.password !== "") fail(USR_URL_PASSWORD_EXPECTED);
      if (url.hostname === "" || url.pathname === "" || url.pathname === "/") fail();
      if (!SFTP_HOST_RE.test(url.hostname)) fail();
      if (url.username === "") fail(USR_URL_SFTP_USER_EXPECTED);
      if (!decodesCleanly(url.username) || !decodesCleanly(url.pathname)) fail(USR_URL_ESCAPE_EXPECTED);
      if (value.includes("?") || value.includes("#")) fail(USR_URL_QUERY_EXPECTED);
      break;
    case "file:":
      if (url.hostname !== "" || url.pathname === "/") fail();
      if (!decodesCleanly(url.pathname)) fail(USR_URL_ESCAPE_EXPECTED);
      if (value.includes("?") || value.includes("#")) fail(USR_URL_QUERY_EXPECTED);
      break;
    default:
      fail();
  }
  return value;
}

export const BOOTIF_EXPECTED = "01-aa-bb-cc-dd-ee-ff (01 = Ethernet, then the MAC address, as pxelinux IPAPPEND 2 writes it)";

/**
 * BOOTIF= from pxelinux: hardware type 01 (Ethernet) and the MAC with '-'.
 * Like dracut, the MAC alone (with '-' or ':') is accepted too. Returned in
 * the lower-case colon form that /sys/class/net/<if>/address uses.
 */
function parseBootif(param: string, value: string | null): string {
  // One separator throughout: "aa-bb:cc..." is more likely a typo than a MAC.
  const mac = value === null ? undefined : /^(?:01-)?([0-9a-f]{2}([-:])[0-9a-f]{2}(?:\2[0-9a-f]{2}){4})$/i.exec(value)?.[1];
  if (mac === undefined) throw new ParamError(param, value, BOOTIF_EXPECTED);
  return mac.replaceAll("-", ":").toLowerCase();
}

export const EMERGENCY_EXPECTED = "prompt, shell, reboot, poweroff or halt";

export type EmergencyAction = "prompt" | "shell" | "reboot" | "poweroff" | "halt";

function parseEmergency(param: string, value: string | null): EmergencyAction {
  // "prompt" is the default; accepting it lets a later word undo an earlier one.
  switch (value) {
    case "prompt":
    case "shell":
    case "reboot":
    case "poweroff":
    case "halt":
      return value;
    default:
      throw new ParamError(param, value, EMERGENCY_EXPECTED);
  }
}

/** The contract's breakpoints, in boot order. */
export const BREAKPOINTS = Object.freeze(["pre-udev", "pre-verity", "pre-mount", "pre-switch-root"] as const);
/** A breakpoint name: a misspelt one in a breakpoint() call does not compile. */
export type Breakpoint = (typeof BREAKPOINTS)[number];

function isBreakpoint(name: string): name is Breakpoint {
  return (BREAKPOINTS as readonly string[]).includes(name);
}
export const BREAKPOINT_EXPECTED = `one of ${BREAKPOINTS.join(", ")}`;
/** A bare rd.break stops right before switch_root, as in dracut. */
const DEFAULT_BREAKPOINT: Breakpoint = "pre-switch-root";

export const MODULE_EXPECTED = "kernel module names (letters, digits, _ and -) separated by commas";
// A leading '-' would turn the name into a modprobe option.
const MODULE_RE = /^[A-Za-z0-9_][A-Za-z0-9_-]*$/;

export const FSTYPE_EXPECTED = "a filesystem type such as auto, ext4, btrfs or squashfs";
const FSTYPE_RE = /^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$/;

export const MOUNT_FLAGS_EXPECTED = "mount options such as ro";
export const CONSOLE_EXPECTED = "a console such as tty0 or ttyS0,115200n8";
export const IP_EXPECTED = "dhcp, <interface>:dhcp or <client>:<peer>:<gateway>:<netmask>:<hostname>:<interface>:none";
export const NAMESERVER_EXPECTED = "a name server address";
export const PROXY_EXPECTED = "a proxy URL such as http://proxy.example:3128";
export const INIT_EXPECTED = "an absolute path such as /init";

/** Values kept raw for a later stage still must be present and non-empty. */
function requireText(param: string, value: string | null, expected: string): string {
  if (value === null || value === "") throw new ParamError(param, value, expected);
  return value;
}

function requireValue(param: string, value: string | null, expected: string): string {
  if (value === null) throw new ParamError(param, value, expected);
  return value;
}

// ---------------------------------------------------------------------------
// Boot parameters
// ---------------------------------------------------------------------------

export interface BootParams {
  verityUsr?: DeviceRef;
  /** 64 hex digits, lower case. */
  verityUsrHash?: string;
  mountUsr?: DeviceRef;
  mountUsrFsType: string;
  /** Raw; validated when /usr is mounted. */
  mountUsrFlags: string;
  /**
   * The parameter mountUsrFlags came from: the legacy usrflags= when it
   * decided, else mount.usrflags= (also for the default), so that an error
   * about the flags names what the user actually wrote.
   */
  mountUsrFlagsParam: "mount.usrflags" | "usrflags";
  earlyShell: boolean;
  earlyTrace: boolean;
  debug: boolean;
  /** 0 = wait forever. */
  earlyTimeoutSec: number;
  /** Names from BREAKPOINTS, in command-line order, without duplicates. */
  breakpoints: Breakpoint[];
  shellAllowed: boolean;
  emergency: EmergencyAction;
  /** 0 = wait forever. */
  emergencyTimeoutSec: number;
  driverPre: string[];
  driverBlacklist: string[];
  console: string[];
  usrUrl?: string;
  /** "sha256:<64 hex digits>", lower case. */
  usrHash?: string;
  usrInsecure: boolean;
  /** Raw ip= values, parsed by the network code. */
  ip: string[];
  /** MAC address "aa:bb:cc:dd:ee:ff" from BOOTIF=. */
  bootif?: string;
  nameservers: string[];
  /** rd.neednet as given; rd.usr.url implies it, which the caller applies. */
  neednet: boolean;
  proxy?: string;
  init?: string;
}

/** The values used when the command line says nothing. Fresh arrays on every call. */
export function defaultBootParams(): BootParams {
  return {
    mountUsrFsType: "auto",
    mountUsrFlags: "ro",
    mountUsrFlagsParam: "mount.usrflags",
    earlyShell: false,
    earlyTrace: false,
    debug: false,
    earlyTimeoutSec: 300,
    breakpoints: [],
    shellAllowed: true,
    emergency: "prompt",
    emergencyTimeoutSec: 60,
    driverPre: [],
    driverBlacklist: [],
    console: [],
    usrInsecure: false,
    ip: [],
    nameservers: [],
    neednet: false,
  };
}

/**
 * The last word of a scalar key decides; an invalid last word means the
 * default. `given` tells "absent" from "given but invalid", so that a Flatcar
 * name wins over its legacy name even when its own value was rejected (the
 * user's intent is in the Flatcar name; the error is reported).
 */
interface Slot<T> {
  given: boolean;
  value: T | undefined;
}

function emptySlot<T>(): Slot<T> {
  return { given: false, value: undefined };
}

function pick<T>(preferred: Slot<T>, legacy: Slot<T>): T | undefined {
  return preferred.given ? preferred.value : legacy.value;
}

/**
 * Turns command-line words into boot parameters. Never throws: every invalid
 * value becomes a ParamError and the field keeps its default, so that the
 * caller can report all mistakes at once. Keys are matched exactly; unknown
 * keys belong to the kernel or to stage 2 and are ignored. Words after a bare
 * "--" are init's arguments, not parameters (as for the kernel), and are
 * ignored as well.
 */
export function parseBootParams(words: readonly CmdlineWord[]): { params: BootParams; errors: ParamError[] } {
  const params = defaultBootParams();
  const defaults = defaultBootParams();
  const errors: ParamError[] = [];

  const mountUsr = emptySlot<DeviceRef>();
  const legacyUsr = emptySlot<DeviceRef>();
  const fsType = emptySlot<string>();
  const legacyFsType = emptySlot<string>();
  const flags = emptySlot<string>();
  const legacyFlags = emptySlot<string>();

  // Sets deduplicate lists where repeating an entry has no meaning.
  const breakpoints = new Set<Breakpoint>();
  const driverPre = new Set<string>();
  const driverBlacklist = new Set<string>();

  /** Runs one value parser; on a ParamError records it and returns undefined. */
  function attempt<T>(parse: () => T): T | undefined {
    try {
      return parse();
    } catch (e) {
      if (e instanceof ParamError) {
        errors.push(e);
        return undefined;
      }
      throw e;
    }
  }

  function fill<T>(slot: Slot<T>, parse: () => T): void {
    slot.given = true;
    slot.value = attempt(parse);
  }

  function flag(key: string, value: string | null, fallback: boolean): boolean {
    return attempt(() => parseFlag(key, value)) ?? fallback;
  }

  /** Comma lists: empty items are skipped (trailing commas), each bad item is its own error. */
  function addModules(key: string, value: string | null, into: Set<string>): void {
    if (value === null) {
      errors.push(new ParamError(key, null, MODULE_EXPECTED));
      return;
    }
    for (const item of value.split(",")) {
      if (item === "") continue;
      if (MODULE_RE.test(item)) into.add(item);
      else errors.push(new ParamError(key, item, MODULE_EXPECTED));
    }
  }

  function addBreakpoints(key: string, value: string | null): void {
    if (value === null) {
      breakpoints.add(DEFAULT_BREAKPOINT);
      return;
    }
    let any = false;
    for (const item of value.split(",")) {
      if (item === "") continue;
      any = true;
      if (isBreakpoint(item)) breakpoints.add(item);
      else errors.push(new ParamError(key, item, BREAKPOINT_EXPECTED));
    }
    // "rd.break=" names nothing; unlike bare rd.break it is most likely a mistake.
    if (!any) errors.push(new ParamError(key, value, BREAKPOINT_EXPECTED));
  }

  for (const { key, value } of words) {
    if (key === "--" && value === null) break;
    switch (key) {
      case "verity.usr":
        params.verityUsr = attempt(() => parseDeviceRef(key, requireValue(key, value, DEVICE_EXPECTED)));
        break;
      case "verity.usrhash":
        params.verityUsrHash = attempt(() => parseRootHash(key, value));
        break;
      case "mount.usr":
        fill(mountUsr, () => parseDeviceRef(key, requireValue(key, value, DEVICE_EXPECTED)));
        break;
      case "usr":
        fill(legacyUsr, () => parseDeviceRef(key, requireValue(key, value, DEVICE_EXPECTED)));
        break;
      case "mount.usrfstype":
      case "usrfstype":
        fill(key === "usrfstype" ? legacyFsType : fsType, () => {
          if (value === null || !FSTYPE_RE.test(value)) throw new ParamError(key, value, FSTYPE_EXPECTED);
          return value;
        });
        break;
      case "mount.usrflags":
      case "usrflags":
        fill(key === "usrflags" ? legacyFlags : flags, () => requireValue(key, value, MOUNT_FLAGS_EXPECTED));
        break;
      case "rd.earlyshell":
        params.earlyShell = flag(key, value, defaults.earlyShell);
        break;
      case "rd.earlytrace":
        params.earlyTrace = flag(key, value, defaults.earlyTrace);
        break;
      case "rd.debug":
        params.debug = flag(key, value, defaults.debug);
        break;
      case "rd.earlytimeout":
        params.earlyTimeoutSec = attempt(() => parseSeconds(key, value)) ?? defaults.earlyTimeoutSec;
        break;
      case "rd.break":
        addBreakpoints(key, value);
        break;
      case "rd.shell":
        params.shellAllowed = flag(key, value, defaults.shellAllowed);
        break;
      case "rd.emergency":
        params.emergency = attempt(() => parseEmergency(key, value)) ?? defaults.emergency;
        break;
      case "rd.emergency.timeout":
        params.emergencyTimeoutSec = attempt(() => parseSeconds(key, value)) ?? defaults.emergencyTimeoutSec;
        break;
      case "rd.driver.pre":
        addModules(key, value, driverPre);
        break;
      case "rd.driver.blacklist":
      case "modprobe.blacklist":
        addModules(key, value, driverBlacklist);
        break;
      case "console": {
        const v = attempt(() => requireText(key, value, CONSOLE_EXPECTED));
        if (v !== undefined) params.console.push(v);
        break;
      }
      case "rd.usr.url":
        params.usrUrl = attempt(() => parseUsrUrl(key, value));
        break;
      case "rd.usr.hash":
        params.usrHash = attempt(() => parseUsrHash(key, value));
        break;
      case "rd.usr.insecure":
        params.usrInsecure = flag(key, value, defaults.usrInsecure);
        break;
      case "ip": {
        const v = attempt(() => requireText(key, value, IP_EXPECTED));
        if (v !== undefined) params.ip.push(v);
        break;
      }
      case "BOOTIF":
        params.bootif = attempt(() => parseBootif(key, value));
        break;
      case "nameserver": {
        const v = attempt(() => requireText(key, value, NAMESERVER_EXPECTED));
        if (v !== undefined) params.nameservers.push(v);
        break;
      }
      case "rd.neednet":
        params.neednet = flag(key, value, defaults.neednet);
        break;
      case "proxy":
        params.proxy = attempt(() => requireText(key, value, PROXY_EXPECTED));
        break;
      case "init":
        params.init = attempt(() => {
          if (value === null || !value.startsWith("/")) throw new ParamError(key, value, INIT_EXPECTED);
          return value;
        });
        break;
      default:
        break;
    }
  }

  const usr = pick(mountUsr, legacyUsr);
  if (usr !== undefined) params.mountUsr = usr;
  params.mountUsrFsType = pick(fsType, legacyFsType) ?? defaults.mountUsrFsType;
  params.mountUsrFlags = pick(flags, legacyFlags) ?? defaults.mountUsrFlags;
  if (!flags.given && legacyFlags.value !== undefined) params.mountUsrFlagsParam = "usrflags";
  params.breakpoints = [...breakpoints];
  params.driverPre = [...driverPre];
  params.driverBlacklist = [...driverBlacklist];

  // Optional fields reset by an invalid last word are removed rather than
  // left as explicit undefined, so that "absent" has one representation.
  for (const k of ["verityUsr", "verityUsrHash", "usrUrl", "usrHash", "bootif", "proxy", "init"] as const) {
    if (params[k] === undefined) delete params[k];
  }
  return { params, errors };
}
