// CPU microcode for the kernel's early loader: an uncompressed cpio at the
// very start of the initrd holding kernel/x86/microcode/GenuineIntel.bin and
// AuthenticAMD.bin. The kernel reads it before it unpacks anything, so the
// microcode is applied before most of the boot runs (as dracut's
// early_microcode and mkosi do). Each file is the concatenation of the
// vendor's blobs, from /lib/firmware/intel-ucode and amd-ucode (Debian's
// intel-microcode and amd64-microcode packages), or from a directory laid
// out the same way.
import fs from "node:fs";
import path from "node:path";
import type { CpioEntry } from "./cpio.ts";
import { BuildError } from "./tree.ts";

export const EARLY_MICROCODE_DIR = "kernel/x86/microcode";
/**
 * Which files of each vendor's directory are microcode: Intel's are named
 * family-model-stepping (06-8e-09), AMD's microcode_amd*.bin. Anything else
 * there (README, *.asc signatures, the .xz/.zst of other distributions)
 * would end the kernel's parse of the concatenation where it stands.
 */
export const VENDORS = [
  { file: "GenuineIntel.bin", dir: "intel-ucode", blob: /^[0-9a-f]{2}-[0-9a-f]{2}-[0-9a-f]{2}(\.initramfs)?$/ },
  { file: "AuthenticAMD.bin", dir: "amd-ucode", blob: /^microcode_amd.*\.bin$/ },
] as const;

/** --microcode: auto (the firmware directory, skipped when empty), a directory, or none. */
export type MicrocodeSource = { kind: "auto"; firmwareRoot: string } | { kind: "dir"; dir: string } | { kind: "none" };

export function parseMicrocodeOption(value: string | undefined, firmwareRoot: string): MicrocodeSource {
  if (value === undefined || value === "auto") return { kind: "auto", firmwareRoot };
  if (value === "none") return { kind: "none" };
  return { kind: "dir", dir: value };
}

/**
 * The early archive's entries for the blobs found, pure: the directories,
 * then one file per vendor with blobs, each the blobs in name order. Empty
 * when there are none.
 */
export function earlyMicrocodeEntries(blobs: ReadonlyArray<{ vendorFile: string; parts: Uint8Array[] }>): CpioEntry[] {
  const present = blobs.filter((b) => b.parts.length > 0);
  if (present.length === 0) return [];
  const entries: CpioEntry[] = ["kernel", "kernel/x86", EARLY_MICROCODE_DIR].map((p) => ({ kind: "dir", path: p, mode: 0o755 }));
  for (const b of present) {
    const size = b.parts.reduce((n, p) => n + p.length, 0);
    const data = new Uint8Array(size);
    let off = 0;
    for (const p of b.parts) {
      data.set(p, off);
      off += p.length;
    }
    entries.push({ kind: "file", path: `${EARLY_MICROCODE_DIR}/${b.vendorFile}`, mode: 0o644, data });
  }
  return entries;
}

/**
 * Whether the kernel carries a vendor's microcode itself (CONFIG_EXTRA_FIRMWARE
 * naming blobs under its directory, intel-ucode/ or amd-ucode/): then that
 * vendor's file adds nothing. Unknown (no config file): false.
 */
export function kernelHasBuiltinMicrocode(kernelConfig: string | null, vendorDir: string): boolean {
  const m = kernelConfig?.match(/^CONFIG_EXTRA_FIRMWARE="([^"]*)"/m);
  return m !== undefined && m !== null && m[1]!.split(/\s+/).some((f) => f.startsWith(`${vendorDir}/`));
}

/** The blobs of each vendor under `root` (root/intel-ucode/*, root/amd-ucode/*), in name order. */
export function readMicrocode(root: string, vendors: ReadonlyArray<(typeof VENDORS)[number]> = VENDORS): Array<{ vendorFile: string; parts: Uint8Array[]; names: string[]; skipped: string[] }> {
  return vendors.map((v) => {
    const dir = path.join(root, v.dir);
    let files: string[] = [];
    try {
      files = fs
        .readdirSync(dir, { withFileTypes: true })
        .filter((e) => e.isFile())
        .map((e) => e.name)
        .sort();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw new BuildError(`microcode: cannot read ${dir}: ${(e as Error).message}`);
    }
    const names = files.filter((n) => v.blob.test(n));
    return { vendorFile: v.file, names, skipped: files.filter((n) => !v.blob.test(n)), parts: names.map((n) => new Uint8Array(fs.readFileSync(path.join(dir, n)))) };
  });
}

/**
 * What --microcode gives for this build: the early archive's entries (maybe
 * none) and a note for the log saying what was done or why nothing was.
 */
export function microcodeFor(src: MicrocodeSource, opts: { arch: string; kernelConfig: string | null }): { entries: CpioEntry[]; note: string } {
  if (src.kind === "none") return { entries: [], note: "microcode: none (--microcode none)" };
  if (opts.arch !== "x64") {
    if (src.kind === "dir") throw new BuildError(`--microcode ${src.dir}: the early microcode archive is for x86 machines, and this initrd is for ${opts.arch}`);
    return { entries: [], note: `microcode: none (the kernel's early loader reads it on x86 only; this initrd is for ${opts.arch})` };
  }
  const builtIn = VENDORS.filter((v) => kernelHasBuiltinMicrocode(opts.kernelConfig, v.dir));
  const builtInNote = builtIn.length > 0 ? `; ${builtIn.map((v) => v.file).join(" and ")} left out, the kernel has it built in (CONFIG_EXTRA_FIRMWARE)` : "";
  const wanted = VENDORS.filter((v) => !builtIn.includes(v));
  if (wanted.length === 0) return { entries: [], note: `microcode: none${builtInNote}` };
  const root = src.kind === "dir" ? src.dir : src.firmwareRoot;
  if (src.kind === "dir" && !fs.existsSync(root)) throw new BuildError(`--microcode ${root}: no such directory (expected intel-ucode/ and/or amd-ucode/ in it)`);
  const found = readMicrocode(root, wanted);
  const skipped = found.flatMap((f) => f.skipped);
  const skippedNote = skipped.length > 0 ? `; not microcode, left out: ${skipped.join(", ")}` : "";
  const entries = earlyMicrocodeEntries(found);
  if (entries.length === 0) {
    if (src.kind === "dir") throw new BuildError(`--microcode ${root}: no blobs in ${wanted.map((v) => `${root}/${v.dir}`).join(" or ")}${skippedNote}`);
    return { entries, note: `microcode: none found in ${wanted.map((v) => `${root}/${v.dir}`).join(" or ")} (install intel-microcode or amd64-microcode to ship it)${builtInNote}${skippedNote}` };
  }
  const said = found.filter((f) => f.names.length > 0).map((f) => `${f.vendorFile} from ${f.names.length} blob(s)`);
  return { entries, note: `microcode: early archive with ${said.join(", ")}${builtInNote}${skippedNote}` };
}
