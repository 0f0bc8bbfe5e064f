// Reading files that may be missing: sysfs and procfs attributes, optional
// files in the initrd. One reader, so every caller treats "absent" the same.
import fs from "node:fs";

/** The file's text, or null when it cannot be read (missing, no permission, a directory). */
export function readOptional(path: string): string | null {
  try {
    return fs.readFileSync(path, "utf8");
  } catch {
    return null;
  }
}

/** A sysfs/procfs attribute without its trailing newline, or null when it cannot be read. */
export function readSysValue(path: string): string | null {
  return readOptional(path)?.trim() ?? null;
}

/** The driver bound to a sysfs device directory ("e1000", "mptsas"), or null when none is. */
export function boundDriver(deviceDir: string): string | null {
  try {
    const target = fs.readlinkSync(`${deviceDir}/driver`);
    return target.slice(target.lastIndexOf("/") + 1);
  } catch {
    return null;
  }
}
