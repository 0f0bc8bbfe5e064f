// The initrd's file tree while it is assembled: entries by path, each
// tagged with the component it belongs to (for the size breakdown), plus
// ELF dependency resolution for the binaries added from the host.
import fs from "node:fs";
import path from "node:path";
import type { CpioEntry } from "./cpio.ts";
import { ElfError, isElf, resolveClosure, type ElfHost } from "./elf.ts";

export class BuildError extends Error {}

export function hostFs(sysroot: string): ElfHost {
  const inRoot = (p: string) => (sysroot === "/" ? p : path.join(sysroot, p));
  return {
    readFile(p) {
      try {
        return new Uint8Array(fs.readFileSync(inRoot(p)));
      } catch {
        return null;
      }
    },
    realpath(p) {
      // Resolve links inside the sysroot, so an absolute link of a foreign
      // root does not point back into the build host.
      let cur = p;
      for (let hops = 0; hops < 40; hops++) {
        const parts = cur.split("/").filter(Boolean);
        let resolved = "/";
        let changed = false;
        for (let i = 0; i < parts.length; i++) {
          const next = path.posix.join(resolved, parts[i]!);
          let st: fs.Stats;
          try {
            st = fs.lstatSync(inRoot(next));
          } catch {
            return null;
          }
          if (st.isSymbolicLink()) {
            const t = fs.readlinkSync(inRoot(next));
            cur = path.posix.join(t.startsWith("/") ? t : path.posix.join(resolved, t), ...parts.slice(i + 1));
            changed = true;
            break;
          }
          resolved = next;
        }
        if (!changed) return resolved;
      }
      return null;
    },
  };
}

export class InitrdTree {
  readonly entries = new Map<string, CpioEntry & { component: string }>();
  private elfBinaries: string[] = [];

  constructor(
    readonly sysroot: string,
    readonly host: ElfHost = hostFs(sysroot),
    /** The target's loader directories and e_machine (lib/initrd/arch.ts); default: any architecture, both multiarch dirs. */
    readonly target: { searchDirs?: string[]; machine?: number } = {},
  ) {}

  dir(p: string, mode = 0o755): void {
    if (!this.entries.has(p)) this.entries.set(p, { kind: "dir", path: p, mode, component: "skeleton" });
  }

  file(p: string, data: Uint8Array, mode: number, component: string): void {
    this.entries.set(p, { kind: "file", path: p, mode, data, component });
  }

  symlink(p: string, target: string, component = "skeleton"): void {
    this.entries.set(p, { kind: "symlink", path: p, target, component });
  }

  node(p: string, kind: "chardev" | "blockdev", mode: number, major: number, minor: number): void {
    this.entries.set(p, { kind, path: p, mode, major, minor, component: "skeleton" });
  }

  /** Adds a host program (path in the sysroot) at `initrdPath`; its libraries come with addLibraries(). */
  hostBinary(hostPath: string, initrdPath: string, component: string): void {
    const real = this.host.realpath(hostPath);
    const data = real ? this.host.readFile(real) : null;
    if (!real || !data) throw new BuildError(`${hostPath} not found${this.sysroot !== "/" ? ` in ${this.sysroot}` : ""}: install it or pass its path`);
    this.file(initrdPath, data, 0o755, component);
    if (isElf(data)) this.elfBinaries.push(real);
  }

  /**
   * Adds a program built on this machine (not taken from the sysroot), such
   * as the compiled init; its libraries still come from the sysroot.
   */
  builtBinary(localPath: string, initrdPath: string, component: string): void {
    const data = new Uint8Array(fs.readFileSync(localPath));
    this.file(initrdPath, data, 0o755, component);
    this.localElf.set(localPath, data);
    this.elfBinaries.push(localPath);
  }
  private localElf = new Map<string, Uint8Array>();

  /** The shared libraries and loader every added binary needs (DT_NEEDED closure). */
  addLibraries(): void {
    const local = this.localElf;
    const host = this.host;
    const view: ElfHost = {
      readFile: (p) => local.get(p) ?? host.readFile(p),
      realpath: (p) => (local.has(p) ? p : host.realpath(p)),
    };
    let closure: ReturnType<typeof resolveClosure>;
    try {
      closure = resolveClosure(this.elfBinaries, view, { searchDirs: this.target.searchDirs, machine: this.target.machine });
    } catch (e) {
      if (e instanceof ElfError) throw new BuildError(`${e.message}${this.sysroot !== "/" ? ` (sysroot ${this.sysroot})` : ""}`);
      throw e;
    }
    const { libs, interpreters } = closure;
    for (const lib of libs) {
      const data = this.host.readFile(lib.hostPath);
      if (!data) throw new BuildError(`cannot read ${lib.hostPath}`);
      this.file(lib.initrdPath, data, 0o755, "libraries");
    }
    for (const interp of interpreters) {
      const real = this.host.realpath(interp);
      const data = real ? this.host.readFile(real) : null;
      if (!data) throw new BuildError(`ELF interpreter ${interp} not found`);
      this.file(interp, data, 0o755, "libraries");
    }
  }

  /** Sizes per component (uncompressed bytes of file contents). */
  breakdown(): Map<string, number> {
    const sizes = new Map<string, number>();
    for (const e of this.entries.values()) {
      const n = e.kind === "file" ? e.data.length : 0;
      sizes.set(e.component, (sizes.get(e.component) ?? 0) + n);
    }
    return sizes;
  }

  list(): CpioEntry[] {
    return [...this.entries.values()];
  }
}
