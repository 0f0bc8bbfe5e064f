// Choosing the target architecture's inputs: pure, apart from the existence check.
import { describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { ARCH_SPECS, archInputs, checkCrossInputs, parseArch, searchDirsFor } from "./arch.ts";
import { EM_AARCH64, EM_X86_64 } from "./elf.ts";

describe("--arch", () => {
  test("defaults to the build host's architecture; names bad values", () => {
    expect(parseArch(undefined, "x64")).toBe("x64");
    expect(parseArch(undefined, "arm64")).toBe("arm64");
    expect(parseArch("arm64", "x64")).toBe("arm64");
    expect(() => parseArch("aarch64", "x64")).toThrow('--arch expects x64 or arm64, got "aarch64"');
    expect(() => parseArch(undefined, "ppc64")).toThrow("the build host's architecture ppc64 is not one bunboot builds for");
  });

  test("the same architecture takes everything from the host", () => {
    const a = archInputs("x64", "x64", "/repo");
    expect(a).toMatchObject({ cross: false, sysroot: "/", modulesRoot: "/lib/modules", firmwareRoot: "/lib/firmware", out: "/repo/dist/initrd.img", initBinary: "/repo/dist/bunboot-init" });
    expect(a.runtime).toBeUndefined();
    expect(a.spec.bunTarget).toBe("bun-linux-x64");
    expect(archInputs("arm64", "arm64", "/repo")).toMatchObject({ cross: false, sysroot: "/", out: "/repo/dist/initrd-arm64.img" });
  });

  test("arm64 on an x64 host: the sysroot, its modules and the npm runtime", () => {
    const a = archInputs("arm64", "x64", "/repo");
    expect(a).toMatchObject({
      cross: true,
      sysroot: "/repo/.cache/sysroot-arm64",
      modulesRoot: "/repo/.cache/sysroot-arm64/lib/modules",
      firmwareRoot: "/repo/.cache/sysroot-arm64/lib/firmware",
      runtime: "/repo/.cache/bun-linux-aarch64/bun",
      out: "/repo/dist/initrd-arm64.img",
      initBinary: "/repo/dist/bunboot-init-arm64",
    });
    expect(a.spec).toMatchObject({ bunTarget: "bun-linux-arm64", elfMachine: EM_AARCH64, runtimePackage: "@oven/bun-linux-aarch64" });
    expect(ARCH_SPECS.x64.elfMachine).toBe(EM_X86_64);
  });

  test("library search directories follow Debian's multiarch triplet", () => {
    expect(searchDirsFor("arm64").slice(0, 2)).toEqual(["/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu"]);
    expect(searchDirsFor("x64").slice(0, 2)).toEqual(["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu"]);
    expect(searchDirsFor("arm64").join(" ")).not.toContain("x86_64");
  });

  test("a missing sysroot or runtime is named with the script that prepares it", () => {
    const repo = fs.mkdtempSync(path.join(os.tmpdir(), "bunboot-arch-test-"));
    const a = archInputs("arm64", "x64", repo);
    expect(() => checkCrossInputs(a, { needRuntime: true })).toThrow(`needs the sysroot ${repo}/.cache/sysroot-arm64, which is missing: run bash scripts/arm64-sysroot.sh`);
    fs.mkdirSync(a.sysroot, { recursive: true });
    expect(() => checkCrossInputs(a, { needRuntime: true })).toThrow(`needs the Bun runtime ${repo}/.cache/bun-linux-aarch64/bun (npm package @oven/bun-linux-aarch64), which is missing`);
    // An init given with --init-binary needs no runtime.
    expect(() => checkCrossInputs(a, { needRuntime: false })).not.toThrow();
    expect(() => checkCrossInputs(archInputs("x64", "x64", repo), { needRuntime: true })).not.toThrow();
  });
});
