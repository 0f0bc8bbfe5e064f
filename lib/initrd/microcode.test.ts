import { describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { decodeNewc, encodeNewc } from "./cpio.ts";
import { earlyMicrocodeEntries, kernelHasBuiltinMicrocode, microcodeFor, parseMicrocodeOption } from "./microcode.ts";
import { BuildError } from "./tree.ts";

const concat = (parts: Uint8Array[]) => new Uint8Array(Buffer.concat(parts.map((p) => Buffer.from(p))));

describe("early microcode archive", () => {
  test("the layout the kernel's early loader reads: kernel/x86/microcode/<vendor>.bin, blobs concatenated in order, uncompressed", () => {
    const entries = earlyMicrocodeEntries([
      { vendorFile: "GenuineIntel.bin", parts: [new Uint8Array([1, 2]), new Uint8Array([3])] },
      { vendorFile: "AuthenticAMD.bin", parts: [new Uint8Array([9])] },
    ]);
    const archive = concat(encodeNewc(entries));
    expect(new TextDecoder().decode(archive.subarray(0, 6))).toBe("070701");
    expect(archive.length % 4).toBe(0);
    const back = decodeNewc(archive).entries;
    expect(back.map((e) => `${e.kind} ${e.path}`)).toEqual([
      "dir kernel",
      "dir kernel/x86",
      "dir kernel/x86/microcode",
      "file kernel/x86/microcode/AuthenticAMD.bin",
      "file kernel/x86/microcode/GenuineIntel.bin",
    ]);
    const data = (p: string) => [...((back.find((e) => e.path === p) as { data: Uint8Array }).data)];
    expect(data("kernel/x86/microcode/GenuineIntel.bin")).toEqual([1, 2, 3]);
    expect(data("kernel/x86/microcode/AuthenticAMD.bin")).toEqual([9]);
  });

  test("a vendor without blobs gets no file; no blobs at all, no archive", () => {
    expect(earlyMicrocodeEntries([{ vendorFile: "GenuineIntel.bin", parts: [] }, { vendorFile: "AuthenticAMD.bin", parts: [new Uint8Array([9])] }]).map((e) => e.path)).toEqual([
      "kernel",
      "kernel/x86",
      "kernel/x86/microcode",
      "kernel/x86/microcode/AuthenticAMD.bin",
    ]);
    expect(earlyMicrocodeEntries([{ vendorFile: "GenuineIntel.bin", parts: [] }])).toEqual([]);
  });

  test("a kernel with microcode built in (CONFIG_EXTRA_FIRMWARE) needs none", () => {
    expect(kernelHasBuiltinMicrocode('CONFIG_EXTRA_FIRMWARE="intel-ucode/06-8e-09 amd-ucode/microcode_amd_fam17h.bin"\n', "intel-ucode")).toBe(true);
    expect(kernelHasBuiltinMicrocode('CONFIG_EXTRA_FIRMWARE="intel-ucode/06-8e-09"\n', "amd-ucode")).toBe(false);
    expect(kernelHasBuiltinMicrocode('CONFIG_X=y\nCONFIG_EXTRA_FIRMWARE=""\n', "intel-ucode")).toBe(false);
    expect(kernelHasBuiltinMicrocode('CONFIG_EXTRA_FIRMWARE="regulatory.db"\n', "intel-ucode")).toBe(false);
    expect(kernelHasBuiltinMicrocode(null, "amd-ucode")).toBe(false);
  });

  test("--microcode: auto notes what it found or why nothing; DIR must hold blobs; other architectures get none", () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "bunboot-ucode-"));
    try {
      expect(microcodeFor(parseMicrocodeOption(undefined, root), { arch: "x64", kernelConfig: null })).toEqual({
        entries: [],
        note: `microcode: none found in ${root}/intel-ucode or ${root}/amd-ucode (install intel-microcode or amd64-microcode to ship it)`,
      });
      expect(() => microcodeFor(parseMicrocodeOption(root, "/lib/firmware"), { arch: "x64", kernelConfig: null })).toThrow(BuildError);
      fs.mkdirSync(path.join(root, "intel-ucode"));
      fs.writeFileSync(path.join(root, "intel-ucode/06-8e-09"), "b");
      fs.writeFileSync(path.join(root, "intel-ucode/06-8e-0a"), "c");
      const r = microcodeFor(parseMicrocodeOption(root, "/lib/firmware"), { arch: "x64", kernelConfig: null });
      expect(r.note).toBe("microcode: early archive with GenuineIntel.bin from 2 blob(s)");
      expect(r.entries.at(-1)).toMatchObject({ path: "kernel/x86/microcode/GenuineIntel.bin", data: new TextEncoder().encode("bc") });
      expect(microcodeFor(parseMicrocodeOption("auto", root), { arch: "x64", kernelConfig: 'CONFIG_EXTRA_FIRMWARE="intel-ucode/06-8e-09"' }).entries).toEqual([]);
      // What is not microcode stays out of the concatenation, and is named.
      fs.mkdirSync(path.join(root, "amd-ucode"));
      for (const f of ["README", "microcode_amd_fam17h.bin", "microcode_amd_fam17h.bin.asc", "microcode_amd_fam19h.bin.xz"]) fs.writeFileSync(path.join(root, "amd-ucode", f), f);
      fs.writeFileSync(path.join(root, "intel-ucode/06-8e-09.sig"), "x");
      const mixed = microcodeFor(parseMicrocodeOption(root, "/lib/firmware"), { arch: "x64", kernelConfig: null });
      expect(mixed.entries.find((e) => e.path.endsWith("AuthenticAMD.bin"))).toMatchObject({ data: new TextEncoder().encode("microcode_amd_fam17h.bin") });
      expect(mixed.note).toBe(
        "microcode: early archive with GenuineIntel.bin from 2 blob(s), AuthenticAMD.bin from 1 blob(s); not microcode, left out: 06-8e-09.sig, README, microcode_amd_fam17h.bin.asc, microcode_amd_fam19h.bin.xz",
      );
      // Intel built into the kernel: only the AMD file.
      const amdOnly = microcodeFor(parseMicrocodeOption(root, "/lib/firmware"), { arch: "x64", kernelConfig: 'CONFIG_EXTRA_FIRMWARE="intel-ucode/06-8e-09"' });
      expect(amdOnly.entries.map((e) => e.path)).toContain("kernel/x86/microcode/AuthenticAMD.bin");
      expect(amdOnly.entries.map((e) => e.path)).not.toContain("kernel/x86/microcode/GenuineIntel.bin");
      expect(amdOnly.note).toContain("GenuineIntel.bin left out, the kernel has it built in");
      expect(microcodeFor(parseMicrocodeOption("auto", root), { arch: "arm64", kernelConfig: null }).note).toContain("x86 only");
      expect(() => microcodeFor(parseMicrocodeOption(root, root), { arch: "arm64", kernelConfig: null })).toThrow("for arm64");
      expect(microcodeFor(parseMicrocodeOption("none", root), { arch: "x64", kernelConfig: null })).toEqual({ entries: [], note: "microcode: none (--microcode none)" });
      expect(() => microcodeFor(parseMicrocodeOption("/nonexistent-ucode", root), { arch: "x64", kernelConfig: null })).toThrow("no such directory");
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});
