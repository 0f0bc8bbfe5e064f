// The builder's options: one table that the command line (`bunboot build`),
// the config file (TOML), `--help` and the man page are all made from, so
// none of them can name an option the others do not know. Pure: text in,
// validated options (or an error naming the option and where it was set) out.
//
// A config file holds the same names as the flags, without the dashes:
//
//   kernel-version = "6.1.0-57-amd64"
//   add-modules = ["nbd", "nfsv4"]
//   compress = "zstd"
//   [[extra-files]]
//   source = "/etc/bunboot/motd"
//   dest = "/etc/motd"
//
// Flags override the file, key by key.

import { FLATCAR_VERITY_HASH_OFFSET } from "../config.ts";
import { ARCHES } from "./arch.ts";
import { COMPRESSIONS, LAYOUTS } from "./initrd.ts";
import { PROFILES } from "./modules.ts";

export type OptionType = "string" | "int" | "list" | "bool" | "files";

export interface BuildOption {
  name: string;
  type: OptionType;
  /** Shown in --help and the man page after the flag: FILE, N, a|b. */
  arg?: string;
  help: string;
  /** Allowed values of a string option. */
  choices?: readonly string[];
  /** Only on the command line (the config file cannot say it). */
  flagOnly?: boolean;
}

export const BUILD_OPTIONS: readonly BuildOption[] = [
  { name: "config", type: "string", arg: "FILE", help: "TOML file of options (default /etc/bunboot/bunboot.toml when it exists; --no-config reads none)", flagOnly: true },
  { name: "arch", type: "string", arg: ARCHES.join("|"), choices: ARCHES, help: "the machine the initrd boots (default: this host's); another architecture takes busybox, kmod, libraries and modules from .cache/sysroot-ARCH (scripts/arm64-sysroot.sh)" },
  { name: "out", type: "string", arg: "FILE", help: "initrd to write (default dist/initrd.img below the current directory, dist/initrd-arm64.img for arm64, with the compiled init beside it as dist/bunboot-init; with --out the init is compiled in a scratch directory)" },
  { name: "compress", type: "string", arg: COMPRESSIONS.join("|"), choices: COMPRESSIONS, help: "compression (default zstd; none writes a cpio for CONFIG_INITRAMFS_SOURCE)" },
  { name: "compress-level", type: "int", arg: "N", help: "compressor level (default: zstd 19, xz 6, gzip 9)" },
  { name: "kernel-version", type: "string", arg: "VER", help: "kernel whose modules to ship (default: the newest in --modules-root)" },
  { name: "modules-root", type: "string", arg: "DIR", help: "default /lib/modules (in the sysroot for another architecture)" },
  { name: "firmware-root", type: "string", arg: "DIR", help: "default /lib/firmware (in the sysroot for another architecture)" },
  { name: "profile", type: "string", arg: Object.keys(PROFILES).join("|"), choices: Object.keys(PROFILES), help: "module set: netboot (default) has the disk controllers, the NIC drivers and NBD/NFS of diskless boots; disk leaves the network out" },
  { name: "add-modules", type: "list", arg: "a,b,...", help: "extra modules by name, .ko path or directory (trailing /) under kernel/" },
  { name: "omit-modules", type: "list", arg: "a,b,...", help: "modules to leave out: names or directory entries of the profile's list, and modules its directories would select, beside the built-in list of ones stage 1 cannot use" },
  { name: "verity-hash-offset", type: "int", arg: "N", help: `byte offset of the verity hash tree on /usr (default ${FLATCAR_VERITY_HASH_OFFSET}, Flatcar's)` },
  { name: "sysroot", type: "string", arg: "DIR", help: "take busybox, kmod and their libraries from DIR (default /, or .cache/sysroot-ARCH)" },
  { name: "busybox", type: "string", arg: "PATH", help: "static busybox (default /bin/busybox)" },
  { name: "init-binary", type: "string", arg: "FILE", help: "use an already compiled init instead of compiling init/main.ts" },
  { name: "target", type: "string", arg: "TARGET", help: "bun --compile target (default bun-linux-x64 or bun-linux-arm64 by --arch)" },
  { name: "usr-hashes", type: "string", arg: "FILE", help: "stream-hash list of the rd.usr.url= image (bunboot stream-hash IMAGE > FILE)" },
  { name: "sftp-key", type: "string", arg: "FILE", help: "SSH private key for sftp:// /usr images" },
  { name: "sftp-host-key", type: "string", arg: "SHA256:...", help: "pin the SFTP server's host key (ssh-keygen -lf)" },
  { name: "layout", type: "string", arg: LAYOUTS.join("|"), choices: LAYOUTS, help: "payload (default): the init, tools, libraries and modules in a squashfs the kernel only copies; flat: one archive the kernel unpacks whole" },
  { name: "payload-compress", type: "string", arg: COMPRESSIONS.join("|"), choices: COMPRESSIONS, help: "compression of the payload layout's squashfs image (default: --compress's); with --compress none for CONFIG_INITRAMFS_SOURCE, zstd keeps the image compressed inside the kernel" },
  { name: "payload-block-size", type: "int", arg: "N", help: "squashfs block size of the payload image (default 1048576)" },
  { name: "emergency-password-hash", type: "string", arg: "HASH", help: "argon2id hash (Bun.password.hash) asked before any shell is given" },
  { name: "microcode", type: "string", arg: "auto|DIR|none", help: "CPU microcode in an uncompressed early archive in front of the initrd, for the kernel's early loader (x86): auto (default) takes --firmware-root's intel-ucode/ and amd-ucode/ and skips with a note when there are none or the kernel has microcode built in; DIR is laid out the same way; none leaves it out" },
  { name: "extra-files", type: "files", arg: "SRC:DEST,...", help: "host files to add to the initrd (config file: [[extra-files]] tables with source and dest)" },
  { name: "reference-init", type: "string", arg: "FILE", help: "a shell script as /init instead of the Bun init (the benchmark's reference)", flagOnly: true },
  { name: "help", type: "bool", help: "print this help", flagOnly: true },
];

export interface ExtraFile {
  source: string;
  dest: string;
}

/** What was set, by option name; each value of its option's type. */
export type OptionValues = Partial<Record<string, string | number | string[] | boolean | ExtraFile[]>>;

export class OptionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "OptionError";
  }
}

const BY_NAME: ReadonlyMap<string, BuildOption> = new Map(BUILD_OPTIONS.map((o) => [o.name, o]));

function describeType(o: BuildOption): string {
  switch (o.type) {
    case "int":
      return "a non-negative integer";
    case "list":
      return "a list of strings";
    case "bool":
      return "true or false";
    case "files":
      return "a list of { source, dest } tables";
    default:
      return o.choices ? `one of ${o.choices.map((c) => `"${c}"`).join(", ")}` : "a string";
  }
}

/** An initrd path for an extra file: absolute, no empty, . or .. parts. */
function checkDest(dest: string, where: string): string {
  if (!dest.startsWith("/") || dest.split("/").slice(1).some((p) => p === "" || p === "." || p === "..") || /[\u0000-\u001f]/.test(dest)) {
    throw new OptionError(`${where}: dest ${JSON.stringify(dest)} must be an absolute path inside the initrd without empty, . or .. parts`);
  }
  return dest;
}

/** One value from the config file, checked against its option's type; `where` names the key and the file. */
function fromConfig(o: BuildOption, value: unknown, where: string): OptionValues[string] {
  const wrong = (): never => {
    throw new OptionError(`${where} must be ${describeType(o)}, not ${JSON.stringify(value) ?? String(value)}`);
  };
  switch (o.type) {
    case "string":
      if (typeof value !== "string" || value === "") return wrong();
      if (o.choices && !o.choices.includes(value)) return wrong();
      return value;
    case "int":
      if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) return wrong();
      return value;
    case "list":
      if (!Array.isArray(value) || !value.every((v) => typeof v === "string" && v !== "")) return wrong();
      return value as string[];
    case "bool":
      if (typeof value !== "boolean") return wrong();
      return value;
    case "files": {
      if (!Array.isArray(value)) return wrong();
      return value.map((f, i) => {
        const at = `${where}[${i}]`;
        if (typeof f !== "object" || f === null || Array.isArray(f)) throw new OptionError(`${at} must be a table with source and dest`);
        const keys = Object.keys(f);
        const extra = keys.find((k) => k !== "source" && k !== "dest");
        if (extra !== undefined) throw new OptionError(`${at}: unknown key "${extra}" (a file has source and dest)`);
        const { source, dest } = f as Record<string, unknown>;
        if (typeof source !== "string" || source === "") throw new OptionError(`${at}: source must be a non-empty string`);
        if (typeof dest !== "string") throw new OptionError(`${at}: dest must be a string`);
        return { source, dest: checkDest(dest, at) };
      });
    }
  }
}

/** The options a parsed TOML document sets; unknown keys and wrong types name the key and the file. */
export function optionsFromConfig(doc: unknown, file: string): OptionValues {
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) throw new OptionError(`${file}: expected a TOML document of options`);
  const out: OptionValues = {};
  for (const [key, value] of Object.entries(doc)) {
    const o = BY_NAME.get(key);
    if (!o) throw new OptionError(`${file}: unknown key "${key}" (the keys are the options of bunboot build --help, without the dashes)`);
    if (o.flagOnly) throw new OptionError(`${file}: "${key}" can only be given on the command line`);
    out[key] = fromConfig(o, value, `${file}: ${key}`);
  }
  return out;
}

/** Parses a TOML config file's text with Bun's parser; a syntax error names the file. */
export function parseConfigText(text: string, file: string): OptionValues {
  let doc: unknown;
  try {
    doc = Bun.TOML.parse(text);
  } catch (e) {
    throw new OptionError(`${file}: not valid TOML: ${(e as Error).message}`);
  }
  return optionsFromConfig(doc, file);
}

/**
 * The command line: --name value, --name=value, --no-config; every flag must
 * be one of BUILD_OPTIONS. Hand-written rather than yargs-parser, whose
 * dotted and camel-cased aliases would accept spellings the table does not
 * have.
 */
export function optionsFromArgv(argv: readonly string[]): OptionValues {
  const out: OptionValues = {};
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i]!;
    if (!word.startsWith("--")) throw new OptionError(`unexpected argument ${JSON.stringify(word)} (options start with --)`);
    const eq = word.indexOf("=");
    const name = word.slice(2, eq < 0 ? undefined : eq);
    if (name === "no-config" && eq < 0) {
      out.config = "";
      continue;
    }
    const o = BY_NAME.get(name);
    if (!o) throw new OptionError(`unknown option --${name}`);
    if (o.type === "bool") {
      if (eq >= 0) throw new OptionError(`--${name} takes no value`);
      out[name] = true;
      continue;
    }
    let value: string;
    if (eq >= 0) value = word.slice(eq + 1);
    else {
      if (i + 1 >= argv.length) throw new OptionError(`--${name} needs a value (${o.arg ?? describeType(o)})`);
      value = argv[++i]!;
    }
    const parsed = fromFlag(o, value);
    // A list given twice adds up (--add-modules a --add-modules b), as lists on the kernel command line do.
    const before = out[name];
    out[name] = Array.isArray(before) && Array.isArray(parsed) ? ([...before, ...parsed] as OptionValues[string]) : parsed;
  }
  return out;
}

/** "a, b or c". */
function alternatives(xs: readonly string[]): string {
  return xs.length < 2 ? xs.join("") : `${xs.slice(0, -1).join(", ")} or ${xs.at(-1)}`;
}

function fromFlag(o: BuildOption, value: string): OptionValues[string] {
  const wrong = (): never => {
    throw new OptionError(`--${o.name} expects ${o.choices ? alternatives(o.choices) : o.arg ?? describeType(o)}, got ${JSON.stringify(value)}`);
  };
  switch (o.type) {
    case "string":
      if (o.choices ? !o.choices.includes(value) : value === "") return wrong();
      return value;
    case "int":
      return /^(0|[1-9][0-9]{0,15})$/.test(value) && Number.isSafeInteger(Number(value)) ? Number(value) : wrong();
    case "list":
      return value.split(",").map((s) => s.trim()).filter(Boolean);
    case "files":
      return value.split(",").filter(Boolean).map((pair) => {
        const colon = pair.indexOf(":");
        if (colon <= 0) throw new OptionError(`--${o.name} expects SRC:DEST pairs, got ${JSON.stringify(pair)}`);
        return { source: pair.slice(0, colon), dest: checkDest(pair.slice(colon + 1), `--${o.name}`) };
      });
    default:
      return wrong();
  }
}

/** The file's options overridden by the flags', key by key. */
export function mergeOptions(file: OptionValues, flags: OptionValues): OptionValues {
  return { ...file, ...flags };
}

/** --help: the table, wrapped after the flag column. */
export function renderHelp(usage: string): string {
  const lines = [usage];
  for (const o of BUILD_OPTIONS) {
    const flag = `  --${o.name}${o.arg ? ` ${o.arg}` : ""}`;
    lines.push(flag.length < 29 ? `${flag.padEnd(29)}${o.help}` : `${flag}\n${" ".repeat(29)}${o.help}`);
  }
  return lines.join("\n") + "\n";
}
