// What a kexec reboot boots, decided the way Flatcar's GRUB decides it (kexec.md): the /usr slot
// from the GPT attributes, the kernel on the ESP, and the kernel command line. Pure: the caller
// reads the GPT, the kernel's first bytes and the OEM grub.cfg and passes them in.
import {
  FLATCAR_USR_TYPE_GUID,
  gptPriority,
  gptSuccessful,
  gptTries,
  withGptSlotAttributes,
  type GptEntry,
} from "../devices/gpt.ts";
import { messageOf } from "../errors.ts";

export class KexecPlanError extends Error {
  override name = "KexecPlanError";
}

/** USR-A's fixed PARTUUID (Flatcar disk layout); every other /usr slot boots vmlinuz-b. */
export const USR_A_PARTUUID = "7130c94a-213a-4e5a-8e26-6cce9662f132";
export const ESP_TYPE_GUID = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";

export interface SlotState {
  index: number;
  name: string;
  partUuid: string;
  priority: number;
  tries: number;
  successful: boolean;
}

export function slotState(e: GptEntry): SlotState {
  return {
    index: e.index,
    name: e.name,
    partUuid: e.partGuid,
    priority: gptPriority(e.attributes),
    tries: gptTries(e.attributes),
    successful: gptSuccessful(e.attributes),
  };
}

export function formatSlot(s: SlotState): string {
  return `${s.name || "(unnamed)"} (partition ${s.index}, PARTUUID ${s.partUuid}): priority=${s.priority} tries=${s.tries} successful=${s.successful ? 1 : 0}`;
}

export interface SlotChoice {
  entry: GptEntry;
  /** Set when the tries counter must go down by one (the slot has not booted successfully yet). */
  newAttributes: bigint | null;
}

/**
 * GRUB's gptprio.next: among entries of the Flatcar /usr type that have tries left or are marked
 * successful, the highest priority wins; priority 0 never boots; on a tie the first entry (lowest
 * partition number) wins. A chosen slot with tries > 0 loses one try.
 */
export function chooseSlot(entries: readonly GptEntry[]): SlotChoice {
  const usr = entries.filter((e) => e.typeGuid === FLATCAR_USR_TYPE_GUID).sort((a, b) => a.index - b.index);
  if (usr.length === 0) throw new KexecPlanError(`the GPT has no /usr partition (type ${FLATCAR_USR_TYPE_GUID})`);
  let best: GptEntry | null = null;
  for (const e of usr) {
    const eligible = gptTries(e.attributes) > 0 || gptSuccessful(e.attributes);
    if (eligible && gptPriority(e.attributes) > (best ? gptPriority(best.attributes) : 0)) best = e;
  }
  if (!best) {
    throw new KexecPlanError(
      `no bootable /usr slot: every slot has priority 0, or no tries left and is not marked successful (${usr.map((e) => formatSlot(slotState(e))).join("; ")})`,
    );
  }
  const tries = gptTries(best.attributes);
  return { entry: best, newAttributes: tries > 0 ? withGptSlotAttributes(best.attributes, { tries: tries - 1 }) : null };
}

/** The kernel GRUB loads for a slot, relative to the ESP root. */
export function kernelPathForSlot(partUuid: string): string {
  return partUuid.toLowerCase() === USR_A_PARTUUID ? "flatcar/vmlinuz-a" : "flatcar/vmlinuz-b";
}

/** Where Flatcar's build writes the /usr root hash into the kernel image. */
export const VERITY_HASH_OFFSET: Readonly<Record<string, number>> = { x64: 64, arm64: 512 };
export const VERITY_HASH_LENGTH = 64;

/** Bytes of the kernel image to read for verityHashFromKernel and kernelImageFormat. */
export function verityHashReadLength(arch: string): number {
  return Math.max(verityHashOffset(arch) + VERITY_HASH_LENGTH, KERNEL_FORMAT_BYTES);
}

/** What kernelImageFormat needs: x86's boot protocol header ends its magic at 0x206. */
export const KERNEL_FORMAT_BYTES = 0x206;

export type KernelFormat = "arm64-image" | "x86-bzimage" | "gzip" | "efi-zboot" | "unknown";

/**
 * The kernel image's format from its first bytes: arm64's raw Image has
 * "ARM\x64" at 0x38 (with or without the EFI stub's "MZ" in front), an x86
 * bzImage "HdrS" at 0x202, an EFI zboot image "zimg" at 4 behind "MZ", a
 * gzip file 1f 8b. Debian's arm64 vmlinuz is the raw Image; Flatcar's too.
 */
export function kernelImageFormat(head: Uint8Array): KernelFormat {
  const at = (off: number, s: string) => head.length >= off + s.length && [...s].every((c, i) => head[off + i] === c.charCodeAt(0));
  if (at(0x38, "ARM\x64")) return "arm64-image";
  if (at(0x202, "HdrS")) return "x86-bzimage";
  if (at(0, "MZ") && at(4, "zimg")) return "efi-zboot";
  if (head[0] === 0x1f && head[1] === 0x8b) return "gzip";
  return "unknown";
}

/**
 * Why kexec_file_load on `arch` would refuse this kernel image, or null when
 * it takes it. arm64 loads only the raw Image (a compressed vmlinuz.gz or an
 * EFI zboot image gets ENOEXEC); x64 only a bzImage.
 */
export function kernelFormatProblem(head: Uint8Array, arch: string): string | null {
  const f = kernelImageFormat(head);
  const want = arch === "arm64" ? "arm64-image" : arch === "x64" ? "x86-bzimage" : null;
  if (want === null) return `no kexec kernel format known for architecture ${arch}`;
  if (f === want) return null;
  const what = { "arm64-image": "an arm64 Image", "x86-bzimage": "an x86 bzImage", gzip: "gzip-compressed", "efi-zboot": "an EFI zboot (compressed) image", unknown: "not a kernel image format this tool knows" }[f];
  const hint = arch === "arm64" && (f === "gzip" || f === "efi-zboot") ? ": decompress it to the raw Image first" : "";
  return `the kernel image is ${what}, but this ${arch} machine's kexec loads ${arch === "arm64" ? "only a raw arm64 Image" : "only an x86 bzImage"}${hint}`;
}

export function verityHashOffset(arch: string): number {
  const off = VERITY_HASH_OFFSET[arch];
  if (off === undefined) throw new KexecPlanError(`no verity hash offset known for architecture ${arch} (known: ${Object.keys(VERITY_HASH_OFFSET).join(", ")})`);
  return off;
}

/**
 * The dm-verity root hash embedded in the kernel image, or null when the 64 bytes there are not
 * all hex digits (a kernel without an embedded hash: GRUB then appends nothing either).
 */
export function verityHashFromKernel(head: Uint8Array, arch: string): string | null {
  const off = verityHashOffset(arch);
  if (head.length < off + VERITY_HASH_LENGTH) return null;
  const text = String.fromCharCode(...head.subarray(off, off + VERITY_HASH_LENGTH));
  return /^[0-9a-fA-F]{64}$/.test(text) ? text : null;
}

// ---------------------------------------------------------------------------------------------
// The OEM partition's grub.cfg: GRUB sources it, and the variables it sets feed the command line.
// Only unconditional `set NAME=VALUE` commands are evaluated; a `set` inside if/function/menuentry
// blocks depends on GRUB state we cannot know here, so it is reported and skipped.

export interface GrubVars {
  [name: string]: string;
}

export interface GrubCfgResult {
  vars: GrubVars;
  warnings: string[];
}

const BLOCK_OPEN = new Set(["if", "for", "while", "until", "function", "menuentry", "submenu"]);
const BLOCK_CLOSE = new Set(["fi", "done", "}"]);
const BLOCK_CONTINUE = new Set(["then", "else", "do", "{"]);
const NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Splits one line into commands of words, expanding $var and ${var} as GRUB does. */
function grubWords(line: string, vars: GrubVars): string[][] | string {
  const commands: string[][] = [[]];
  let word: string | null = null;
  let i = 0;
  const push = (s: string) => {
    word = (word ?? "") + s;
  };
  const end = () => {
    if (word !== null) commands[commands.length - 1]!.push(word);
    word = null;
  };
  const expand = (): string => {
    // at line[i] === "$"
    let j = i + 1;
    let name = "";
    if (line[j] === "{") {
      const close = line.indexOf("}", j);
      if (close < 0) throw new Error("unterminated ${");
      name = line.slice(j + 1, close);
      j = close + 1;
    } else {
      const m = /^([A-Za-z_][A-Za-z0-9_]*|[0-9]+|[?#])/.exec(line.slice(j));
      if (!m) {
        i = j;
        return "$";
      }
      name = m[1]!;
      j += name.length;
    }
    i = j;
    return vars[name] ?? "";
  };
  try {
    while (i < line.length) {
      const ch = line[i]!;
      if (ch === "#" && word === null) break; // a comment starts only at a word start
      if (ch === " " || ch === "\t") {
        end();
        i++;
      } else if (ch === ";") {
        end();
        commands.push([]);
        i++;
      } else if (ch === "'") {
        const close = line.indexOf("'", i + 1);
        if (close < 0) return "unterminated single quote";
        push(line.slice(i + 1, close));
        i = close + 1;
      } else if (ch === '"') {
        push("");
        i++;
        for (;;) {
          if (i >= line.length) return "unterminated double quote";
          const c = line[i]!;
          if (c === '"') {
            i++;
            break;
          }
          if (c === "\\" && i + 1 < line.length && '$"\\'.includes(line[i + 1]!)) {
            push(line[i + 1]!);
            i += 2;
          } else if (c === "$") {
            push(expand());
          } else {
            push(c);
            i++;
          }
        }
      } else if (ch === "\\") {
        if (i + 1 < line.length) push(line[i + 1]!);
        i += 2;
      } else if (ch === "$") {
        push(expand());
      } else {
        push(ch);
        i++;
      }
    }
  } catch (e) {
    return messageOf(e);
  }
  end();
  return commands.filter((c) => c.length > 0);
}

/**
 * Evaluates the unconditional `set` commands of a grub.cfg in order, starting from `initial`
 * (GRUB's defaults at the point the OEM file is sourced). `file` names the file in warnings.
 */
export function parseGrubCfg(text: string, initial: GrubVars = {}, file = "grub.cfg"): GrubCfgResult {
  const vars: GrubVars = { ...initial };
  const warnings: string[] = [];
  let depth = 0;
  const lines = text.split("\n");
  for (let n = 0; n < lines.length; n++) {
    const where = `${file} line ${n + 1}`;
    const parsed = grubWords(lines[n]!, vars);
    if (typeof parsed === "string") {
      warnings.push(`${where}: ${parsed}; line ignored`);
      continue;
    }
    for (let words of parsed) {
      while (words.length > 0 && BLOCK_CONTINUE.has(words[0]!)) words = words.slice(1);
      if (words.length === 0) continue;
      const cmd = words[0]!;
      if (BLOCK_OPEN.has(cmd)) {
        depth++;
        continue;
      }
      if (BLOCK_CLOSE.has(cmd)) {
        depth = Math.max(0, depth - 1);
        continue;
      }
      if (cmd === "elif") continue;
      if (cmd !== "set") continue; // serial, terminal_*, insmod …: nothing to do with the command line
      if (depth > 0) {
        warnings.push(`${where}: "${words.join(" ")}" is inside a conditional or function block and is not evaluated`);
        continue;
      }
      for (const arg of words.slice(1)) {
        const eq = arg.indexOf("=");
        const name = eq < 0 ? arg : arg.slice(0, eq);
        if (!NAME_RE.test(name)) {
          warnings.push(`${where}: "set ${arg}" does not name a variable; ignored`);
          continue;
        }
        // GRUB's `set NAME` without a value sets it to the empty string.
        vars[name] = eq < 0 ? "" : arg.slice(eq + 1);
      }
    }
  }
  if (depth > 0) warnings.push(`${file}: a block is not closed at the end of the file`);
  return { vars, warnings };
}

// ---------------------------------------------------------------------------------------------
// The command line

export type Platform = "pc" | "efi";

/** GRUB's console when the OEM sets none (grub.cfg "If no specific console has been set"). */
export function defaultConsole(platform: Platform, arch: string): string {
  if (platform === "efi" && arch === "arm64") return "console=ttyAMA0,115200n8";
  return "console=ttyS0,115200n8 console=tty0";
}

/**
 * The limit applied to the command line including its NUL. x86's COMMAND_LINE_SIZE is 2048, and
 * GRUB puts "BOOT_IMAGE=/flatcar/vmlinuz-a " (31 bytes) in front of it; keeping within 2017 means
 * the same command line also boots through GRUB after a firmware reboot.
 */
export const CMDLINE_MAX_WITH_NUL = 2017;

export interface CmdlineInputs {
  usrPartUuid: string;
  /** OEM grub.cfg variables (oem_id, linux_append, linux_console, linux_root). */
  oem: GrubVars;
  firstBoot: boolean;
  verityHash: string | null;
  platform: Platform;
  arch: string;
}

/**
 * GRUB's order: mount.usr and verity.usr for the chosen slot, then linux_cmdline ("rootflags=rw
 * mount.usrflags=ro consoleblank=0 $linux_root $linux_console $first_boot $extra_options $oem
 * $linux_append"), then " verity.usrhash=" from the kernel image. GRUB expands the variables
 * unquoted, so empty ones vanish and runs of blanks become one space; so here.
 */
export function assembleCmdline(inp: CmdlineInputs): string {
  const v = (name: string): string => inp.oem[name] ?? "";
  const linuxRoot = inp.oem.linux_root !== undefined ? v("linux_root") : "root=LABEL=ROOT";
  const console = v("linux_console") !== "" ? v("linux_console") : defaultConsole(inp.platform, inp.arch);
  const parts = [
    "mount.usr=/dev/mapper/usr",
    `verity.usr=PARTUUID=${inp.usrPartUuid.toLowerCase()}`,
    "rootflags=rw mount.usrflags=ro consoleblank=0",
    linuxRoot,
    console,
    inp.firstBoot ? "flatcar.first_boot=detected" : "",
    inp.arch === "arm64" ? "acpi=force" : "",
    v("oem_id") !== "" ? `flatcar.oem.id=${v("oem_id")}` : "",
    v("linux_append"),
    inp.verityHash ? `verity.usrhash=${inp.verityHash}` : "",
  ];
  const cmdline = parts.join(" ").split(/\s+/).filter(Boolean).join(" ");
  const bytes = new TextEncoder().encode(cmdline).length + 1;
  if (bytes > CMDLINE_MAX_WITH_NUL) {
    throw new KexecPlanError(
      `the kernel command line is ${bytes} bytes with its NUL, over the limit of ${CMDLINE_MAX_WITH_NUL} (check linux_append in the OEM grub.cfg, ${v("linux_append").length} bytes)`,
    );
  }
  return cmdline;
}
