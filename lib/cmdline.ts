// Pure parsing of the kernel command line: tokenising (as the kernel does
// it) and turning the words into validated boot parameters. No I/O here, so
// that every rule can be tested without booting; the caller reads
// /proc/cmdline and decides what to do with the errors.
//
// Every parameter is a row of PARAMS: its names, how its value is read, the
// text of its errors and its documentation (README.md's table is rendered
// from it). What each parameter does: docs/command-line.md.
import { DEVICE_EXPECTED, parseDeviceRef, type DeviceRef } from "./devices/ref.ts";
import { ParamError } from "./param-error.ts";
import { isNetworkUsrUrl, isNfsExportRef, parseNetworkUsr, parseNfsExport, type NetworkUsr, type NfsExport } from "./netusr/ref.ts";

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

/**
 * Reads the value of one word ("name=value", or null for a bare "name") or
 * throws a ParamError ending in `expected`, the text of the parameter's row
 * (a parser with something more precise to say uses its own text).
 */
type ValueParser<T> = (param: string, value: string | null, expected: string) => T;

const FLAG_EXPECTED = "no value, 1, yes, on or true to enable; 0, no, off or false to disable";

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
const SECONDS_EXPECTED = `a whole number of seconds from 0 to ${TIMEOUT_MAX_SEC} (0 = wait forever)`;

function parseSeconds(param: string, value: string | null, expected: string): number {
  // Digits only: no sign, exponent, hex or blanks that Number() would accept.
  if (value === null || !/^[0-9]{1,10}$/.test(value)) throw new ParamError(param, value, expected);
  const n = Number(value);
  if (n > TIMEOUT_MAX_SEC) throw new ParamError(param, value, expected);
  return n;
}

const MOUNT_USR_NETWORK_EXPECTED =
  "a device or an NFS export (nfs4:HOST:/EXPORT); an nbd:// or nfs:// image is read through verity: verity.usr=URL with verity.usrhash=";

function parseRootHash(param: string, value: string | null, expected: string): string {
  if (value === null || value.length !== 64 || !/^[0-9a-f]{64}$/i.test(value)) throw new ParamError(param, value, expected);
  return value.toLowerCase();
}

/** rd.usr.hash=sha256:<hex>; kept with its algorithm prefix, normalised to lower case. */
function parseUsrHash(param: string, value: string | null, expected: string): string {
  if (value === null || value.length !== 71 || !/^sha256:[0-9a-f]{64}$/i.test(value)) throw new ParamError(param, value, expected);
  return value.toLowerCase();
}

// What rd.usr.url= says about a URL of the right shape that is still wrong.
const USR_URL_ESCAPE_EXPECTED =
  "a URL whose %-escapes are % and two hex digits that decode to UTF-8 text without control characters (write a literal % as %25)";
const USR_URL_PASSWORD_EXPECTED =
  "an sftp URL without a password: the command line is readable by every process and ends up in logs (ship it in /etc/bunboot/sftp/password in an appended cpio)";
const USR_URL_SFTP_USER_EXPECTED = "an sftp URL with a user name: sftp://user@host[:port]/path";
const USR_URL_QUERY_EXPECTED = "a file://, sftp:// or tftp:// URL without ?query or #fragment (write ? as %3F and # as %23)";
const USR_URL_TFTP_EXPECTED = "a tftp URL with a host and a file, without user or password (TFTP has none): tftp://host[:port]/path";
const USR_URL_TFTP_MODE_EXPECTED = "a tftp URL without ;mode= (the image is always read in octet mode)";

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
function parseUsrUrl(param: string, value: string | null, expected: string): string {
  const fail = (why = expected): never => {
    throw new ParamError(param, value === null ? null : redactUrlPassword(value), why);
  };
  // WHATWG also reads '\\' as '/' in http(s) URLs.
  if (value === null || /[\s\u0000-\u001f\u007f-\u009f\\]/.test(value)) return fail();
  // WHATWG would read "http:host/x" and "https:///host/x" as http(s)://host/x;
  // insist on the usual spelling, with a host right after "//" except for file:.
  if (!/^(?:(?:https?|sftp|tftp):\/\/[^/]|file:\/\/\/)/i.test(value)) return fail();
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
    case "tftp:":
      if (url.username !== "" || url.password !== "") fail(USR_URL_TFTP_EXPECTED);
      if (url.hostname === "" || !SFTP_HOST_RE.test(url.hostname) || url.port === "0") fail(USR_URL_TFTP_EXPECTED);
      // The file name is the path without its first "/" (RFC 3617): there must be one.
      if (url.pathname === "" || url.pathname === "/") fail(USR_URL_TFTP_EXPECTED);
      if (!decodesCleanly(url.pathname)) fail(USR_URL_ESCAPE_EXPECTED);
      if (value.includes("?") || value.includes("#")) fail(USR_URL_QUERY_EXPECTED);
      if (/;mode=/i.test(decodeURIComponent(url.pathname))) fail(USR_URL_TFTP_MODE_EXPECTED);
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

/**
 * BOOTIF= from pxelinux: hardware type 01 (Ethernet) and the MAC with '-'.
 * Like dracut, the MAC alone (with '-' or ':') is accepted too. Returned in
 * the lower-case colon form that /sys/class/net/<if>/address uses.
 */
function parseBootif(param: string, value: string | null, expected: string): string {
  // One separator throughout: "aa-bb:cc..." is more likely a typo than a MAC.
  const mac = value === null ? undefined : /^(?:01-)?([0-9a-f]{2}([-:])[0-9a-f]{2}(?:\2[0-9a-f]{2}){4})$/i.exec(value)?.[1];
  if (mac === undefined) throw new ParamError(param, value, expected);
  return mac.replaceAll("-", ":").toLowerCase();
}

export type EmergencyAction = "prompt" | "shell" | "reboot" | "poweroff" | "halt";

function parseEmergency(param: string, value: string | null, expected: string): EmergencyAction {
  // "prompt" is the default; accepting it lets a later word undo an earlier one.
  switch (value) {
    case "prompt":
    case "shell":
    case "reboot":
    case "poweroff":
    case "halt":
      return value;
    default:
      throw new ParamError(param, value, expected);
  }
}

/** The contract's breakpoints, in boot order. */
export const BREAKPOINTS = Object.freeze(["pre-udev", "pre-verity", "pre-mount", "pre-switch-root"] as const);
/** A breakpoint name: a misspelt one in a breakpoint() call does not compile. */
export type Breakpoint = (typeof BREAKPOINTS)[number];

function isBreakpoint(name: string): name is Breakpoint {
  return (BREAKPOINTS as readonly string[]).includes(name);
}

/** A bare rd.break stops right before switch_root, as in dracut. */
const DEFAULT_BREAKPOINT: Breakpoint = "pre-switch-root";

/** What the items of a comma list may be, and the list's text for errors. */
interface ListItems<T extends string> {
  readonly expected: string;
  readonly is: (item: string) => item is T;
}

const BREAKPOINT_NAMES: ListItems<Breakpoint> = { expected: `one of ${BREAKPOINTS.join(", ")}`, is: isBreakpoint };

// A leading '-' would turn the name into a modprobe option.
const MODULE_RE = /^[A-Za-z0-9_][A-Za-z0-9_-]*$/;
const MODULE_NAMES: ListItems<string> = {
  expected: "kernel module names (letters, digits, _ and -) separated by commas",
  is: (item): item is string => MODULE_RE.test(item),
};

const FSTYPE_RE = /^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$/;

/** A value that `re` matches, kept as given. */
function matching(re: RegExp): ValueParser<string> {
  return (param, value, expected) => {
    if (value === null || !re.test(value)) throw new ParamError(param, value, expected);
    return value;
  };
}

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
  /** A partition, or a network source of the verity image (nbd://, nfs://). */
  verityUsr?: DeviceRef | NetworkUsr;
  /** 64 hex digits, lower case. */
  verityUsrHash?: string;
  /** A device, or an NFS export (plain, refused unless rd.usr.insecure=1). */
  mountUsr?: DeviceRef | NfsExport;
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

// ---------------------------------------------------------------------------
// The parameter table
// ---------------------------------------------------------------------------

/** The fields of BootParams whose values are exactly of type T. */
type FieldOf<T> = {
  [K in keyof BootParams]-?: [NonNullable<BootParams[K]>] extends [T] ? ([T] extends [NonNullable<BootParams[K]>] ? K : never) : never;
}[keyof BootParams];

/** Stores a value in a field of its type (FieldOf<T> guarantees what the compiler cannot see through the generic index). */
function store<T>(params: BootParams, field: FieldOf<T>, value: T): void {
  (params as unknown as Record<FieldOf<T>, T>)[field] = value;
}

/** Runs one value parser; a ParamError is recorded and gives undefined. */
function attempt<T>(errors: ParamError[], parse: () => T): T | undefined {
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

/** Reads the words of one parameter during one parse. */
interface ParamReader {
  /** One word, under the name the user wrote (errors name it); invalid values become errors. */
  word(name: string, value: string | null, errors: ParamError[]): void;
  /** After the last word: sets the parameter's field. Never called for a parameter that did not appear. */
  end(params: BootParams): void;
}

/**
 * One parameter: how its words are read and what the documentation says about
 * it. Kinds:
 * - "flag": a boolean (parseFlag); a bare word means on;
 * - "single": one value; the last word decides, and an invalid last word
 *   means the default (not an earlier valid word);
 * - "list": comma-separated items from every word, empty items skipped,
 *   repeats dropped (loading or stopping twice means nothing more);
 * - "each": one non-empty value per word, all kept in order.
 */
export interface ParamRow {
  readonly kind: "flag" | "single" | "list" | "each";
  /** The BootParams field it sets. */
  readonly field: keyof BootParams;
  /** What a valid value looks like: the end of its error messages ("name=value: expected …"). */
  readonly expected: string;
  /**
   * Other names. A list takes items from every name. For one value, the
   * main name wins whenever it appears, even with an invalid value (which is
   * reported): the user's intent is in the Flatcar name; the legacy name
   * decides only in its absence.
   */
  readonly aliases: readonly string[];
  /** One line of Markdown for the documentation: what the parameter does. */
  readonly meaning: string;
  /** The default as documented, when the field's default value does not tell it (init=: /init). */
  readonly shownDefault?: string;
  /** A fresh reader for one parse. */
  reader(): ParamReader;
}

interface RowOptions {
  aliases?: readonly string[];
  shownDefault?: string;
}

function single<T>(
  field: FieldOf<T>,
  expected: string,
  parse: ValueParser<T>,
  meaning: string,
  options: RowOptions & {
    /** Told which name set the field (only when its value was valid). */
    decided?: (params: BootParams, name: string) => void;
  } = {},
): ParamRow {
  const aliases = options.aliases ?? [];
  return {
    kind: "single",
    field,
    expected,
    aliases,
    meaning,
    shownDefault: options.shownDefault,
    reader() {
      // The last word under the main name and under an alias; value undefined when invalid.
      let main: { name: string; value: T | undefined } | undefined;
      let alias: typeof main;
      return {
        word(name, value, errors) {
          const read = { name, value: attempt(errors, () => parse(name, value, expected)) };
          if (aliases.includes(name)) alias = read;
          else main = read;
        },
        end(params) {
          const decided = main ?? alias;
          if (decided?.value === undefined) return;
          store(params, field, decided.value);
          options.decided?.(params, decided.name);
        },
      };
    },
  };
}

function flag(field: FieldOf<boolean>, meaning: string): ParamRow {
  return { ...single(field, FLAG_EXPECTED, parseFlag, meaning), kind: "flag" };
}

function seconds(field: FieldOf<number>, meaning: string): ParamRow {
  return single(field, SECONDS_EXPECTED, parseSeconds, meaning);
}

function list<T extends string>(
  field: FieldOf<T[]>,
  items: ListItems<T>,
  meaning: string,
  options: RowOptions & {
    /** What a bare word adds; without it a bare word is an error. */
    bare?: T;
    /** Whether a value naming nothing ("rd.break=", "rd.break=,") is an error rather than nothing. */
    emptyIsError?: boolean;
  } = {},
): ParamRow {
  const { expected } = items;
  return {
    kind: "list",
    field,
    expected,
    aliases: options.aliases ?? [],
    meaning,
    shownDefault: options.shownDefault,
    reader() {
      const found = new Set<T>();
      return {
        word(name, value, errors) {
          if (value === null) {
            if (options.bare === undefined) errors.push(new ParamError(name, null, expected));
            else found.add(options.bare);
            return;
          }
          let any = false;
          for (const item of value.split(",")) {
            if (item === "") continue; // trailing commas
            any = true;
            if (items.is(item)) found.add(item);
            else errors.push(new ParamError(name, item, expected));
          }
          if (!any && options.emptyIsError) errors.push(new ParamError(name, value, expected));
        },
        end(params) {
          store(params, field, [...found]);
        },
      };
    },
  };
}

/** Values kept raw for a later stage (ip=, nameserver=, console=): one per word. */
function each(field: FieldOf<string[]>, expected: string, meaning: string, options: RowOptions = {}): ParamRow {
  return {
    kind: "each",
    field,
    expected,
    aliases: [],
    meaning,
    shownDefault: options.shownDefault,
    reader() {
      const values: string[] = [];
      return {
        word(name, value, errors) {
          const v = attempt(errors, () => requireText(name, value, expected));
          if (v !== undefined) values.push(v);
        },
        end(params) {
          store(params, field, values);
        },
      };
    },
  };
}

/**
 * Every parameter the init reads, by name, in the order the documentation
 * lists them. Names match exactly: unknown keys belong to the kernel or to
 * stage 2. README.md's parameter table is renderParamTable()'s output, and
 * docs/command-line.md describes each parameter in full (a test checks both).
 */
export const PARAMS = Object.freeze({
  "verity.usr": single<DeviceRef | NetworkUsr>(
    "verityUsr",
    `${DEVICE_EXPECTED}, or nbd://HOST[:PORT]/EXPORT or nfs://HOST[:PORT]/PATH/FILE`,
    (param, value, expected) => {
      const v = requireValue(param, value, expected);
      return isNetworkUsrUrl(v) ? parseNetworkUsr(param, v) : parseDeviceRef(param, v);
    },
    "partition with /usr and its hash tree: `PARTUUID=`, `PARTLABEL=`, `UUID=`, `LABEL=`, a `/dev/...` path (also `/dev/disk/by-*/…`); diskless: `nbd://HOST[:PORT]/EXPORT` or `nfs://HOST[:PORT]/PATH/FILE`, read block by block",
  ),
  "verity.usrhash": single("verityUsrHash", "64 hex digits (the sha256 dm-verity root hash)", parseRootHash, "dm-verity root hash, 64 hex"),
  "mount.usr": single<DeviceRef | NfsExport>(
    "mountUsr",
    `${DEVICE_EXPECTED}, or an NFS export HOST:/EXPORT or nfs4:HOST:/EXPORT`,
    (param, value, expected) => {
      const v = requireValue(param, value, expected);
      if (isNetworkUsrUrl(v)) throw new ParamError(param, v, MOUNT_USR_NETWORK_EXPECTED);
      return isNfsExportRef(v) ? parseNfsExport(param, v) : parseDeviceRef(param, v);
    },
    "device to mount as /usr; with verity it is `/dev/mapper/usr`; `HOST:/EXPORT` (with `mount.usrfstype=nfs4`) or `nfs4:HOST:/EXPORT` for an unverified NFS /usr (needs `rd.usr.insecure=1`)",
    { aliases: ["usr"] },
  ),
  "mount.usrfstype": single("mountUsrFsType", "a filesystem type such as auto, ext4, btrfs or squashfs", matching(FSTYPE_RE), "filesystem type", {
    aliases: ["usrfstype"],
  }),
  "mount.usrflags": single("mountUsrFlags", "mount options such as ro", requireValue, "mount options (checked when /usr is mounted)", {
    aliases: ["usrflags"],
    // An error found at mount time names the parameter the user wrote.
    decided: (params, name) => {
      if (name === "usrflags") params.mountUsrFlagsParam = name;
    },
  }),
  "rd.earlytimeout": seconds("earlyTimeoutSec", "seconds to wait for a device (0: forever)"),
  "rd.earlyshell": flag("earlyShell", `shell at each breakpoint: ${BREAKPOINTS.map((b) => `\`${b}\``).join(", ")}`),
  "rd.break": list("breakpoints", BREAKPOINT_NAMES, `shell at the breakpoints named (comma lists; bare \`rd.break\`: \`${DEFAULT_BREAKPOINT}\`)`, {
    bare: DEFAULT_BREAKPOINT,
    // "rd.break=" names nothing; unlike bare rd.break it is most likely a mistake.
    emptyIsError: true,
  }),
  "rd.earlytrace": flag("earlyTrace", "log every step, command (argv, exit status) and uevent on the console"),
  "rd.debug": flag("debug", "the same as `rd.earlytrace`"),
  "rd.emergency": single("emergency", "prompt, shell, reboot, poweroff or halt", parseEmergency, "`prompt`, `shell`, `reboot`, `poweroff`, `halt` on failure"),
  "rd.emergency.timeout": seconds("emergencyTimeoutSec", "seconds the prompt waits before rebooting; `0` waits for good"),
  "rd.shell": flag(
    "shellAllowed",
    "shells allowed; `rd.shell=0` never offers one: not on failure, not at a breakpoint (`rd.break`, `rd.earlyshell`), not from the shim",
  ),
  "rd.driver.pre": list("driverPre", MODULE_NAMES, "modules to load first (repeatable, comma lists)"),
  "rd.driver.blacklist": list("driverBlacklist", MODULE_NAMES, "modules never to load", { aliases: ["modprobe.blacklist"] }),
  "init": single("init", "an absolute path such as /init", matching(/^\//), "the full initrd's init", { shownDefault: "`/init`" }),
  "rd.usr.url": single(
    "usrUrl",
    "an http://, https://, sftp://user@host[:port]/path, tftp://host[:port]/path or file:///path URL",
    parseUsrUrl,
    "diskless: fetch the /usr image (`http://`, `https://`, `sftp://user@host[:port]/path`, `tftp://host[:port]/path`, `file://`); a squashfs, or a cpio holding `usr.squashfs`",
  ),
  "rd.usr.hash": single(
    "usrHash",
    "sha256:<64 hex digits> (the digest of the whole image)",
    parseUsrHash,
    "`sha256:` and 64 hex: the whole-image hash of the image as served (optional when the initrd has a stream-hash list)",
  ),
  "rd.usr.insecure": flag("usrInsecure", "boot an unverified image (otherwise refused)"),
  "ip": each(
    "ip",
    "dhcp, <interface>:dhcp or <client>:<peer>:<gateway>:<netmask>:<hostname>:<interface>:none",
    "`dhcp`, `<if>:dhcp`, or `<client>:<peer>:<gw>:<netmask>:<hostname>:<if>:none[:<dns1>[:<dns2>]]` (IPv6 in brackets); checked when the network comes up",
    { shownDefault: "DHCP on the first NIC with carrier" },
  ),
  "BOOTIF": single(
    "bootif",
    "01-aa-bb-cc-dd-ee-ff (01 = Ethernet, then the MAC address, as pxelinux IPAPPEND 2 writes it)",
    parseBootif,
    "`01-aa-bb-cc-dd-ee-ff`: use the NIC with that MAC",
  ),
  "nameserver": each("nameservers", "a name server address", "DNS server (repeatable)"),
  "proxy": single("proxy", "a proxy URL such as http://proxy.example:3128", requireText, "HTTP(S) proxy for the fetch"),
  "rd.neednet": flag("neednet", "bring the network up even without `rd.usr.url=`"),
  "console": each("console", "a console such as tty0 or ttyS0,115200n8", "accepted for the kernel, which handles the console; not used by the init"),
} satisfies Record<string, ParamRow>);

/** Each name, aliases too, to its row. A Map, so that a key such as "__proto__" finds nothing. */
const ROWS_BY_NAME: ReadonlyMap<string, ParamRow> = new Map(
  Object.entries(PARAMS).flatMap(([name, row]) => [name, ...row.aliases].map((n) => [n, row] as const)),
);

/**
 * Turns command-line words into boot parameters. Never throws: every invalid
 * value becomes a ParamError and the field keeps its default, so that the
 * caller can report all mistakes at once, in command-line order. Keys are
 * matched exactly (PARAMS); unknown keys are ignored. Words after a bare
 * "--" are init's arguments, not parameters (as for the kernel), and are
 * ignored as well.
 */
export function parseBootParams(words: readonly CmdlineWord[]): { params: BootParams; errors: ParamError[] } {
  const params = defaultBootParams();
  const errors: ParamError[] = [];
  const readers = new Map<ParamRow, ParamReader>();
  for (const { key, value } of words) {
    if (key === "--" && value === null) break;
    const row = ROWS_BY_NAME.get(key);
    if (row === undefined) continue;
    let reader = readers.get(row);
    if (reader === undefined) readers.set(row, (reader = row.reader()));
    reader.word(key, value, errors);
  }
  for (const reader of readers.values()) reader.end(params);
  return { params, errors };
}

// ---------------------------------------------------------------------------
// Documentation
// ---------------------------------------------------------------------------

/** How the documentation writes a name: a flag bare, anything else with its '='. */
function spell(name: string, row: ParamRow): string {
  return row.kind === "flag" ? `\`${name}\`` : `\`${name}=\``;
}

/** One parameter as the documentation shows it (Markdown). */
export interface ParamDoc {
  /** The names as written on the command line, aliases included: "`mount.usr=` (`usr=`)". */
  names: string;
  meaning: string;
  default: string;
}

/**
 * PARAMS for documentation: the README's table, a man page. The aliases of
 * one value are in parentheses (they count only when the main name is
 * absent); those of a list follow a comma (they add to it). The default is
 * the row's own text, else the field's default value (flags as on/off,
 * nothing as "none").
 */
export function paramDocs(): ParamDoc[] {
  const defaults = defaultBootParams();
  return Object.entries(PARAMS).map(([name, row]): ParamDoc => {
    const main = spell(name, row);
    const aliases = row.aliases.map((a) => spell(a, row)).join(", ");
    const value = defaults[row.field];
    return {
      names: aliases === "" ? main : row.kind === "list" ? `${main}, ${aliases}` : `${main} (${aliases})`,
      meaning: row.meaning,
      default:
        row.shownDefault ??
        (typeof value === "boolean" ? (value ? "on" : "off") : typeof value === "number" ? String(value) : typeof value === "string" ? `\`${value}\`` : "none"),
    };
  });
}

/** The parameter table of README.md, in Markdown, ending with a newline. */
export function renderParamTable(): string {
  const cell = (text: string) => text.replaceAll("|", "\\|");
  const lines = ["| parameter | meaning | default |", "|---|---|---|"];
  for (const doc of paramDocs()) lines.push(`| ${cell(doc.names)} | ${cell(doc.meaning)} | ${cell(doc.default)} |`);
  return `${lines.join("\n")}\n`;
}
