#!/usr/bin/env bun
// The initrd builder's command line: the work is in lib/initrd/ (compiling
// init/, packing the minimal initrd). `bun build.ts --help` lists the options.
import fs from "node:fs";
import path from "node:path";
import parseArgs from "yargs-parser";
import { DEFAULT_PROFILE, DIRECTORY_OMISSIONS, ModuleSelectionError, PROFILES, type Profile } from "./lib/initrd/modules.ts";
import { BuildError } from "./lib/initrd/tree.ts";
import { compileInit } from "./lib/initrd/compile.ts";
import { archInputs, checkCrossInputs, parseArch } from "./lib/initrd/arch.ts";
import { buildInitrd, DEFAULT_LAYOUT, FLATCAR_VERITY_HASH_OFFSET, LAYOUTS, type Compression, type Layout } from "./lib/initrd/initrd.ts";

const HELP = `usage: bun build.ts [options]
  --arch x64|arm64           the machine the initrd boots (default: this host's, ${process.arch}); another
                             architecture takes busybox, kmod, libraries and modules from
                             .cache/sysroot-ARCH and the Bun runtime from .cache/bun-linux-MACHINE/bun
                             (bash scripts/arm64-sysroot.sh prepares both for arm64)
  --out FILE                 initrd to write (default dist/initrd.img, dist/initrd-arm64.img for arm64)
  --compress zstd|xz|gzip|none   (default zstd)
  --compress-level N         compressor level (default: zstd 19, xz 6, gzip 9)
  --kernel-version VER       kernel whose modules to ship (default: newest in --modules-root)
  --modules-root DIR         default /lib/modules (in the sysroot for another architecture)
  --firmware-root DIR        default /lib/firmware (in the sysroot for another architecture)
  --profile netboot|disk     module set: netboot (default) has the disk controllers and the NIC
                             drivers of diskless boots, disk leaves the NICs out
  --add-modules a,b,...      extra modules by name, .ko path or directory (trailing /) under kernel/
  --omit-modules a,b,...     modules to leave out of the profile's directories, beside the built-in
                             list of ones stage 1 cannot use (iSCSI, FCoE, target mode, tapes)
  --verity-hash-offset N     byte offset of the verity hash tree on /usr (default ${FLATCAR_VERITY_HASH_OFFSET}, Flatcar's)
  --sysroot DIR              take busybox, kmod and their libraries (and the reference init's
                             veritysetup, dmsetup) from DIR (default /, or .cache/sysroot-ARCH)
  --busybox PATH             static busybox (default /bin/busybox)
  --init-binary FILE         use an already compiled init instead of compiling init/main.ts
  --target TARGET            bun --compile target (default bun-linux-x64 or bun-linux-arm64 by --arch)
  --usr-hashes FILE          stream-hash list of the rd.usr.url= image (bunboot stream-hash IMAGE > FILE)
  --sftp-key FILE            SSH private key for sftp:// /usr images
  --sftp-host-key SHA256:... pin the SFTP server's host key (ssh-keygen -lf)
  --layout flat|payload      payload: the init, tools, libraries and modules in a squashfs the
                             kernel only copies (pages decompressed on use); flat: one archive
                             the kernel unpacks whole; default ${DEFAULT_LAYOUT}
  --payload-block-size N     squashfs block size of the payload image (default 1048576)
  --emergency-password-hash H  argon2id hash (Bun.password.hash) asked before any shell is given
  --reference-init FILE      a shell script as /init instead of the Bun init (benchmark reference)
`;

const ROOT = import.meta.dir;

function fail(msg: string): never {
  console.error(`build.ts: ${msg}`);
  process.exit(2);
}

function num(name: string, v: unknown): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) fail(`--${name} expects a non-negative integer, got ${JSON.stringify(v)}`);
  return n;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2), {
    string: ["arch", "out", "compress", "kernel-version", "modules-root", "firmware-root", "add-modules", "sysroot", "busybox", "init-binary", "target", "reference-init", "usr-hashes", "sftp-key", "sftp-host-key", "emergency-password-hash", "layout", "profile", "omit-modules"],
    boolean: ["help"],
    configuration: { "strip-dashed": true },
  });
  if (args.help) {
    console.log(HELP);
    return;
  }
  const known = new Set(["_", "arch", "out", "compress", "compressLevel", "kernelVersion", "modulesRoot", "firmwareRoot", "addModules", "verityHashOffset", "sysroot", "busybox", "initBinary", "target", "referenceInit", "usrHashes", "sftpKey", "sftpHostKey", "emergencyPasswordHash", "layout", "payloadBlockSize", "profile", "omitModules", "help"]);
  for (const k of Object.keys(args)) if (!known.has(k)) fail(`unknown option --${k.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase())}\n${HELP}`);
  if (args._.length > 0) fail(`unexpected argument ${args._[0]}\n${HELP}`);
  const compress = (args.compress ?? "zstd") as Compression;
  if (!["zstd", "xz", "gzip", "none"].includes(compress)) fail(`--compress expects zstd, xz, gzip or none, got ${JSON.stringify(args.compress)}`);
  const verityHashOffset = num("verity-hash-offset", args.verityHashOffset) ?? FLATCAR_VERITY_HASH_OFFSET;
  if (verityHashOffset % 4096 !== 0 || verityHashOffset === 0) fail(`--verity-hash-offset must be a positive multiple of 4096, got ${verityHashOffset}`);
  const layout = (args.layout ?? DEFAULT_LAYOUT) as Layout;
  if (!LAYOUTS.includes(layout)) fail(`--layout expects ${LAYOUTS.join(" or ")}, got ${JSON.stringify(args.layout)}`);
  let arch: ReturnType<typeof parseArch>;
  try {
    arch = parseArch(args.arch, process.arch);
  } catch (e) {
    if (e instanceof BuildError) fail(e.message);
    throw e;
  }
  const target = archInputs(arch, process.arch, ROOT);
  const out = path.resolve(args.out ?? target.out);
  const profile = (args.profile ?? DEFAULT_PROFILE) as Profile;
  if (!Object.hasOwn(PROFILES, profile)) fail(`--profile expects ${Object.keys(PROFILES).join(" or ")}, got ${JSON.stringify(args.profile)}`);
  const list = (v: unknown) => String(v ?? "").split(",").map((s) => s.trim()).filter(Boolean);

  const t0 = performance.now();
  const referenceInit = args.referenceInit ? path.resolve(args.referenceInit) : undefined;
  if (referenceInit && !fs.existsSync(referenceInit)) fail(`--reference-init ${referenceInit} does not exist`);
  if (referenceInit && args.initBinary) fail("--reference-init and --init-binary exclude each other");
  // The reference initrd has no Bun executable: nothing to compile.
  let initBinary: string | undefined;
  try {
    // Only the defaults come from the cross inputs: --sysroot and
    // --modules-root given by hand need no prepared sysroot.
    if (args.sysroot === undefined || args.modulesRoot === undefined) checkCrossInputs(target, { needRuntime: !referenceInit && !args.initBinary });
    initBinary = referenceInit
      ? undefined
      : args.initBinary
        ? path.resolve(args.initBinary)
        : await compileInit(target.initBinary, args.target ?? target.spec.bunTarget, { executablePath: target.runtime });
  } catch (e) {
    if (e instanceof BuildError) fail(e.message);
    throw e;
  }
  if (initBinary && !fs.existsSync(initBinary)) fail(`--init-binary ${initBinary} does not exist`);
  const extra = list(args.addModules);
  try {
    const r = await buildInitrd({
      initBinary,
      referenceInit,
      out,
      compress,
      compressLevel: num("compress-level", args.compressLevel),
      kernelVersion: args.kernelVersion,
      modulesRoot: args.modulesRoot ?? target.modulesRoot,
      firmwareRoot: args.firmwareRoot ?? target.firmwareRoot,
      modules: [...PROFILES[profile], ...extra],
      profile,
      omitModules: [...DIRECTORY_OMISSIONS, ...list(args.omitModules)],
      sysroot: args.sysroot ?? target.sysroot,
      arch,
      busybox: args.busybox ?? "/bin/busybox",
      verityHashOffset,
      usrHashes: args.usrHashes,
      sftpKey: args.sftpKey,
      sftpHostKey: args.sftpHostKey,
      emergencyPasswordHash: args.emergencyPasswordHash,
      layout,
      payloadBlockSize: num("payload-block-size", args.payloadBlockSize),
    });
    const mib = (n: number) => (n / 1048576).toFixed(1).padStart(7) + " MiB";
    console.log(`initrd ${r.out} (${arch}, profile ${profile}, layout ${referenceInit ? "flat (reference init)" : layout}) for kernel ${r.kernelVersion}, build ${r.buildId}, in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    for (const [component, size] of [...r.breakdown].sort((a, b) => b[1] - a[1])) console.log(`  ${component.padEnd(12)} ${mib(size)}`);
    console.log(`  ${"total".padEnd(12)} ${mib(r.uncompressed)} uncompressed, ${mib(r.compressed)} ${compress}`);
  } catch (e) {
    if (e instanceof BuildError || e instanceof ModuleSelectionError) fail(e.message);
    throw e;
  }
}

if (import.meta.main) await main();
