// Facts the builder bakes into the initrd (/etc/bunboot/config.json), read
// once at boot. Kept small: everything a user can change at boot time comes
// from the command line instead.
import fs from "node:fs";
import { messageOf } from "./errors.ts";
import { BASE_MODULES } from "./kmod.ts";

import { CONFIG_PATH } from "./paths.ts";
/** Flatcar's hash offset: 260094 data blocks of 4096 bytes. */
export const FLATCAR_VERITY_HASH_OFFSET = 1065345024;

/** The PHC string form Bun.password.hash writes: $argon2id$v=19$m=..,t=..,p=..$salt$hash. */
export const ARGON2ID_HASH = /^\$argon2id\$v=19\$m=\d{1,7},t=\d{1,4},p=\d{1,3}\$[A-Za-z0-9+/]{11,128}\$[A-Za-z0-9+/]{16,128}$/;

export interface InitrdConfig {
  /** Byte offset of the verity superblock on the /usr partition. */
  verityHashOffset: number;
  /** Identifies the build in failure messages (sha256 prefix of the inputs). */
  buildId: string;
  kernelVersion: string;
  /** The builder's module profile (--profile): "disk" has no NIC drivers. Absent: built by hand or before profiles. */
  profile?: string;
  /** The architecture the initrd was built for (build.ts --arch): x64 or arm64. Absent: built before --arch (x64). */
  arch?: string;
  /**
   * The base modules (lib/kmod.ts BASE_MODULES) this initrd's kernel has, shipped or built in.
   * A kernel configured without one (no SCSI, so no sd_mod) leaves it out, and the init does
   * not ask modprobe for it. Absent (built before this field): all of them.
   */
  baseModules?: string[];
}

export function parseConfig(text: string, where = CONFIG_PATH): InitrdConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new Error(`${where}: not valid JSON (${messageOf(e)})`);
  }
  const o = (raw ?? {}) as Record<string, unknown>;
  const off = o.verityHashOffset ?? FLATCAR_VERITY_HASH_OFFSET;
  if (typeof off !== "number" || !Number.isSafeInteger(off) || off <= 0 || off % 512 !== 0) {
    throw new Error(`${where}: verityHashOffset must be a positive multiple of 512, got ${JSON.stringify(off)}`);
  }
  if (o.profile !== undefined && (typeof o.profile !== "string" || !/^[a-z0-9-]{1,32}$/.test(o.profile))) {
    throw new Error(`${where}: profile must be a profile name such as "netboot" or "disk", got ${JSON.stringify(o.profile).slice(0, 60)}`);
  }
  if (o.arch !== undefined && o.arch !== "x64" && o.arch !== "arm64") {
    throw new Error(`${where}: arch must be "x64" or "arm64", got ${JSON.stringify(o.arch).slice(0, 60)}`);
  }
  if (o.baseModules !== undefined && (!Array.isArray(o.baseModules) || !o.baseModules.every((m) => BASE_MODULES.includes(m)))) {
    throw new Error(`${where}: baseModules must be a list of base modules (${BASE_MODULES.join(", ")}), got ${JSON.stringify(o.baseModules).slice(0, 60)}`);
  }
  return {
    verityHashOffset: off,
    buildId: String(o.buildId ?? "unknown"),
    kernelVersion: String(o.kernelVersion ?? "unknown"),
    ...(o.profile ? { profile: o.profile } : {}),
    ...(o.arch ? { arch: o.arch } : {}),
    // An empty list (a kernel with all of them left out) is not an absent one (all of them).
    ...(o.baseModules !== undefined ? { baseModules: o.baseModules as string[] } : {}),
  };
}

export function readConfig(): InitrdConfig {
  let text = "{}";
  try {
    text = fs.readFileSync(CONFIG_PATH, "utf8");
  } catch {
    // an initrd built by hand without a config gets Flatcar's defaults
  }
  return parseConfig(text);
}
