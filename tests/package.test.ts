// The package as a distribution would install it: `npm pack`, the tarball
// installed into an empty directory, and the installed `bunboot` run from
// there (its commands, the builder's help, a stream-hash list checked
// against the repository's own).
import { afterAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { formatStreamHashList, StreamHasher } from "../lib/streamhash.ts";

const REPO = path.resolve(import.meta.dir, "..");
const work = fs.mkdtempSync(path.join(os.tmpdir(), "bunboot-package-"));
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

/**
 * Runs a command with a PATH of the system's directories only (and the
 * installed site's node_modules/.bin when given): the repository's own
 * node_modules/.bin must not lend the installed package its bun.
 */
function run(argv: string[], cwd: string, env: Record<string, string> = {}, site?: string): { code: number; out: string; err: string } {
  const PATH = [...(site ? [path.join(site, "node_modules/.bin")] : []), "/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"].join(":");
  const r = Bun.spawnSync(argv, { cwd, env: { ...process.env, ...env, PATH }, stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode ?? -1, out: r.stdout.toString(), err: r.stderr.toString() };
}

describe("the npm package", () => {
  let installed = "";
  test("npm pack, then npm install of the tarball into an empty directory", () => {
    const pack = run(["npm", "pack", "--json", "--pack-destination", work], REPO);
    expect(pack.code).toBe(0);
    const [info] = JSON.parse(pack.out) as Array<{ filename: string; files: Array<{ path: string }> }>;
    const files = info!.files.map((f) => f.path);
    expect(files).toContain("cli/bunboot.ts");
    expect(files).toContain("bin/bunboot.mjs");
    expect(files).toContain("man/bunboot.8");
    expect(files).toContain("init/main.ts");
    expect(files.filter((f) => f.endsWith(".test.ts") || f.startsWith("qemu-tests/") || f.startsWith("lib/testing/"))).toEqual([]);
    installed = path.join(work, "site");
    fs.mkdirSync(installed);
    fs.writeFileSync(path.join(installed, "package.json"), JSON.stringify({ name: "site", private: true }));
    // From npm's cache where it can: CI's npm ci filled it with the same versions.
    const install = run(["npm", "install", "--no-audit", "--no-fund", "--prefer-offline", path.join(work, info!.filename)], installed);
    expect(install.err).not.toMatch(/ERR!/);
    expect(install.code).toBe(0);
    expect(fs.existsSync(path.join(installed, "node_modules/.bin/bunboot"))).toBe(true);
  }, 300_000);

  test("npx bunboot --help lists the commands and the exit statuses", () => {
    const r = run(["npx", "--no-install", "bunboot", "--help"], installed, {}, installed);
    expect(r.code).toBe(0);
    for (const c of ["build", "fetch", "kexec", "stream-hash", "timeline"]) expect(r.out).toContain(`  ${c}\n`);
    expect(r.out).toContain("exit status:");
  });

  test("the installed bunboot stream-hash writes the list the repository's code writes", () => {
    const image = path.join(work, "image");
    fs.writeFileSync(image, Buffer.alloc(3 * 1024 * 1024 + 17, 7));
    // No bun on the PATH: the launcher runs the package's own.
    const r = run(["node_modules/.bin/bunboot", "stream-hash", image], installed);
    expect(r.code).toBe(0);
    const h = new StreamHasher(2 * 1024 * 1024);
    h.update(fs.readFileSync(image));
    expect(r.out).toBe(formatStreamHashList(h.finish()));
  });

  test("the installed bunboot build --help, and a usage error with status 2", () => {
    const help = run(["node_modules/.bin/bunboot", "build", "--help"], installed);
    expect(help.code).toBe(0);
    expect(help.out).toContain("usage: bunboot build [--config FILE | --no-config] [options]");
    expect(help.out).toContain("--verity-hash-offset N");
    const bad = run(["node_modules/.bin/bunboot", "build", "--no-such-option"], installed);
    expect(bad.code).toBe(2);
    expect(bad.err).toContain("unknown option --no-such-option");
  });

  test("a global install (npm install -g) gives a bunboot that runs with no bun on the PATH, and its man pages", () => {
    const prefix = path.join(work, "global");
    const tarball = fs.readdirSync(work).find((f) => f.endsWith(".tgz"))!;
    const install = run(["npm", "install", "-g", "--prefix", prefix, "--no-audit", "--no-fund", "--prefer-offline", path.join(work, tarball)], work);
    expect(install.code).toBe(0);
    const r = run([path.join(prefix, "bin/bunboot"), "--help"], work);
    expect(r.code).toBe(0);
    expect(r.out).toContain("  build\n");
    expect(fs.existsSync(path.join(prefix, "share/man/man8/bunboot.8"))).toBe(true);
    expect(fs.existsSync(path.join(prefix, "share/man/man7/bunboot.cmdline.7"))).toBe(true);
  }, 300_000);

  test("the installed bunboot builds an initrd, compiling the init from the package's sources, and leaves nothing beside --out", () => {
    const out = path.join(work, "built/initrd.cpio");
    const r = run(["node_modules/.bin/bunboot", "build", "--no-config", "--layout", "flat", "--compress", "none", "--microcode", "none", "--out", out], installed);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(r.out).toContain(`initrd ${out} (x64, profile netboot, layout flat)`);
    expect(fs.readdirSync(path.dirname(out))).toEqual(["initrd.cpio"]);
    expect(fs.existsSync(path.join(installed, "dist"))).toBe(false);
    expect(fs.readFileSync(out).subarray(0, 6).toString()).toBe("070701");
  }, 300_000);

  test("its man pages render from the installed files", () => {
    const r = run(["man", "-l", path.join(installed, "node_modules/bunboot/man/bunboot.8")], installed, { MANWIDTH: "80", PAGER: "cat" });
    expect(r.code).toBe(0);
    expect(r.out.replace(/.\x08/g, "")).toContain("BUILD OPTIONS");
  });
});
