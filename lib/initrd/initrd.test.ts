// The assembler against the real host (installed by scripts/deps.sh): the
// Debian kernel's modules, busybox, kmod, and veritysetup and dmsetup for the
// benchmark's reference init. A small stand-in replaces the ~100 MiB compiled
// init to keep this fast.
import { describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { gunzipSync } from "node:zlib";
import { decodeNewc } from "./cpio.ts";
import { BASE_MODULES } from "../kmod.ts";
import { buildInitrd, busyboxListArgv, newestKernel, type BuildOptions } from "./initrd.ts";
import { parseBuiltin } from "./modules.ts";

const REPO = path.resolve(import.meta.dir, "../..");
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "bunboot-initrd-test-"));

function options(out: string, extra: Partial<BuildOptions> = {}): BuildOptions {
  return {
    initBinary: "/usr/bin/true",
    out: path.join(tmp, out),
    compress: "none",
    modulesRoot: "/lib/modules",
    firmwareRoot: "/lib/firmware",
    modules: ["loop", "ext4", "dm-verity"],
    sysroot: "/",
    busybox: "/bin/busybox",
    verityHashOffset: 1065345024,
    // The archive tests read one cpio; the payload layout has its own test below.
    layout: "flat",
    log: () => {},
    ...extra,
  };
}

/** The payload image of an uncompressed payload-layout initrd: a file of the archive after the first. */
function payloadImage(file: Uint8Array): Uint8Array | null {
  // The kernel skips the zero bytes that pad an archive's end to 4 bytes; so does this.
  let at = decodeNewc(file).end;
  while (at < file.length && file[at] === 0) at++;
  const e = decodeNewc(file.subarray(at)).entries.find((x) => x.path.replace(/^\//, "") === ".payload.img");
  return e?.kind === "file" ? e.data : null;
}

describe("buildInitrd", () => {
  test("two builds of the same inputs are byte-identical", async () => {
    const a = await buildInitrd(options("a.cpio"));
    const b = await buildInitrd(options("b.cpio"));
    expect(a.buildId).toBe(b.buildId);
    expect(Buffer.compare(fs.readFileSync(a.out), fs.readFileSync(b.out))).toBe(0);
  }, 60_000);

  test("the archive holds the shim, the init, the tools, their libraries, modules with indexes and device nodes", async () => {
    const r = await buildInitrd(options("c.cpio"));
    const { entries } = decodeNewc(new Uint8Array(fs.readFileSync(r.out)));
    const byPath = new Map(entries.map((e) => [e.path.replace(/^\//, ""), e]));
    const kver = newestKernel("/lib/modules");

    const shim = byPath.get("init");
    expect(shim?.kind).toBe("file");
    expect(new TextDecoder().decode((shim as { data: Uint8Array }).data)).toStartWith("#!/bin/busybox sh\n");
    expect(byPath.get("bin/bunboot-init")?.kind).toBe("file");
    // The kernel's own module requests run /sbin/modprobe: it must be kmod.
    expect(byPath.get("sbin/modprobe")).toMatchObject({ kind: "symlink", target: "/bin/kmod" });
    expect(byPath.get("bin/sh")).toMatchObject({ kind: "symlink", target: "/bin/busybox" });
    for (const tool of ["bin/busybox", "bin/kmod"]) expect(byPath.get(tool)?.kind).toBe("file");
    expect(byPath.get("lib64/ld-linux-x86-64.so.2")?.kind).toBe("file");
    expect(byPath.get("lib/x86_64-linux-gnu/libc.so.6")?.kind).toBe("file");
    // kmod's own libraries.
    expect(byPath.get("lib/x86_64-linux-gnu/libzstd.so.1")?.kind).toBe("file");
    // The init opens dm-verity with ioctls: no veritysetup, no dmsetup, none of their libraries.
    for (const p of ["sbin/veritysetup", "sbin/dmsetup"]) expect(byPath.has(p)).toBe(false);
    const libs = entries.map((e) => path.basename(e.path)).filter((n) => n.startsWith("lib"));
    for (const only of ["libcryptsetup", "libdevmapper", "libpopt", "libargon2", "libjson-c"]) expect(libs.filter((n) => n.startsWith(only))).toEqual([]);
    expect(byPath.get("dev/console")).toMatchObject({ kind: "chardev", major: 5, minor: 1 });
    expect(byPath.get("dev/null")).toMatchObject({ kind: "chardev", major: 1, minor: 3 });
    for (const idx of ["modules.dep", "modules.dep.bin", "modules.alias.bin", "modules.softdep", "modules.builtin.bin"]) {
      expect(byPath.has(`lib/modules/${kver}/${idx}`)).toBe(true);
    }
    const modules = entries.filter((e) => e.path.endsWith(".ko")).map((e) => path.basename(e.path));
    // dm-verity's hard dependencies and ext4's soft dependency (an alias) came along.
    expect(modules).toEqual(expect.arrayContaining(["loop.ko", "ext4.ko", "jbd2.ko", "dm-verity.ko", "dm-bufio.ko", "dm-mod.ko", "crc32c_generic.ko"]));
    const config = JSON.parse(new TextDecoder().decode((byPath.get("etc/bunboot/config.json") as { data: Uint8Array }).data));
    // Of the base modules, the options above ship loop, dm_mod and dm_verity (ext4 is no base
    // module); the others count only where this kernel builds them in.
    const builtin = parseBuiltin(fs.readFileSync(path.join("/lib/modules", kver, "modules.builtin"), "utf8"));
    const expectedBase = BASE_MODULES.filter((m) => ["loop", "dm_mod", "dm_verity"].includes(m) || builtin.has(m));
    expect(config).toEqual({ verityHashOffset: 1065345024, buildId: r.buildId, kernelVersion: kver, arch: "x64", baseModules: expectedBase });
    for (const e of entries) if ("data" in e && e.kind === "file") expect(e.path).not.toContain("..");
  }, 60_000);

  test("the benchmark's reference init gets veritysetup and dmsetup, with their libraries", async () => {
    const r = await buildInitrd(options("ref.cpio", { initBinary: undefined, referenceInit: path.join(REPO, "bench/reference-init.sh") }));
    const byPath = new Map(decodeNewc(new Uint8Array(fs.readFileSync(r.out))).entries.map((e) => [e.path.replace(/^\//, ""), e]));
    for (const tool of ["bin/busybox", "bin/kmod", "sbin/veritysetup", "sbin/dmsetup"]) expect(byPath.get(tool)?.kind).toBe("file");
    expect(byPath.get("lib/x86_64-linux-gnu/libcryptsetup.so.12")?.kind).toBe("file");
    expect(byPath.has("bin/bunboot-init")).toBe(false);
  }, 60_000);

  test("--usr-hashes, --sftp-key and --sftp-host-key land in /etc/bunboot with the DHCP hook", async () => {
    const hashes = path.join(tmp, "usr.hashes");
    fs.writeFileSync(hashes, "stream-hash sha256 4096\n" + "b".repeat(64) + "\n");
    const key = path.join(tmp, "id");
    fs.writeFileSync(key, "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n");
    const fp = "SHA256:" + "A".repeat(43);
    const r = await buildInitrd(options("e.cpio", { usrHashes: hashes, sftpKey: key, sftpHostKey: fp }));
    const byPath = new Map(decodeNewc(new Uint8Array(fs.readFileSync(r.out))).entries.map((e) => [e.path.replace(/^\//, ""), e]));
    const text = (p: string) => new TextDecoder().decode((byPath.get(p) as { data: Uint8Array }).data);
    expect(text("etc/bunboot/usr.hashes")).toBe(fs.readFileSync(hashes, "utf8"));
    expect(byPath.get("etc/bunboot/sftp/id")).toMatchObject({ kind: "file", mode: 0o600 });
    expect(text("etc/bunboot/sftp/hostkey")).toBe(fp + "\n");
    expect(text("etc/bunboot/udhcpc.script")).toStartWith("#!/bin/busybox sh\n");
  }, 60_000);

  test("--emergency-password-hash lands, readable by root only, where the init reads it", async () => {
    const hash = await Bun.password.hash("s3cret", { algorithm: "argon2id", memoryCost: 4096, timeCost: 1 });
    const r = await buildInitrd(options("pw.cpio", { emergencyPasswordHash: hash }));
    const byPath = new Map(decodeNewc(new Uint8Array(fs.readFileSync(r.out))).entries.map((e) => [e.path.replace(/^\//, ""), e]));
    const entry = byPath.get("etc/bunboot/emergency-password-hash") as { kind: string; mode: number; data: Uint8Array };
    expect(entry).toMatchObject({ kind: "file", mode: 0o600 });
    expect(new TextDecoder().decode(entry.data)).toBe(hash + "\n");
  }, 60_000);

  test("rebuilding over a larger file leaves no old tail behind the compressed stream", async () => {
    const out = path.join(tmp, "over.zst");
    fs.writeFileSync(out, Buffer.alloc(8 << 20, 0x55));
    await buildInitrd(options("over.zst", { compress: "zstd", compressLevel: 1 }));
    // zstd -t fails on trailing garbage, as the kernel does ("invalid magic").
    const t = Bun.spawnSync(["zstd", "-t", "-q", out]);
    expect(t.stderr.toString()).toBe("");
    expect(t.exitCode).toBe(0);
  }, 60_000);

  test("payload layout: a small compressed archive with the shim, then an uncompressed one holding the squashfs of the rest", async () => {
    const r = await buildInitrd(options("p.img", { compress: "zstd", compressLevel: 1, layout: "payload" }));
    const file = new Uint8Array(fs.readFileSync(r.out));
    // The second archive starts at the first 4-byte boundary after the zstd frame.
    const magic = Buffer.from("070701");
    let at = -1;
    for (let i = 4; i + 6 <= file.length; i += 4) if (Buffer.from(file.subarray(i, i + 6)).equals(magic)) { at = i; break; }
    expect(at).toBeGreaterThan(0);
    const outer = decodeNewc(new Uint8Array(Bun.spawnSync(["zstd", "-dc"], { stdin: file.subarray(0, at) }).stdout));
    const byPath = new Map(outer.entries.map((e) => [e.path.replace(/^\//, ""), e]));
    expect(byPath.get("init")?.kind).toBe("file");
    expect(byPath.get("bin/busybox")?.kind).toBe("file");
    expect(byPath.get("bin/bunboot-init")).toMatchObject({ kind: "symlink", target: "/.payload/bin/bunboot-init" });
    expect(byPath.has("bin/kmod") && byPath.get("bin/kmod")!.kind === "file").toBe(false);
    const inner = decodeNewc(file.subarray(at));
    const image = inner.entries.find((e) => e.path.replace(/^\//, "") === ".payload.img");
    expect(image?.kind).toBe("file");
    const img = path.join(tmp, "payload.squashfs");
    fs.writeFileSync(img, (image as { data: Uint8Array }).data);
    const list = Bun.spawnSync(["unsquashfs", "-l", "-d", "", img]).stdout.toString();
    expect(list).toContain("/bin/bunboot-init");
    expect(list).toContain("/bin/kmod");
    expect(list).toMatch(/\/lib\/modules\/[^/]+\/modules\.dep/);
    // Nothing for veritysetup: dm-verity is opened with ioctls.
    expect(list).not.toContain("veritysetup");
  }, 120_000);

  test("payload layout for CONFIG_INITRAMFS_SOURCE: plain archives, the image still compressed with --payload-compress", async () => {
    // squashfs superblock: compressor id at byte 20 (1 gzip, 6 zstd); flags at 24, bits 0 and 1
    // mark uncompressed inodes and data.
    const superblock = async (extra: Partial<BuildOptions>): Promise<{ file: Uint8Array; compressor: number; uncompressedData: boolean }> => {
      const r = await buildInitrd(options(`pc-${extra.compress}-${extra.payloadCompress}.cpio`, { layout: "payload", compressLevel: 1, ...extra }));
      const file = new Uint8Array(fs.readFileSync(r.out));
      const image = payloadImage(file);
      expect(image).not.toBeNull();
      const sb = Buffer.from(image!.subarray(0, 96));
      expect(sb.readUInt32LE(0)).toBe(0x73717368); // "hsqs"
      return { file, compressor: sb.readUInt16LE(20), uncompressedData: (sb.readUInt16LE(24) & 0b11) === 0b11 };
    };
    const embedded = await superblock({ compress: "none", payloadCompress: "zstd" });
    // Both archives are plain newc, as the kernel build takes them, and the image is zstd.
    expect(Buffer.from(embedded.file.subarray(0, 6)).toString()).toBe("070701");
    expect(embedded.compressor).toBe(6);
    expect(embedded.uncompressedData).toBe(false);
    // Without --payload-compress the image follows --compress, none included.
    const plain = await superblock({ compress: "none" });
    expect(plain.uncompressedData).toBe(true);
    expect(plain.file.length).toBeGreaterThan(embedded.file.length);
  }, 120_000);

  test("gzip output unpacks to the same archive", async () => {
    const plain = await buildInitrd(options("d.cpio"));
    const gz = await buildInitrd(options("d.cpio.gz", { compress: "gzip", compressLevel: 1 }));
    expect(Buffer.compare(gunzipSync(fs.readFileSync(gz.out)), fs.readFileSync(plain.out))).toBe(0);
  }, 60_000);
});

// The arm64 cross build against the sysroot scripts/arm64-sysroot.sh unpacks
// (scripts/test.sh runs it through deps.sh, so under npm test this runs).
const SYSROOT_ARM64 = path.join(REPO, ".cache/sysroot-arm64");
const haveArm64Sysroot = fs.existsSync(path.join(SYSROOT_ARM64, "bin/busybox"));
if (!haveArm64Sysroot) console.warn(`initrd.test.ts: ${SYSROOT_ARM64} is missing (bash scripts/arm64-sysroot.sh makes it): skipping the arm64 build tests`);

describe.skipIf(!haveArm64Sysroot)("buildInitrd --arch arm64 from the Debian arm64 sysroot", () => {
  const arm64 = (out: string, extra: Partial<BuildOptions> = {}): BuildOptions =>
    options(out, {
      arch: "arm64",
      sysroot: SYSROOT_ARM64,
      // A dynamically linked aarch64 program of the sysroot stands in for the compiled init.
      initBinary: path.join(SYSROOT_ARM64, "bin/kmod"),
      modulesRoot: path.join(SYSROOT_ARM64, "lib/modules"),
      firmwareRoot: path.join(SYSROOT_ARM64, "lib/firmware"),
      modules: ["loop", "squashfs", "dm-verity", "virtio_blk", "virtio_pci", "virtio_mmio"],
      ...extra,
    });

  test("aarch64 busybox, kmod, loader and libraries from the sysroot's aarch64 directories; arm64 modules; config says arm64", async () => {
    const r = await buildInitrd(arm64("arm64.cpio"));
    const { entries } = decodeNewc(new Uint8Array(fs.readFileSync(r.out)));
    const byPath = new Map(entries.map((e) => [e.path.replace(/^\//, ""), e]));
    expect(r.kernelVersion).toEndWith("-arm64");
    const data = (p: string) => (byPath.get(p) as { data: Uint8Array }).data;
    // e_machine 183: aarch64, for every ELF file in the archive (programs, libraries, modules).
    const elves = entries.filter((e) => e.kind === "file" && e.data.length > 20 && Buffer.from(e.data.subarray(0, 4)).equals(Buffer.from("\x7fELF", "latin1")));
    expect(elves.length).toBeGreaterThan(10);
    for (const e of elves) expect([e.path, new DataView((e as { data: Uint8Array }).data.buffer, (e as { data: Uint8Array }).data.byteOffset).getUint16(18, true)]).toEqual([e.path, 183]);
    for (const p of ["bin/busybox", "bin/kmod", "bin/bunboot-init", "lib/ld-linux-aarch64.so.1", "lib/aarch64-linux-gnu/libc.so.6", "lib/aarch64-linux-gnu/libzstd.so.1", "lib/aarch64-linux-gnu/libcrypto.so.3"]) {
      expect([p, byPath.get(p)?.kind]).toEqual([p, "file"]);
    }
    expect(entries.filter((e) => e.path.includes("x86_64"))).toEqual([]);
    // The applet links come from the arm64 busybox itself (run under qemu-user).
    expect(byPath.get("bin/sh")).toMatchObject({ kind: "symlink", target: "/bin/busybox" });
    expect(byPath.get("sbin/udhcpc")).toMatchObject({ kind: "symlink", target: "/bin/busybox" });
    const modules = entries.filter((e) => e.path.endsWith(".ko")).map((e) => path.basename(e.path));
    expect(modules).toEqual(expect.arrayContaining(["loop.ko", "squashfs.ko", "dm-verity.ko", "virtio_blk.ko", "virtio_pci.ko", "virtio_mmio.ko"]));
    expect(byPath.has(`lib/modules/${r.kernelVersion}/modules.dep.bin`)).toBe(true);
    const config = JSON.parse(new TextDecoder().decode(data("etc/bunboot/config.json")));
    expect(config).toMatchObject({ arch: "arm64", kernelVersion: r.kernelVersion });
  }, 60_000);

  test("an x86-64 init in an arm64 initrd is refused, naming the file", async () => {
    await expect(buildInitrd(arm64("wrong.cpio", { initBinary: "/usr/bin/true" }))).rejects.toThrow("/usr/bin/true is a x86-64 binary, but the initrd is for aarch64");
  });

  test("the arm64 busybox is listed through qemu-user on an x64 host, directly on its own", () => {
    expect(busyboxListArgv("/s/bin/busybox", "arm64", "x64")).toEqual(["/usr/bin/qemu-aarch64", "/s/bin/busybox", "--list-full"]);
    expect(busyboxListArgv("/bin/busybox", "arm64", "arm64")).toEqual(["/bin/busybox", "--list-full"]);
    expect(busyboxListArgv("/bin/busybox", "x64", "x64")).toEqual(["/bin/busybox", "--list-full"]);
  });
});

describe("build.ts rejects bad input with a clear message", () => {
  function cli(...args: string[]) {
    const r = Bun.spawnSync([process.execPath, path.join(REPO, "build.ts"), "--no-config", "--init-binary", "/usr/bin/true", "--out", path.join(tmp, "x.img"), ...args], {
      env: { ...process.env, BUN_BE_BUN: "1" },
    });
    return { code: r.exitCode, err: r.stderr.toString() };
  }

  test("unknown kernel version", () => {
    const r = cli("--kernel-version", "0.0.0-none");
    expect(r.code).toBe(2);
    expect(r.err).toContain("--kernel-version 0.0.0-none: no /lib/modules/0.0.0-none/modules.dep; installed: ");
  });

  test("a module that exists nowhere", () => {
    const r = cli("--add-modules", "no_such_module_xyz");
    expect(r.code).toBe(2);
    expect(r.err).toContain("kernel module(s) not found in modules.dep and not built in: no_such_module_xyz");
  });

  test("a missing tool", () => {
    const r = cli("--busybox", "/nonexistent/busybox");
    expect(r.code).toBe(2);
    expect(r.err).toContain("/nonexistent/busybox not found");
  });

  test("a malformed --usr-hashes list is refused at build time, naming the file", () => {
    const bad = path.join(tmp, "bad.hashes");
    fs.writeFileSync(bad, "stream-hash sha256 0\n" + "a".repeat(64) + "\n");
    const r = cli("--usr-hashes", bad, "--compress", "none");
    expect(r.code).toBe(2);
    expect(r.err).toContain(`--usr-hashes ${bad}: chunk size 0 is out of range`);
  });

  test("--arch: an unknown one, and arm64 without its sysroot names the script that prepares it", () => {
    expect(cli("--arch", "riscv64").err).toContain('--arch expects x64 or arm64, got "riscv64"');
    // A repository copy without .cache: the sysroot is missing there.
    const bare = fs.mkdtempSync(path.join(tmp, "repo-"));
    fs.copyFileSync(path.join(REPO, "build.ts"), path.join(bare, "build.ts"));
    // Copied, not linked: the builder finds the repository from its own directory.
    fs.cpSync(path.join(REPO, "cli"), path.join(bare, "cli"), { recursive: true });
    fs.symlinkSync(path.join(REPO, "lib"), path.join(bare, "lib"));
    fs.symlinkSync(path.join(REPO, "node_modules"), path.join(bare, "node_modules"));
    const r = Bun.spawnSync([process.execPath, path.join(bare, "build.ts"), "--no-config", "--arch", "arm64", "--out", path.join(tmp, "y.img")], { env: { ...process.env, BUN_BE_BUN: "1" } });
    expect(r.exitCode).toBe(2);
    expect(r.stderr.toString()).toContain(`--arch arm64 on this x64 host needs the sysroot ${path.join(bare, ".cache/sysroot-arm64")}, which is missing: run bash scripts/arm64-sysroot.sh`);
  });

  test("bad option values", () => {
    expect(cli("--compress", "lz4").err).toContain('--compress expects zstd, xz, gzip or none, got "lz4"');
    expect(cli("--payload-compress", "lz4").err).toContain('--payload-compress expects zstd, xz, gzip or none, got "lz4"');
    const flat = cli("--layout", "flat", "--payload-compress", "zstd");
    expect(flat.code).toBe(2);
    expect(flat.err).toContain("--payload-compress applies to --layout payload only (the flat layout has no payload image)");
    expect(cli("--verity-hash-offset", "100").err).toContain("--verity-hash-offset must be a positive multiple of 4096, got 100");
    expect(cli("--frobnicate").err).toContain("unknown option --frobnicate");
    // A bcrypt hash, or a password given by mistake, would lock every console of the fleet.
    expect(cli("--emergency-password-hash", "$2b$10$abcdefghijklmnopqrstuu").err).toContain("--emergency-password-hash expects an argon2id hash");
    const plain = cli("--emergency-password-hash", "hunter2-plain-password");
    expect(plain.code).toBe(2);
    expect(plain.err).toContain("--emergency-password-hash expects an argon2id hash");
  });
});
