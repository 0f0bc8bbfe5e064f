// bunboot build: the initrd builder. The options are one table
// (lib/initrd/options.ts) read from a TOML config file and the command line;
// the work is in lib/initrd/ (compiling init/, packing the minimal initrd).
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { DEFAULT_PROFILE, DIRECTORY_OMISSIONS, ModuleSelectionError, omitFromProfile, PROFILES, type Profile } from "../lib/initrd/modules.ts";
import { BuildError } from "../lib/initrd/tree.ts";
import { compileInit } from "../lib/initrd/compile.ts";
import { archInputs, checkCrossInputs, parseArch } from "../lib/initrd/arch.ts";
import { buildInitrd, DEFAULT_LAYOUT, FLATCAR_VERITY_HASH_OFFSET, type Compression, type Layout } from "../lib/initrd/initrd.ts";
import { parseMicrocodeOption } from "../lib/initrd/microcode.ts";
import { mergeOptions, OptionError, optionsFromArgv, parseConfigText, renderHelp, type ExtraFile, type OptionValues } from "../lib/initrd/options.ts";

export const summary = "build the minimal initrd (options from /etc/bunboot/bunboot.toml, --config FILE and flags)";

/** Read when it exists and no --config or --no-config says otherwise. */
export const DEFAULT_CONFIG = "/etc/bunboot/bunboot.toml";

export const USAGE = "usage: bunboot build [--config FILE | --no-config] [options]   (flags override the config file)";

/** The repository (or installed package) the builder runs from: init/ and dist/ are found from here. */
const ROOT = path.resolve(import.meta.dir, "..");

class UsageError extends Error {}

/**
 * SOURCE_DATE_EPOCH (reproducible-builds.org): the time every file of the
 * initrd carries. Unset: 0, which is just as reproducible. The cpio header
 * holds 32 bits.
 */
export function sourceDateEpochOf(text: string | undefined): number | undefined {
  if (text === undefined || text === "") return undefined;
  if (!/^(0|[1-9][0-9]{0,9})$/.test(text) || Number(text) > 0xffffffff) throw new UsageError(`SOURCE_DATE_EPOCH must be seconds since 1970 (0 to 4294967295), got ${JSON.stringify(text)}`);
  return Number(text);
}

/** The options in force: the config file's (named, default, or none), then the flags'. */
export function resolveOptions(argv: readonly string[], readFile: (p: string) => string | null = readIfExists): { values: OptionValues; configFile: string | null } {
  const flags = optionsFromArgv(argv);
  const named = typeof flags.config === "string" ? flags.config : undefined;
  let configFile: string | null = null;
  let fromFile: OptionValues = {};
  if (named !== "") {
    const file = named ?? DEFAULT_CONFIG;
    const text = readFile(file);
    if (text === null && named !== undefined) throw new OptionError(`--config ${named}: no such file`);
    if (text !== null) {
      fromFile = parseConfigText(text, file);
      configFile = file;
    }
  }
  const { config: _config, ...rest } = flags;
  return { values: mergeOptions(fromFile, rest), configFile };
}

function readIfExists(p: string): string | null {
  try {
    return fs.readFileSync(p, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw new OptionError(`${p}: ${(e as Error).message}`);
  }
}

export async function run(argv: string[]): Promise<number> {
  // Before any config file is read: a broken one must not hide the help.
  if (argv.includes("--help")) {
    console.log(renderHelp(USAGE));
    return 0;
  }
  let values: OptionValues;
  let configFile: string | null;
  try {
    ({ values, configFile } = resolveOptions(argv));
  } catch (e) {
    if (e instanceof OptionError) {
      console.error(`bunboot build: ${e.message}\n${USAGE}\n(bunboot build --help lists the options)`);
      return 2;
    }
    throw e;
  }
  if (values.help) {
    console.log(renderHelp(USAGE));
    return 0;
  }
  try {
    await build(values, configFile);
    return 0;
  } catch (e) {
    // What was asked cannot be built (a missing module, tool or file, a bad
    // value): a usage error. Anything else is a failure (status 1, from bunboot's main).
    if (e instanceof UsageError || e instanceof BuildError || e instanceof ModuleSelectionError) {
      console.error(`bunboot build: ${e.message}`);
      return 2;
    }
    throw e;
  }
}

async function build(v: OptionValues, configFile: string | null): Promise<void> {
  const str = (k: string) => v[k] as string | undefined;
  const int = (k: string) => v[k] as number | undefined;
  const list = (k: string) => (v[k] as string[] | undefined) ?? [];
  const compress = (str("compress") ?? "zstd") as Compression;
  const verityHashOffset = int("verity-hash-offset") ?? FLATCAR_VERITY_HASH_OFFSET;
  if (verityHashOffset % 4096 !== 0 || verityHashOffset === 0) throw new UsageError(`--verity-hash-offset must be a positive multiple of 4096, got ${verityHashOffset}`);
  const layout = (str("layout") ?? DEFAULT_LAYOUT) as Layout;
  const payloadCompress = str("payload-compress") as Compression | undefined;
  if (payloadCompress !== undefined && layout !== "payload") throw new UsageError(`--payload-compress applies to --layout payload only (the ${layout} layout has no payload image)`);
  let arch: ReturnType<typeof parseArch>;
  try {
    arch = parseArch(str("arch"), process.arch);
  } catch (e) {
    if (e instanceof BuildError) throw new UsageError(e.message);
    throw e;
  }
  const target = archInputs(arch, process.arch, ROOT);
  // What the build writes goes below the current directory (dist/), also
  // when bunboot runs from an installed package; the cross inputs stay in
  // the package's .cache.
  const inCwd = (p: string) => path.resolve(path.relative(ROOT, p));
  const out = path.resolve(str("out") ?? inCwd(target.out));
  const profile = (str("profile") ?? DEFAULT_PROFILE) as Profile;
  if (!Object.hasOwn(PROFILES, profile)) throw new UsageError(`--profile expects ${Object.keys(PROFILES).join(" or ")}, got ${JSON.stringify(profile)}`);

  const sourceDateEpoch = sourceDateEpochOf(process.env.SOURCE_DATE_EPOCH);
  const t0 = performance.now();
  const referenceInit = str("reference-init") ? path.resolve(str("reference-init")!) : undefined;
  if (referenceInit && !fs.existsSync(referenceInit)) throw new UsageError(`--reference-init ${referenceInit} does not exist`);
  if (referenceInit && str("init-binary")) throw new UsageError("--reference-init and --init-binary exclude each other");
  for (const f of (v["extra-files"] as ExtraFile[] | undefined) ?? []) {
    if (!fs.existsSync(f.source)) throw new UsageError(`extra file ${f.source} (for ${f.dest}) does not exist`);
  }
  // Only the defaults come from the cross inputs: --sysroot and
  // --modules-root given by hand need no prepared sysroot.
  if (str("sysroot") === undefined || str("modules-root") === undefined) checkCrossInputs(target, { needRuntime: !referenceInit && !str("init-binary") });
  // The compiled init goes beside the default output (dist/bunboot-init, which
  // the repository's scripts reuse). With --out it is compiled in a scratch
  // directory, so that a build into /boot leaves nothing else behind. Its
  // name is always bunboot-init: Bun embeds the name, and a fixed one keeps
  // the build reproducible. The reference initrd has no Bun executable.
  const compiles = !referenceInit && !str("init-binary");
  const scratch = compiles && str("out") !== undefined ? fs.mkdtempSync(path.join(os.tmpdir(), "bunboot-build-")) : null;
  try {
    const initBinary = referenceInit
      ? undefined
      : str("init-binary")
        ? path.resolve(str("init-binary")!)
        : await compileInit(scratch ? path.join(scratch, path.basename(target.initBinary)) : inCwd(target.initBinary), str("target") ?? target.spec.bunTarget, { executablePath: target.runtime });
    if (initBinary && !fs.existsSync(initBinary)) throw new UsageError(`--init-binary ${initBinary} does not exist`);
    const r = await buildInitrd({
      initBinary,
      referenceInit,
      out,
      compress,
      compressLevel: int("compress-level"),
      kernelVersion: str("kernel-version"),
      modulesRoot: str("modules-root") ?? target.modulesRoot,
      firmwareRoot: str("firmware-root") ?? target.firmwareRoot,
      modules: [...omitFromProfile(PROFILES[profile], list("omit-modules")), ...list("add-modules")],
      profile,
      omitModules: [...DIRECTORY_OMISSIONS, ...list("omit-modules")],
      sysroot: str("sysroot") ?? target.sysroot,
      arch,
      busybox: str("busybox") ?? "/bin/busybox",
      verityHashOffset,
      usrHashes: str("usr-hashes"),
      sftpKey: str("sftp-key"),
      sftpHostKey: str("sftp-host-key"),
      emergencyPasswordHash: str("emergency-password-hash"),
      extraFiles: (v["extra-files"] as ExtraFile[] | undefined) ?? [],
      sourceDateEpoch,
      microcode: parseMicrocodeOption(str("microcode"), str("firmware-root") ?? target.firmwareRoot),
      layout,
      payloadBlockSize: int("payload-block-size"),
      payloadCompress,
    });
    const mib = (n: number) => (n / 1048576).toFixed(1).padStart(7) + " MiB";
    console.log(
      `initrd ${r.out} (${arch}, profile ${profile}, layout ${referenceInit ? "flat (reference init)" : layout}) for kernel ${r.kernelVersion}, build ${r.buildId}, in ${((performance.now() - t0) / 1000).toFixed(1)} s${configFile ? `, options from ${configFile}` : ""}`,
    );
    for (const [component, size] of [...r.breakdown].sort((a, b) => b[1] - a[1])) console.log(`  ${component.padEnd(12)} ${mib(size)}`);
    console.log(`  ${"total".padEnd(12)} ${mib(r.uncompressed)} uncompressed, ${mib(r.compressed)} ${compress}`);
  } finally {
    if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
  }
}
