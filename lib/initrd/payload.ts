// The payload layout: what the init needs only once it runs (the Bun
// executable, libraries, tools, kernel modules, firmware) goes into one
// read-only squashfs image, stored in an uncompressed cpio segment after a
// small compressed one. The kernel then only copies the image into the
// initramfs instead of decompressing ~170 MiB it mostly never reads; pages
// are decompressed on demand when the init touches them.
//
// The small archive keeps the shim, busybox, the skeleton and the modules
// the shim needs to mount the image (loop, squashfs where they are modules).
// Paths seen by the init, kmod and the shell stay the same: a directory
// that holds payload files only becomes one symlink into the mounted image
// (/lib -> /.payload/lib), a payload file in a directory the small archive
// also uses becomes a symlink of its own (/bin/bunboot-init).
// Pure: entries in, entries out; the builder does the I/O.
import path from "node:path";
import type { CpioEntry } from "./cpio.ts";
import { BUSYBOX } from "../paths.ts";

/** Where the shim mounts the image, and where the image file lies in the initramfs. */
export const PAYLOAD_MOUNT = "/.payload";
export const PAYLOAD_IMAGE = "/.payload.img";
/** Copies of the modules the shim loads before it can mount the image. */
export const BOOT_MODULES_DIR = "/.boot-modules";

export type TreeEntry = CpioEntry & { component: string };

/** Components whose files are only needed once the Bun init runs. */
const PAYLOAD_COMPONENTS = new Set(["bun init", "libraries", "tools", "modules", "firmware"]);

export interface PayloadSplit {
  /** The small, compressed archive: skeleton, shim, busybox, boot modules, links into the payload. */
  outer: TreeEntry[];
  /** The files of the image, at their initrd paths. */
  payload: TreeEntry[];
  /** The boot modules' paths in the small archive, in load order. */
  bootModules: string[];
}

function ancestors(p: string): string[] {
  const out: string[] = [];
  for (let d = path.posix.dirname(p); d !== "/"; d = path.posix.dirname(d)) out.unshift(d);
  return out;
}

/**
 * Splits the assembled tree. `bootModules` are initrd paths of .ko files
 * (dependencies first) that the shim must load to mount a squashfs over a
 * loop device; they stay in the image too, for kmod.
 */
export function splitPayload(entries: TreeEntry[], bootModules: string[]): PayloadSplit {
  const isPayloadFile = (e: TreeEntry) => e.kind === "file" && PAYLOAD_COMPONENTS.has(e.component) && e.path !== BUSYBOX;
  const payload = entries.filter(isPayloadFile);
  const payloadPaths = new Set(payload.map((e) => e.path));
  // Directories holding anything that must stay in the small archive.
  const pinned = new Set<string>();
  for (const e of entries) {
    if (payloadPaths.has(e.path) || e.kind === "dir") continue;
    for (const a of ancestors(e.path)) pinned.add(a);
  }
  // Each payload file is reached through its highest directory that holds
  // nothing else, or through a link of its own.
  const links = new Map<string, string>();
  for (const e of payload) {
    const top = ancestors(e.path).find((a) => !pinned.has(a));
    const linkPath = top ?? e.path;
    links.set(linkPath, PAYLOAD_MOUNT + linkPath);
  }
  const linkedDirs = [...links.keys()].filter((l) => !payloadPaths.has(l));
  const underLinkedDir = (p: string) => linkedDirs.some((d) => p === d || p.startsWith(d + "/"));

  const outer: TreeEntry[] = [];
  for (const e of entries) {
    if (payloadPaths.has(e.path)) continue;
    // Directories and links inside a linked directory live in the image.
    if (underLinkedDir(e.path)) {
      if (e.kind === "symlink" || e.kind === "dir") payload.push(e);
      continue;
    }
    outer.push(e);
  }
  for (const [linkPath, target] of links) outer.push({ kind: "symlink", path: linkPath, target, component: "skeleton" });
  outer.push({ kind: "dir", path: PAYLOAD_MOUNT, mode: 0o755, component: "skeleton" });

  const byPath = new Map(entries.map((e) => [e.path, e]));
  const shimModules: string[] = [];
  if (bootModules.length > 0) outer.push({ kind: "dir", path: BOOT_MODULES_DIR, mode: 0o755, component: "skeleton" });
  for (const m of bootModules) {
    const e = byPath.get(m);
    if (!e || e.kind !== "file") throw new Error(`internal: boot module ${m} is not in the tree`);
    const copy = `${BOOT_MODULES_DIR}/${path.posix.basename(m)}`;
    outer.push({ kind: "file", path: copy, mode: 0o644, data: e.data, component: "boot modules" });
    shimModules.push(copy);
  }
  return { outer, payload, bootModules: shimModules };
}

/**
 * The dependency closure of `names` (module names as in modules.dep, e.g.
 * "loop") in load order, as paths relative to /lib/modules/<kver>; names the
 * kernel has built in (not in modules.dep) need nothing.
 */
export function bootModuleOrder(modulesDep: string, names: string[]): string[] {
  const deps = new Map<string, string[]>();
  for (const line of modulesDep.split("\n")) {
    const colon = line.indexOf(":");
    if (colon < 0) continue;
    deps.set(line.slice(0, colon), line.slice(colon + 1).trim().split(/\s+/).filter(Boolean));
  }
  const byName = new Map([...deps.keys()].map((p) => [path.posix.basename(p).replace(/\.ko(\.\w+)?$/, "").replace(/-/g, "_"), p]));
  const order: string[] = [];
  // Marked before its dependencies are visited, so a cycle ends.
  const seen = new Set<string>();
  const visit = (p: string) => {
    if (seen.has(p)) return;
    seen.add(p);
    for (const d of deps.get(p) ?? []) visit(d);
    order.push(p);
  };
  for (const n of names) {
    const p = byName.get(n.replace(/-/g, "_"));
    if (p) visit(p);
  }
  return order;
}
