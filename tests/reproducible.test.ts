// Two builds from the same inputs are the same bytes: the compiled init and
// the initrd, each built in a directory of its own, with SOURCE_DATE_EPOCH
// set, and the time it names on every entry. Also the compiled host
// executable (scripts/compile-bunboot.ts), whose build makes the same initrd
// as `bun build.ts`.
import { afterAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { decodeNewc } from "../lib/initrd/cpio.ts";
import { compileBunboot } from "../scripts/compile-bunboot.ts";

const REPO = path.resolve(import.meta.dir, "..");
const BUN = process.execPath;
const work = fs.mkdtempSync(path.join(os.tmpdir(), "bunboot-repro-"));
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));
const EPOCH = "1700000000";

function build(cwd: string, argv: string[], exe: string[] = [BUN, path.join(REPO, "build.ts")]): { code: number; out: string; err: string } {
  fs.mkdirSync(cwd, { recursive: true });
  // BUN_BE_BUN=1 makes a compiled program act as the bun CLI: only for bun itself.
  const env = { ...process.env, SOURCE_DATE_EPOCH: EPOCH, ...(exe[0] === BUN ? { BUN_BE_BUN: "1" } : {}) };
  if (exe[0] !== BUN) delete env.BUN_BE_BUN;
  const r = Bun.spawnSync([...exe, "--no-config", ...argv], { cwd, env, stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode ?? -1, out: r.stdout.toString(), err: r.stderr.toString() };
}

const same = (a: string, b: string) => Buffer.compare(fs.readFileSync(a), fs.readFileSync(b)) === 0;

describe("reproducible builds", () => {
  test("the init and the initrd built twice, in two directories, are the same bytes", () => {
    // Uncompressed, so that the archive can be read back below; the compressors are deterministic too.
    for (const d of ["a", "b"]) {
      const r = build(path.join(work, d), ["--compress", "none", "--layout", "flat", "--microcode", "none"]);
      expect(r.err).toBe("");
      expect(r.code).toBe(0);
    }
    expect(same(path.join(work, "a/dist/bunboot-init"), path.join(work, "b/dist/bunboot-init"))).toBe(true);
    expect(same(path.join(work, "a/dist/initrd.img"), path.join(work, "b/dist/initrd.img"))).toBe(true);
  }, 300_000);

  test("the default layout, compressed, is the same bytes twice too (mksquashfs given the epoch's times, not its own reading of SOURCE_DATE_EPOCH)", () => {
    for (const d of ["pa", "pb"]) {
      const r = build(path.join(work, d), ["--compress", "zstd", "--compress-level", "3", "--microcode", "none", "--init-binary", path.join(work, "a/dist/bunboot-init")]);
      expect(r.err).toBe("");
      expect(r.code).toBe(0);
    }
    expect(same(path.join(work, "pa/dist/initrd.img"), path.join(work, "pb/dist/initrd.img"))).toBe(true);
  }, 300_000);

  test("every entry carries SOURCE_DATE_EPOCH as its time", () => {
    const raw = fs.readFileSync(path.join(work, "a/dist/initrd.img"));
    const text = raw.subarray(0, 4096).toString("latin1");
    expect(text.startsWith("070701")).toBe(true);
    // c_mtime of the first entry, and of every entry through the decoder's headers.
    expect(parseInt(text.slice(6 + 5 * 8, 6 + 6 * 8), 16)).toBe(Number(EPOCH));
    // Header by header: c_mtime, c_filesize and c_namesize are fields 6, 7 and 12.
    const mtimes = new Map<string, number>();
    const field = (off: number, i: number) => parseInt(raw.toString("latin1", off + 6 + i * 8, off + 14 + i * 8), 16);
    const align4 = (n: number) => (n + 3) & ~3;
    for (let off = 0; ; ) {
      expect(raw.toString("latin1", off, off + 6)).toBe("070701");
      const namesize = field(off, 11);
      const name = raw.toString("latin1", off + 110, off + 110 + namesize - 1);
      if (name === "TRAILER!!!") break;
      mtimes.set(name, field(off, 5));
      off = align4(align4(off + 110 + namesize) + field(off, 6));
    }
    expect(mtimes.size).toBe(decodeNewc(new Uint8Array(raw)).entries.length);
    expect(mtimes.size).toBeGreaterThan(100);
    expect([...new Set(mtimes.values())]).toEqual([Number(EPOCH)]);
  });

  test("--compress none --layout flat is one plain newc archive, as CONFIG_INITRAMFS_SOURCE takes it: GNU cpio lists every entry", () => {
    const img = path.join(work, "a/dist/initrd.img");
    const r = Bun.spawnSync(["/bin/sh", "-c", 'cpio -it --quiet < "$0"', img], { stdout: "pipe", stderr: "pipe" });
    expect(r.stderr.toString()).toBe("");
    const listed = r.stdout.toString().trim().split("\n");
    expect(listed.length).toBe(decodeNewc(new Uint8Array(fs.readFileSync(img))).entries.length);
    expect(listed).toContain("init");
    expect(listed).toContain("etc/bunboot/config.json");
  });

  test("a bad SOURCE_DATE_EPOCH is refused by name", () => {
    const r = Bun.spawnSync([BUN, path.join(REPO, "build.ts"), "--no-config", "--init-binary", "/usr/bin/true", "--out", path.join(work, "x.img")], {
      env: { ...process.env, BUN_BE_BUN: "1", SOURCE_DATE_EPOCH: "yesterday" },
      stderr: "pipe",
    });
    expect(r.exitCode).toBe(2);
    expect(r.stderr.toString()).toContain('SOURCE_DATE_EPOCH must be seconds since 1970 (0 to 4294967295), got "yesterday"');
  });

  test("the compiled host executable: its commands, and its build makes the same initrd", async () => {
    const exe = path.join(work, "bunboot");
    await compileBunboot(exe);
    const help = Bun.spawnSync([exe, "--help"], { stdout: "pipe" });
    expect(help.exitCode).toBe(0);
    for (const c of ["build", "fetch", "kexec", "stream-hash", "timeline"]) expect(help.stdout.toString()).toContain(`  ${c}\n`);
    // Without sources it cannot compile the init, and says what to do instead.
    const noSources = build(path.join(work, "c"), ["--compress", "none", "--layout", "flat"], [exe, "build"]);
    expect(noSources.code).toBe(2);
    expect(noSources.err).toContain("pass --init-binary");
    // With the init compiled above, the same initrd as the repository's builder made.
    const r = build(path.join(work, "c"), ["--compress", "none", "--layout", "flat", "--microcode", "none", "--init-binary", path.join(work, "a/dist/bunboot-init")], [exe, "build"]);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(same(path.join(work, "c/dist/initrd.img"), path.join(work, "a/dist/initrd.img"))).toBe(true);
  }, 300_000);
});
