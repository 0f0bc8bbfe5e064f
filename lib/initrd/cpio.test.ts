import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { existsSync, lstatSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync, mkdirSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CpioError, decodeNewc, encodeNewc, normalizeCpioPath, padTo } from "./cpio.ts";
import type { CpioEntry } from "./cpio.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

function concat(parts: Uint8Array[]): Uint8Array {
  const total = parts.reduce((n, p) => n + p.byteLength, 0);
  const out = new Uint8Array(total);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.byteLength;
  }
  return out;
}

const archive = (entries: CpioEntry[]) => concat(encodeNewc(entries));

function header(buf: Uint8Array, at: number) {
  const text = dec.decode(buf.subarray(at, at + 110));
  const f = (i: number) => parseInt(text.slice(6 + i * 8, 14 + i * 8), 16);
  return {
    magic: text.slice(0, 6),
    ino: f(0),
    mode: f(1),
    uid: f(2),
    gid: f(3),
    nlink: f(4),
    mtime: f(5),
    filesize: f(6),
    devmajor: f(7),
    devminor: f(8),
    rdevmajor: f(9),
    rdevminor: f(10),
    namesize: f(11),
    check: f(12),
  };
}

const sample: CpioEntry[] = [
  { kind: "file", path: "/init", mode: 0o755, data: enc.encode("#!/bin/sh\necho hi\n") },
  { kind: "dir", path: "dev" },
  { kind: "chardev", path: "/dev/console", major: 5, minor: 1 },
  { kind: "blockdev", path: "/dev/vda", mode: 0o660, major: 253, minor: 0 },
  { kind: "symlink", path: "/bin", target: "usr/bin" },
  { kind: "file", path: "/usr/bin/empty", data: new Uint8Array(0) },
  { kind: "file", path: "/usr/lib/x86_64-linux-gnu/libc.so.6", data: new Uint8Array([1, 2, 3, 4, 5]) },
  { kind: "dir", path: "/proc", mode: 0o555 },
  { kind: "dir", path: "/sysroot", mode: 0o1777 },
];

describe("padTo", () => {
  test("rounds up to the alignment", () => {
    expect(padTo(0, 4)).toBe(0);
    expect(padTo(1, 4)).toBe(4);
    expect(padTo(4, 4)).toBe(4);
    expect(padTo(111, 4)).toBe(112);
    expect(padTo(121, 4)).toBe(124);
    expect(padTo(513, 512)).toBe(1024);
  });
  test("rejects nonsense", () => {
    expect(() => padTo(1, 0)).toThrow();
    expect(() => padTo(-1, 4)).toThrow();
    expect(() => padTo(1.5, 4)).toThrow();
  });
});

describe("normalizeCpioPath", () => {
  test("strips leading slashes", () => {
    expect(normalizeCpioPath("/init")).toBe("init");
    expect(normalizeCpioPath("init")).toBe("init");
    expect(normalizeCpioPath("//a/b")).toBe("a/b");
  });
  test("rejects bad paths", () => {
    for (const p of ["", "/", "a//b", "a/", "../x", "a/../b", "a/./b", ".", "a\0b"]) {
      expect(() => normalizeCpioPath(p)).toThrow(CpioError);
    }
  });
});

describe("encodeNewc", () => {
  test("byte-exact tiny archive", () => {
    const buf = archive([{ kind: "file", path: "/a", mode: 0o640, data: enc.encode("xyz") }]);
    // header(110) + "a\0" = 112 (aligned), data 3 -> 4, trailer 110 + 11 = 121 -> 124
    expect(buf.byteLength).toBe(112 + 4 + 124);
    expect(dec.decode(buf.subarray(0, 110))).toBe(
      "070701" +
        "00000001" + // ino
        "000081A0" + // S_IFREG | 0640
        "00000000" + // uid
        "00000000" + // gid
        "00000001" + // nlink
        "00000000" + // mtime
        "00000003" + // filesize
        "00000000" + // devmajor
        "00000000" + // devminor
        "00000000" + // rdevmajor
        "00000000" + // rdevminor
        "00000002" + // namesize incl. NUL
        "00000000", // check
    );
    expect([...buf.subarray(110, 112)]).toEqual([0x61, 0]);
    expect([...buf.subarray(112, 116)]).toEqual([0x78, 0x79, 0x7a, 0]);
    const t = header(buf, 116);
    expect(t).toEqual({
      magic: "070701",
      ino: 0,
      mode: 0,
      uid: 0,
      gid: 0,
      nlink: 1,
      mtime: 0,
      filesize: 0,
      devmajor: 0,
      devminor: 0,
      rdevmajor: 0,
      rdevminor: 0,
      namesize: 11,
      check: 0,
    });
    expect(dec.decode(buf.subarray(116 + 110, 116 + 121))).toBe("TRAILER!!!\0");
    expect([...buf.subarray(116 + 121)]).toEqual([0, 0, 0]);
  });

  test("header fields for every kind", () => {
    const buf = archive(sample);
    const seen: Record<string, ReturnType<typeof header>> = {};
    let off = 0;
    for (;;) {
      const h = header(buf, off);
      expect(h.magic).toBe("070701");
      const name = dec.decode(buf.subarray(off + 110, off + 110 + h.namesize - 1));
      expect(buf[off + 110 + h.namesize - 1]).toBe(0);
      seen[name] = h;
      expect((off + 110 + h.namesize) % 4 === 0 || buf[off + 110 + h.namesize] === 0).toBe(true);
      off += padTo(110 + h.namesize, 4) + padTo(h.filesize, 4);
      expect(off % 4).toBe(0);
      if (name === "TRAILER!!!") break;
      expect(h.uid).toBe(0);
      expect(h.gid).toBe(0);
      expect(h.mtime).toBe(0);
      expect(h.devmajor).toBe(0);
      expect(h.devminor).toBe(0);
      expect(h.check).toBe(0);
    }
    expect(off).toBe(buf.byteLength);
    expect(seen["dev"]).toMatchObject({ mode: 0o040755, nlink: 2, filesize: 0 });
    expect(seen["proc"]).toMatchObject({ mode: 0o040555, nlink: 2 });
    expect(seen["sysroot"]).toMatchObject({ mode: 0o041777 });
    expect(seen["init"]).toMatchObject({ mode: 0o100755, nlink: 1, filesize: 18 });
    expect(seen["usr/bin/empty"]).toMatchObject({ mode: 0o100644, filesize: 0 });
    expect(seen["dev/console"]).toMatchObject({ mode: 0o020600, nlink: 1, rdevmajor: 5, rdevminor: 1, filesize: 0 });
    expect(seen["dev/vda"]).toMatchObject({ mode: 0o060660, rdevmajor: 253, rdevminor: 0 });
    expect(seen["bin"]).toMatchObject({ mode: 0o120777, filesize: "usr/bin".length });
    // implicit parents
    expect(seen["usr"]).toMatchObject({ mode: 0o040755, nlink: 2 });
    expect(seen["usr/lib/x86_64-linux-gnu"]).toMatchObject({ mode: 0o040755 });
    expect(seen["TRAILER!!!"]!.ino).toBe(0);
    const inos = Object.entries(seen)
      .filter(([n]) => n !== "TRAILER!!!")
      .map(([, h]) => h.ino)
      .sort((a, b) => a - b);
    expect(inos).toEqual(inos.map((_, i) => i + 1));
  });

  test("parents first, component-wise order, inodes follow order", () => {
    const { entries } = decodeNewc(
      archive([
        { kind: "file", path: "a-b", data: new Uint8Array(0) },
        { kind: "file", path: "a/b/c", data: new Uint8Array(0) },
        { kind: "file", path: "a.txt", data: new Uint8Array(0) },
        { kind: "dir", path: "a" },
        { kind: "file", path: "B", data: new Uint8Array(0) },
      ]),
    );
    expect(entries.map((e) => e.path)).toEqual(["B", "a", "a/b", "a/b/c", "a-b", "a.txt"]);
  });

  test("deterministic regardless of input order", () => {
    const a = archive(sample);
    const b = archive([...sample].reverse());
    const c = archive([sample[3]!, sample[0]!, sample[8]!, sample[5]!, sample[1]!, sample[7]!, sample[2]!, sample[6]!, sample[4]!]);
    expect(b).toEqual(a);
    expect(c).toEqual(a);
  });

  test("file contents are passed through without copying", () => {
    const big = new Uint8Array(1 << 20).fill(7);
    const parts = encodeNewc([{ kind: "file", path: "big", data: big }]);
    expect(parts.some((p) => p === big)).toBe(true);
  });

  test("duplicate paths are rejected, also across slash spellings", () => {
    expect(() =>
      encodeNewc([
        { kind: "file", path: "/etc/x", data: new Uint8Array(0) },
        { kind: "dir", path: "etc/x" },
      ]),
    ).toThrow('duplicate cpio path "/etc/x"');
  });

  test("explicit parent that is not a directory is rejected", () => {
    expect(() =>
      encodeNewc([
        { kind: "symlink", path: "/lib", target: "usr/lib" },
        { kind: "file", path: "/lib/libc.so.6", data: new Uint8Array(0) },
      ]),
    ).toThrow(/"\/lib" is not a directory/);
  });

  test("invalid input is rejected", () => {
    expect(() => encodeNewc([{ kind: "file", path: "../etc/passwd", data: new Uint8Array(0) }])).toThrow(CpioError);
    expect(() => encodeNewc([{ kind: "dir", path: "/" }])).toThrow(CpioError);
    expect(() => encodeNewc([{ kind: "file", path: "x", mode: 0o100644, data: new Uint8Array(0) }])).toThrow(/permission bits/);
    expect(() => encodeNewc([{ kind: "chardev", path: "x", major: -1, minor: 0 }])).toThrow(CpioError);
    expect(() => encodeNewc([{ kind: "symlink", path: "x", target: "" }])).toThrow(CpioError);
    expect(() => encodeNewc([{ kind: "file", path: "x/".repeat(2100) + "y", data: new Uint8Array(0) }])).toThrow(/too long/);
  });

  test("empty input is just a trailer", () => {
    const buf = archive([]);
    expect(buf.byteLength).toBe(124);
    expect(decodeNewc(buf)).toEqual({ entries: [], end: 124 });
  });
});

describe("decodeNewc", () => {
  test("round trip", () => {
    const buf = archive(sample);
    const { entries, end } = decodeNewc(buf);
    expect(end).toBe(buf.byteLength);
    const byPath = new Map(entries.map((e) => [e.path, e]));
    expect(byPath.get("init")).toEqual({ kind: "file", path: "init", mode: 0o755, data: enc.encode("#!/bin/sh\necho hi\n") });
    expect(byPath.get("dev")).toEqual({ kind: "dir", path: "dev", mode: 0o755 });
    expect(byPath.get("dev/console")).toEqual({ kind: "chardev", path: "dev/console", mode: 0o600, major: 5, minor: 1 });
    expect(byPath.get("dev/vda")).toEqual({ kind: "blockdev", path: "dev/vda", mode: 0o660, major: 253, minor: 0 });
    expect(byPath.get("bin")).toEqual({ kind: "symlink", path: "bin", target: "usr/bin" });
    expect(byPath.get("usr/lib/x86_64-linux-gnu/libc.so.6")).toMatchObject({ data: new Uint8Array([1, 2, 3, 4, 5]) });
    expect(byPath.get("usr/bin/empty")).toMatchObject({ kind: "file", mode: 0o644 });
    expect(byPath.get("sysroot")).toEqual({ kind: "dir", path: "sysroot", mode: 0o1777 });
    expect(entries.map((e) => e.path)).toEqual([
      "bin",
      "dev",
      "dev/console",
      "dev/vda",
      "init",
      "proc",
      "sysroot",
      "usr",
      "usr/bin",
      "usr/bin/empty",
      "usr/lib",
      "usr/lib/x86_64-linux-gnu",
      "usr/lib/x86_64-linux-gnu/libc.so.6",
    ]);
    // Re-encoding the decoded entries reproduces the archive exactly.
    expect(archive(entries)).toEqual(buf);
  });

  test("file data are views into the archive", () => {
    const buf = archive([{ kind: "file", path: "f", data: enc.encode("hello") }]);
    const e = decodeNewc(buf).entries[0]!;
    if (e.kind !== "file") throw new Error("expected file");
    expect(e.data.buffer).toBe(buf.buffer);
  });

  test("stops at the trailer; end points past its padding", () => {
    const one = archive([{ kind: "file", path: "a", data: enc.encode("1") }]);
    const two = archive([{ kind: "file", path: "b", data: enc.encode("22") }]);
    const joined = concat([one, new Uint8Array(512), two]);
    const first = decodeNewc(joined);
    expect(first.end).toBe(one.byteLength);
    expect(first.entries.map((e) => e.path)).toEqual(["a"]);
    // The kernel skips zero padding between concatenated archives; so can callers.
    let next = first.end;
    while (joined[next] === 0) next++;
    const second = decodeNewc(joined.subarray(next));
    expect(second.entries.map((e) => e.path)).toEqual(["b"]);
  });

  test("bad magic reports the offset", () => {
    const buf = archive([{ kind: "file", path: "a", data: enc.encode("abc") }]);
    const bad = buf.slice();
    bad[116 + 5] = 0x37; // second header's magic -> "070707" (odc)
    expect(() => decodeNewc(bad)).toThrow(CpioError);
    try {
      decodeNewc(bad);
    } catch (err) {
      expect(err).toBeInstanceOf(CpioError);
      expect((err as CpioError).offset).toBe(116);
      expect((err as CpioError).message).toContain("bad cpio magic");
      expect((err as CpioError).message).toContain("116");
    }
    expect(() => decodeNewc(enc.encode("not a cpio archive at all, definitely not one".repeat(4)))).toThrow(/bad cpio magic.*offset 0/);
  });

  test("truncation is reported with offset", () => {
    const buf = archive([{ kind: "file", path: "a", data: enc.encode("abcdefgh") }]);
    expect(() => decodeNewc(new Uint8Array(0))).toThrow(/truncated.*header.*offset 0/);
    expect(() => decodeNewc(buf.subarray(0, 50))).toThrow(/truncated.*header/);
    expect(() => decodeNewc(buf.subarray(0, 111))).toThrow(/truncated.*name.*offset 110/);
    expect(() => decodeNewc(buf.subarray(0, 115))).toThrow(/truncated.*data of "a".*offset 112/);
    // Missing trailer: ends cleanly after the first entry.
    expect(() => decodeNewc(buf.subarray(0, 120))).toThrow(/truncated.*header.*offset 120/);
  });

  test("malformed header fields", () => {
    const buf = archive([{ kind: "file", path: "a", data: enc.encode("x") }]);
    const badHex = buf.slice();
    badHex[6 + 8 * 6] = 0x67; // 'g' in filesize
    expect(() => decodeNewc(badHex)).toThrow(/bad hex digit.*filesize.*offset 54/);
    const noNul = buf.slice();
    noNul[111] = 0x62;
    expect(() => decodeNewc(noNul)).toThrow(/NUL-terminated/);
  });

  test("070702 archives are accepted and their checksum verified", () => {
    const buf = archive([{ kind: "file", path: "a", data: enc.encode("abc") }]);
    const crc = buf.slice();
    crc.set(enc.encode("070702"), 0);
    crc.set(enc.encode((0x61 + 0x62 + 0x63).toString(16).padStart(8, "0")), 102);
    crc.set(enc.encode("070702"), 116);
    expect(decodeNewc(crc).entries).toHaveLength(1);
    crc.set(enc.encode("00000001"), 102);
    expect(() => decodeNewc(crc)).toThrow(/checksum mismatch/);
  });
});

const haveCpio = existsSync("/usr/bin/cpio");
if (!haveCpio) console.warn("cpio.test.ts: /usr/bin/cpio not installed; skipping GNU cpio interoperability tests");

describe.skipIf(!haveCpio)("GNU cpio interoperability", () => {
  test("GNU cpio extracts our archive", () => {
    const dir = mkdtempSync(join(tmpdir(), "bunboot-cpio-"));
    try {
      const buf = archive(sample.filter((e) => e.kind !== "chardev" && e.kind !== "blockdev"));
      const out = join(dir, "root");
      mkdirSync(out);
      const r = spawnSync("/usr/bin/cpio", ["-idm", "--quiet", "--no-absolute-filenames"], { cwd: out, input: buf });
      expect(r.stderr.toString()).toBe("");
      expect(r.status).toBe(0);
      expect(readFileSync(join(out, "init"), "utf8")).toBe("#!/bin/sh\necho hi\n");
      expect(lstatSync(join(out, "init")).mode & 0o7777).toBe(0o755);
      expect(lstatSync(join(out, "init")).mtimeMs).toBe(0);
      expect(readlinkSync(join(out, "bin"))).toBe("usr/bin");
      expect(lstatSync(join(out, "bin")).isSymbolicLink()).toBe(true);
      expect(lstatSync(join(out, "proc")).isDirectory()).toBe(true);
      expect(lstatSync(join(out, "dev")).isDirectory()).toBe(true);
      expect(readFileSync(join(out, "usr/lib/x86_64-linux-gnu/libc.so.6"))).toEqual(Buffer.from([1, 2, 3, 4, 5]));
      expect(readFileSync(join(out, "usr/bin/empty")).byteLength).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("GNU cpio lists our device nodes", () => {
    const r = spawnSync("/usr/bin/cpio", ["-itv", "--quiet"], { input: archive(sample), env: { ...process.env, LC_ALL: "C", TZ: "UTC" } });
    expect(r.status).toBe(0);
    const lines = r.stdout.toString().trim().split("\n");
    const line = (name: string) => lines.find((l) => l.endsWith(` ${name}`) || l.includes(` ${name} -> `));
    expect(line("dev/console")).toMatch(/^crw-------\s+1\s+root\s+root\s+5,\s+1 .* dev\/console$/);
    expect(line("dev/vda")).toMatch(/^brw-rw----\s+1\s+root\s+root\s+253,\s+0 .* dev\/vda$/);
    expect(line("bin")).toMatch(/^lrwxrwxrwx .* bin -> usr\/bin$/);
    expect(line("sysroot")).toMatch(/^drwxrwxrwt\s+2 /);
    expect(lines).toHaveLength(13);
  });

  test("we decode an archive written by GNU cpio", () => {
    const dir = mkdtempSync(join(tmpdir(), "bunboot-cpio-"));
    try {
      mkdirSync(join(dir, "etc"));
      writeFileSync(join(dir, "etc/hostname"), "bunboot\n", { mode: 0o640 });
      writeFileSync(join(dir, "odd"), new Uint8Array([0, 1, 2, 3, 4, 5, 6]));
      symlinkSync("../odd", join(dir, "etc/link"));
      const r = spawnSync("/usr/bin/cpio", ["-o", "-H", "newc", "--quiet"], {
        cwd: dir,
        input: "etc\netc/hostname\netc/link\nodd\n",
      });
      expect(r.status).toBe(0);
      const gnu = new Uint8Array(r.stdout);
      expect(gnu.byteLength % 512).toBe(0);
      const { entries, end } = decodeNewc(gnu);
      expect(end).toBeLessThanOrEqual(gnu.byteLength);
      expect([...gnu.subarray(end)].every((b) => b === 0)).toBe(true);
      expect(entries.map((e) => [e.kind, e.path])).toEqual([
        ["dir", "etc"],
        ["file", "etc/hostname"],
        ["symlink", "etc/link"],
        ["file", "odd"],
      ]);
      expect(entries[1]).toMatchObject({ mode: 0o640 & ~process.umask() });
      expect(dec.decode((entries[1] as { data: Uint8Array }).data)).toBe("bunboot\n");
      expect(entries[2]).toEqual({ kind: "symlink", path: "etc/link", target: "../odd" });
      expect([...(entries[3] as { data: Uint8Array }).data]).toEqual([0, 1, 2, 3, 4, 5, 6]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("encodeNewc times", () => {
  test("every entry carries the one mtime given (SOURCE_DATE_EPOCH), 0 by default; the trailer carries 0", () => {
    const text = (mtime?: number) => new TextDecoder().decode(concat(encodeNewc([{ kind: "file", path: "a", data: new Uint8Array([1]) }, { kind: "dir", path: "d" }], mtime === undefined ? {} : { mtime })));
    // c_mtime follows the magic and five fields of 8 hex digits (ino, mode, uid, gid, nlink).
    const mtimes = (t: string) => [...t.matchAll(/070701(?:[0-9A-F]{8}){5}([0-9A-F]{8})/g)].map((m) => parseInt(m[1]!, 16));
    expect(mtimes(text())).toEqual([0, 0, 0]);
    expect(mtimes(text(1700000000))).toEqual([1700000000, 1700000000, 0]);
    expect(() => encodeNewc([], { mtime: 2 ** 32 })).toThrow(CpioError);
    expect(() => encodeNewc([], { mtime: -1 })).toThrow(CpioError);
  });
});
