// /proc/self/mountinfo, parsed in one place. The kernel escapes blanks, tabs,
// newlines and backslashes in paths and sources as three-digit octal (\040,
// \011, \012, \134); every caller gets them decoded. parseMountinfo is pure;
// readMountinfo reads the running system's table.
import fs from "node:fs";

export interface MountEntry {
  /** Mount ID. */
  id: number;
  /** Mount ID of the parent mount. */
  parent: number;
  /** "major:minor" of the filesystem's device. */
  majorMinor: string;
  /** The directory inside the filesystem that forms the root of this mount. */
  root: string;
  /** Where it is mounted, relative to the process's root. */
  mountPoint: string;
  /** Per-mount options (ro/rw, nosuid, ...). */
  options: string[];
  /** Optional fields (shared:N, master:N, ...). */
  optional: string[];
  fsType: string;
  /** The mount source ("/dev/sda1", "tmpfs", "none"). */
  source: string;
  /** Per-superblock options. */
  superOptions: string[];
}

/** Decodes the kernel's octal escapes (\040 and the like); other backslashes stay as they are. */
export function unescapeMountinfo(s: string): string {
  return s.replace(/\\([0-3][0-7]{2})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

function options(s: string): string[] {
  return s === "" ? [] : s.split(",");
}

/**
 * Parses the text of /proc/self/mountinfo. Lines that do not have the shape
 * "id parent maj:min root mountpoint options [optional...] - fstype source superoptions"
 * are skipped rather than guessed at.
 */
export function parseMountinfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split("\n")) {
    const f = line.split(" ");
    const sep = f.indexOf("-", 6);
    if (sep < 0 || f.length < sep + 4) continue;
    if (!/^\d+$/.test(f[0]!) || !/^\d+$/.test(f[1]!) || !/^\d+:\d+$/.test(f[2]!)) continue;
    out.push({
      id: Number(f[0]),
      parent: Number(f[1]),
      majorMinor: f[2]!,
      root: unescapeMountinfo(f[3]!),
      mountPoint: unescapeMountinfo(f[4]!),
      options: options(f[5]!),
      optional: f.slice(6, sep),
      fsType: unescapeMountinfo(f[sep + 1]!),
      source: unescapeMountinfo(f[sep + 2]!),
      superOptions: options(f[sep + 3]!),
    });
  }
  return out;
}

/** The running system's mount table; empty when /proc/self/mountinfo cannot be read (no /proc). */
export function readMountinfo(): MountEntry[] {
  let text: string;
  try {
    text = fs.readFileSync("/proc/self/mountinfo", "utf8");
  } catch {
    return [];
  }
  return parseMountinfo(text);
}
