// The target architecture of an initrd: which Bun runtime compiles the init,
// where busybox, kmod, their libraries and the kernel modules come from, and
// how the ELF resolver recognises the right binaries. Building for the host's
// own architecture takes everything from the host (/); building for another
// one (arm64 on an amd64 machine) takes it from a sysroot of Debian packages
// unpacked by scripts/arm64-sysroot.sh, and the runtime from the npm package
// that script fetches. Pure except for the existence checks in resolveArch.
import fs from "node:fs";
import path from "node:path";
import { EM_AARCH64, EM_X86_64 } from "./elf.ts";
import { BuildError } from "./tree.ts";

export type Arch = "x64" | "arm64";
export const ARCHES: readonly Arch[] = ["x64", "arm64"];

export interface ArchSpec {
  arch: Arch;
  /** bun build --compile --target= */
  bunTarget: string;
  /** ELF e_machine of every binary in the initrd. */
  elfMachine: number;
  /** Debian's multiarch triplet: the library directories. */
  multiarch: string;
  /** uname -m in the guest. */
  unameMachine: string;
  /** The npm package with this architecture's Bun runtime (an optional dependency of bun). */
  runtimePackage: string;
  /** Runs a static program of this architecture on another host (Debian's qemu-user), for busybox --list-full. */
  qemuUser: string;
}

export const ARCH_SPECS: Readonly<Record<Arch, ArchSpec>> = {
  x64: {
    arch: "x64",
    bunTarget: "bun-linux-x64",
    elfMachine: EM_X86_64,
    multiarch: "x86_64-linux-gnu",
    unameMachine: "x86_64",
    runtimePackage: "@oven/bun-linux-x64",
    qemuUser: "/usr/bin/qemu-x86_64",
  },
  arm64: {
    arch: "arm64",
    bunTarget: "bun-linux-arm64",
    elfMachine: EM_AARCH64,
    multiarch: "aarch64-linux-gnu",
    unameMachine: "aarch64",
    runtimePackage: "@oven/bun-linux-aarch64",
    qemuUser: "/usr/bin/qemu-aarch64",
  },
};

export function parseArch(v: unknown, host: string): Arch {
  if (v === undefined) {
    if (!ARCHES.includes(host as Arch)) throw new BuildError(`the build host's architecture ${host} is not one bunboot builds for; pass --arch ${ARCHES.join(" or ")}`);
    return host as Arch;
  }
  if (typeof v !== "string" || !ARCHES.includes(v as Arch)) throw new BuildError(`--arch expects ${ARCHES.join(" or ")}, got ${JSON.stringify(v)}`);
  return v as Arch;
}

/** The loader's default directories for this architecture, as Debian lays them out. */
export function searchDirsFor(arch: Arch): string[] {
  const t = ARCH_SPECS[arch].multiarch;
  return [`/lib/${t}`, `/usr/lib/${t}`, "/lib64", "/usr/lib64", "/lib", "/usr/lib"];
}

export interface ArchInputs {
  spec: ArchSpec;
  /** Whether the target differs from the build host (then the sysroot and runtime below are used). */
  cross: boolean;
  sysroot: string;
  modulesRoot: string;
  firmwareRoot: string;
  /** The Bun executable of the target to compile with (--compile-executable-path); undefined: the running Bun's own. */
  runtime?: string;
  /** Where the initrd goes unless --out says otherwise. */
  out: string;
  /** Where the compiled init goes. */
  initBinary: string;
}

/** The script that prepares a cross build's inputs. */
export const SYSROOT_SCRIPT = "scripts/arm64-sysroot.sh";

/**
 * Default inputs for `arch` built on `host`, under the repository `repo`.
 * Same architecture: the host's own files. Another one: .cache/sysroot-<arch>
 * and .cache/bun-linux-<machine>/bun, which SYSROOT_SCRIPT prepares (for arm64).
 */
export function archInputs(arch: Arch, host: string, repo: string): ArchInputs {
  const spec = ARCH_SPECS[arch];
  const cross = arch !== host;
  const suffix = arch === "x64" ? "" : `-${arch}`;
  const out = path.join(repo, `dist/initrd${suffix}.img`);
  const initBinary = path.join(repo, `dist/bunboot-init${suffix}`);
  if (!cross) return { spec, cross, sysroot: "/", modulesRoot: "/lib/modules", firmwareRoot: "/lib/firmware", out, initBinary };
  const sysroot = path.join(repo, `.cache/sysroot-${arch}`);
  return {
    spec,
    cross,
    sysroot,
    modulesRoot: path.join(sysroot, "lib/modules"),
    firmwareRoot: path.join(sysroot, "lib/firmware"),
    runtime: path.join(repo, `.cache/bun-linux-${spec.unameMachine}/bun`),
    out,
    initBinary,
  };
}

/** Checks that a cross build's sysroot and runtime exist; the error names the script that makes them. */
export function checkCrossInputs(a: ArchInputs, opts: { needRuntime: boolean }): void {
  if (!a.cross) return;
  const how = a.spec.arch === "arm64" ? `run bash ${SYSROOT_SCRIPT} (scripts/deps.sh does)` : `no script prepares a ${a.spec.arch} sysroot on this host: pass --sysroot and --modules-root`;
  if (!fs.existsSync(a.sysroot)) throw new BuildError(`--arch ${a.spec.arch} on this ${process.arch} host needs the sysroot ${a.sysroot}, which is missing: ${how}`);
  if (opts.needRuntime && a.runtime && !fs.existsSync(a.runtime)) {
    throw new BuildError(`--arch ${a.spec.arch} on this ${process.arch} host needs the Bun runtime ${a.runtime} (npm package ${a.spec.runtimePackage}), which is missing: ${how}`);
  }
}
