import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, realpathSync, readdirSync } from "node:fs";
import { basename, posix } from "node:path";
import { EM_386, EM_AARCH64, EM_X86_64, ElfError, MissingLibraryError, isElf, parseElf, resolveClosure, stripUsr } from "./elf.ts";
import type { ElfHost, ElfInfo } from "./elf.ts";

// ---------------------------------------------------------------------------
// A minimal ELF writer: just the structures parseElf reads. The string table
// and dynamic section live in a second PT_LOAD whose vaddr-offset delta
// differs from the first, so DT_STRTAB must really be mapped through it.

interface Synth {
  cls: 32 | 64;
  le?: boolean;
  machine?: number;
  type?: number;
  interp?: string;
  needed?: string[];
  runpath?: string;
  rpath?: string;
  soname?: string;
  /** Omit PT_DYNAMIC entirely (static binary). */
  static?: boolean;
}

const enc = new TextEncoder();

function synthElf(o: Synth): Uint8Array {
  const is64 = o.cls === 64;
  const le = o.le ?? true;
  const ehsize = is64 ? 64 : 52;
  const phentsize = is64 ? 56 : 32;
  const dynent = is64 ? 16 : 8;
  const align = (n: number, a: number) => Math.ceil(n / a) * a;

  const strings: number[] = [0];
  const strOffsets = new Map<string, number>();
  const addStr = (s: string) => {
    if (!strOffsets.has(s)) {
      strOffsets.set(s, strings.length);
      strings.push(...enc.encode(s), 0);
    }
    return strOffsets.get(s)!;
  };
  const DT = { NULL: 0, NEEDED: 1, STRTAB: 5, STRSZ: 10, SONAME: 14, RPATH: 15, DEBUG: 21, RUNPATH: 29 };
  const dyn: [number, number][] = [];
  dyn.push([DT.DEBUG, 0]);
  for (const n of o.needed ?? []) dyn.push([DT.NEEDED, addStr(n)]);
  if (o.soname !== undefined) dyn.push([DT.SONAME, addStr(o.soname)]);
  if (o.runpath !== undefined) dyn.push([DT.RUNPATH, addStr(o.runpath)]);
  if (o.rpath !== undefined) dyn.push([DT.RPATH, addStr(o.rpath)]);
  const strtabVaddrSlot = dyn.push([DT.STRTAB, 0]) - 1;
  dyn.push([DT.STRSZ, strings.length]);
  dyn.push([DT.NULL, 0]);
  // Garbage after DT_NULL must be ignored.
  dyn.push([DT.NEEDED, addStr("libafter-null.so")]);

  const phdrCount = 3 + (o.interp !== undefined ? 1 : 0) + (o.static ? 0 : 1);
  const phoff = ehsize;
  const interpOff = phoff + phdrCount * phentsize;
  const interpBytes = o.interp !== undefined ? [...enc.encode(o.interp), 0] : [];
  const seg2Off = align(interpOff + interpBytes.length, 16);
  const strOff = seg2Off + 8; // some unrelated bytes before the string table
  const dynOff = align(strOff + strings.length, 8);
  const total = dynOff + dyn.length * dynent;

  const seg1Vaddr = 0x400000;
  const seg2Vaddr = 0x612340;
  dyn[strtabVaddrSlot]![1] = seg2Vaddr + (strOff - seg2Off);

  const buf = new Uint8Array(total);
  const v = new DataView(buf.buffer);
  const w16 = (at: number, x: number) => v.setUint16(at, x, le);
  const w32 = (at: number, x: number) => v.setUint32(at, x, le);
  const wWord = (at: number, x: number) => (is64 ? v.setBigUint64(at, BigInt(x), le) : v.setUint32(at, x, le));

  buf.set([0x7f, 0x45, 0x4c, 0x46, is64 ? 2 : 1, le ? 1 : 2, 1, 0], 0);
  w16(16, o.type ?? 3);
  w16(18, o.machine ?? (is64 ? EM_X86_64 : EM_386));
  w32(20, 1);
  wWord(24, 0x401000); // e_entry
  wWord(is64 ? 32 : 28, phoff);
  wWord(is64 ? 40 : 32, 0); // e_shoff
  w16(is64 ? 52 : 40, ehsize);
  w16(is64 ? 54 : 42, phentsize);
  w16(is64 ? 56 : 44, phdrCount);
  w16(is64 ? 58 : 46, is64 ? 64 : 40);

  let ph = phoff;
  const phdr = (type: number, offset: number, vaddr: number, filesz: number) => {
    w32(ph, type);
    if (is64) {
      w32(ph + 4, 4); // flags
      wWord(ph + 8, offset);
      wWord(ph + 16, vaddr);
      wWord(ph + 24, vaddr);
      wWord(ph + 32, filesz);
      wWord(ph + 40, filesz);
      wWord(ph + 48, 0x1000);
    } else {
      wWord(ph + 4, offset);
      wWord(ph + 8, vaddr);
      wWord(ph + 12, vaddr);
      wWord(ph + 16, filesz);
      wWord(ph + 20, filesz);
      w32(ph + 24, 4);
      wWord(ph + 28, 0x1000);
    }
    ph += phentsize;
  };
  phdr(6, phoff, seg1Vaddr + phoff, phdrCount * phentsize); // PT_PHDR
  if (o.interp !== undefined) phdr(3, interpOff, seg1Vaddr + interpOff, interpBytes.length);
  phdr(1, 0, seg1Vaddr, seg2Off);
  phdr(1, seg2Off, seg2Vaddr, total - seg2Off);
  if (!o.static) phdr(2, dynOff, seg2Vaddr + (dynOff - seg2Off), dyn.length * dynent);

  buf.set(interpBytes, interpOff);
  buf.fill(0xaa, seg2Off, strOff);
  buf.set(strings, strOff);
  dyn.forEach(([tag, val], i) => {
    const at = dynOff + i * dynent;
    wWord(at, tag);
    wWord(at + dynent / 2, val);
  });
  return buf;
}

// ---------------------------------------------------------------------------

describe("isElf", () => {
  test("checks the magic only", () => {
    expect(isElf(synthElf({ cls: 64 }))).toBe(true);
    expect(isElf(new Uint8Array([0x7f, 0x45, 0x4c, 0x46]))).toBe(true);
    expect(isElf(new Uint8Array([0x7f, 0x45, 0x4c]))).toBe(false);
    expect(isElf(enc.encode("#!/bin/sh\n"))).toBe(false);
    expect(isElf(new Uint8Array(0))).toBe(false);
  });
});

describe("parseElf on synthetic files", () => {
  const full = {
    interp: "/lib/ld-test.so.1",
    needed: ["libc.so.6", "libm.so.6", "libc.so.6"],
    runpath: "$ORIGIN/../lib::/opt/x",
    rpath: "/r1:/r2",
    soname: "libtest.so.3",
  };

  for (const cls of [32, 64] as const) {
    for (const le of [true, false]) {
      test(`ELF${cls} ${le ? "little" : "big"}-endian`, () => {
        const machine = le ? (cls === 64 ? EM_X86_64 : EM_386) : cls === 64 ? 21 /* PPC64 */ : 8; /* MIPS */
        const info = parseElf(synthElf({ cls, le, machine, type: 3, ...full }));
        expect(info).toEqual({
          class: cls,
          littleEndian: le,
          machine,
          type: 3,
          interpreter: "/lib/ld-test.so.1",
          needed: ["libc.so.6", "libm.so.6", "libc.so.6"],
          runpath: ["$ORIGIN/../lib", "/opt/x"],
          rpath: ["/r1", "/r2"],
          soname: "libtest.so.3",
        });
      });
    }
  }

  test("no interpreter, no soname", () => {
    const info = parseElf(synthElf({ cls: 64, type: 2, needed: ["libz.so.1"] }));
    expect(info.interpreter).toBeUndefined();
    expect(info.soname).toBeUndefined();
    expect(info.needed).toEqual(["libz.so.1"]);
    expect(info.type).toBe(2);
  });

  test("static binary", () => {
    const info = parseElf(synthElf({ cls: 64, type: 2, static: true }));
    expect(info).toEqual({ class: 64, littleEndian: true, machine: EM_X86_64, type: 2, needed: [], runpath: [], rpath: [] });
  });

  test("subarray views with a byte offset work", () => {
    const elf = synthElf({ cls: 32, le: false, needed: ["liba.so"], machine: 8 });
    const host = new Uint8Array(elf.byteLength + 3);
    host.set(elf, 3);
    expect(parseElf(host.subarray(3)).needed).toEqual(["liba.so"]);
  });

  test("not an ELF file", () => {
    expect(() => parseElf(enc.encode("#!/bin/sh\nexit 0\n"))).toThrow(ElfError);
    expect(() => parseElf(enc.encode("#!/bin/sh\nexit 0\n"))).toThrow(/not an ELF file/);
    expect(() => parseElf(new Uint8Array(0))).toThrow(/not an ELF file/);
  });

  test("bad class / data encoding", () => {
    const a = synthElf({ cls: 64 });
    a[4] = 3;
    expect(() => parseElf(a)).toThrow(/unsupported ELF class 3/);
    const b = synthElf({ cls: 64 });
    b[5] = 0;
    expect(() => parseElf(b)).toThrow(/unsupported ELF data encoding 0/);
  });

  test("truncation anywhere is an ElfError saying what was expected", () => {
    const elf = synthElf({ cls: 64, ...full });
    expect(() => parseElf(elf.subarray(0, 10))).toThrow(/truncated ELF: expected 16 bytes of e_ident/);
    expect(() => parseElf(elf.subarray(0, 40))).toThrow(/truncated ELF: expected 64 bytes of ELF header at offset 0, but the file is 40 bytes/);
    expect(() => parseElf(elf.subarray(0, 100))).toThrow(/truncated ELF: expected \d+ bytes of \d+ program headers at offset 64/);
    // Every prefix either parses identically (nothing past it is needed) or fails cleanly.
    for (let n = 0; n < elf.byteLength; n++) {
      try {
        parseElf(elf.subarray(0, n));
        throw new Error(`prefix of ${n} bytes unexpectedly parsed`);
      } catch (err) {
        expect(err).toBeInstanceOf(ElfError);
      }
    }
  });

  test("string table outside every PT_LOAD", () => {
    const elf = synthElf({ cls: 64, needed: ["liba.so"] });
    // Shrink the second PT_LOAD (4th phdr: PT_PHDR, LOAD, LOAD, DYNAMIC) to nothing.
    new DataView(elf.buffer).setBigUint64(64 + 2 * 56 + 32, 0n, true);
    expect(() => parseElf(elf)).toThrow(/DT_STRTAB address 0x[0-9a-f]+ is not inside any PT_LOAD/);
  });
});

// ---------------------------------------------------------------------------

const archTriplet = process.arch === "x64" ? "x86_64-linux-gnu" : process.arch === "arm64" ? "aarch64-linux-gnu" : undefined;
const libcPath = archTriplet && [`/usr/lib/${archTriplet}/libc.so.6`, `/lib/${archTriplet}/libc.so.6`].find((p) => existsSync(p));
const lsPath = ["/usr/bin/ls", "/bin/ls"].find((p) => existsSync(p));
const haveGlibcSystem = libcPath !== undefined && lsPath !== undefined;
if (!haveGlibcSystem) console.warn("elf.test.ts: no glibc multiarch system found; skipping tests against real binaries");

const expectedInterp = process.arch === "x64" ? "/lib64/ld-linux-x86-64.so.2" : "/lib/ld-linux-aarch64.so.1";
const expectedMachine = process.arch === "x64" ? EM_X86_64 : EM_AARCH64;

describe.skipIf(!haveGlibcSystem)("parseElf on system files", () => {
  test("ls", () => {
    const info = parseElf(readFileSync(lsPath!));
    expect(info.class).toBe(64);
    expect(info.littleEndian).toBe(true);
    expect(info.machine).toBe(expectedMachine);
    expect([2, 3]).toContain(info.type);
    expect(info.interpreter).toBe(expectedInterp);
    expect(info.needed).toContain("libc.so.6");
    expect(info.soname).toBeUndefined();
  });

  test("libc.so.6", () => {
    const info = parseElf(readFileSync(libcPath!));
    expect(info.type).toBe(3);
    expect(info.soname).toBe("libc.so.6");
    expect(info.needed).toEqual([basename(expectedInterp)]);
  });

  const readelf = "/usr/bin/readelf";
  test.skipIf(!existsSync(readelf))("agrees with readelf on every library in the libc directory", () => {
    const dir = posix.dirname(libcPath!);
    const files = readdirSync(dir)
      .filter((f) => /\.so(\.|$)/.test(f))
      .map((f) => posix.join(dir, f))
      .filter((p) => {
        try {
          return isElf(readFileSync(p).subarray(0, 4));
        } catch {
          return false;
        }
      })
      .slice(0, 25);
    expect(files.length).toBeGreaterThan(3);
    for (const file of files) {
      const out = spawnSync(readelf, ["-dlW", file], { env: { ...process.env, LC_ALL: "C" } }).stdout.toString();
      const tag = (t: string) => [...out.matchAll(new RegExp(`\\(${t}\\)\\s+[^\\[]*\\[([^\\]]*)\\]`, "g"))].map((m) => m[1]!);
      const interp = /\[Requesting program interpreter: ([^\]]+)\]/.exec(out)?.[1];
      const info = parseElf(readFileSync(file));
      expect({ file, needed: info.needed, soname: info.soname, runpath: info.runpath, rpath: info.rpath, interp: info.interpreter }).toEqual({
        file,
        needed: tag("NEEDED"),
        soname: tag("SONAME")[0],
        runpath: tag("RUNPATH").flatMap((s) => s.split(":").filter(Boolean)),
        rpath: tag("RPATH").flatMap((s) => s.split(":").filter(Boolean)),
        interp,
      });
    }
  });
});

// ---------------------------------------------------------------------------

class FakeHost implements ElfHost {
  files = new Map<string, Uint8Array>();
  links = new Map<string, string>();
  reads: string[] = [];
  add(path: string, o: Synth | Uint8Array): this {
    this.files.set(path, o instanceof Uint8Array ? o : synthElf(o));
    return this;
  }
  link(path: string, target: string): this {
    this.links.set(path, target);
    return this;
  }
  realpath(path: string): string | null {
    // Resolve symlinks component by component, like the kernel would.
    const todo = posix.normalize(path).split("/").filter(Boolean);
    let cur = "/";
    for (let hops = 0; todo.length > 0; ) {
      const next = posix.join(cur, todo.shift()!);
      const t = this.links.get(next);
      if (t === undefined) {
        cur = next;
        continue;
      }
      if (++hops > 40) return null;
      todo.unshift(...t.split("/").filter(Boolean));
      if (t.startsWith("/")) cur = "/";
    }
    return this.files.has(cur) ? cur : null;
  }
  readFile(path: string): Uint8Array | null {
    this.reads.push(path);
    const p = this.realpath(path);
    return p === null ? null : this.files.get(p)!;
  }
}

const LD64 = "/lib64/ld-linux-x86-64.so.2";
const MA = "/usr/lib/x86_64-linux-gnu";

function glibcHost(): FakeHost {
  return new FakeHost()
    .add(`${MA}/ld-linux-x86-64.so.2`, { cls: 64, soname: "ld-linux-x86-64.so.2" })
    .link(LD64, `${MA}/ld-linux-x86-64.so.2`)
    .add(`${MA}/libc.so.6`, { cls: 64, soname: "libc.so.6", needed: ["ld-linux-x86-64.so.2"], interp: LD64 })
    .link("/lib", "usr/lib");
}

const app = (o: Partial<Synth> = {}): Synth => ({ cls: 64, type: 3, interp: LD64, ...o });

describe("resolveClosure with a fake host", () => {
  test("aarch64: the arm64 loader and libraries from the aarch64 multiarch dirs, x86-64 twins skipped; a binary of the wrong machine is named", () => {
    const AMA = "/usr/lib/aarch64-linux-gnu";
    const arm = { cls: 64 as const, machine: EM_AARCH64 };
    const host = new FakeHost()
      .add("/bin/kmod", { ...arm, interp: "/lib/ld-linux-aarch64.so.1", needed: ["libzstd.so.1", "libc.so.6"] })
      .add("/usr/lib/ld-linux-aarch64.so.1", { ...arm, soname: "ld-linux-aarch64.so.1" })
      .link("/lib", "usr/lib")
      // An x86-64 libzstd earlier in the search order is skipped, like ld.so does.
      .add("/usr/lib64/libzstd.so.1", { cls: 64, soname: "libzstd.so.1" })
      .add(`${AMA}/libzstd.so.1`, { ...arm, soname: "libzstd.so.1", needed: ["libc.so.6"] })
      .add(`${AMA}/libc.so.6`, { ...arm, soname: "libc.so.6", needed: ["ld-linux-aarch64.so.1"] });
    const dirs = ["/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"];
    const r = resolveClosure(["/bin/kmod"], host, { searchDirs: ["/usr/lib64", ...dirs], machine: EM_AARCH64 });
    expect(r).toEqual({
      libs: [
        { name: "libc.so.6", hostPath: `${AMA}/libc.so.6`, initrdPath: "/lib/aarch64-linux-gnu/libc.so.6" },
        { name: "libzstd.so.1", hostPath: `${AMA}/libzstd.so.1`, initrdPath: "/lib/aarch64-linux-gnu/libzstd.so.1" },
      ],
      interpreters: ["/lib/ld-linux-aarch64.so.1"],
    });
    expect(() => resolveClosure(["/bin/kmod"], host, { searchDirs: dirs, machine: EM_X86_64 })).toThrow("/bin/kmod is a aarch64 binary, but the initrd is for x86-64");
  });

  test("basic closure on a merged-/usr system", () => {
    const host = glibcHost()
      .add("/usr/bin/app", app({ needed: ["libfoo.so.1", "libc.so.6"] }))
      .add(`${MA}/libfoo.so.1.2.3`, { cls: 64, soname: "libfoo.so.1", needed: ["libc.so.6"] })
      .link(`${MA}/libfoo.so.1`, "libfoo.so.1.2.3");
    const r = resolveClosure(["/usr/bin/app"], host);
    expect(r).toEqual({
      libs: [
        // Found via /lib/x86_64-linux-gnu (first default dir), canonicalised on the host.
        { name: "libc.so.6", hostPath: `${MA}/libc.so.6`, initrdPath: "/lib/x86_64-linux-gnu/libc.so.6" },
        { name: "libfoo.so.1", hostPath: `${MA}/libfoo.so.1.2.3`, initrdPath: "/lib/x86_64-linux-gnu/libfoo.so.1" },
      ],
      // libc's DT_NEEDED on the loader is satisfied by the interpreter itself.
      interpreters: [LD64],
    });
  });

  test("initrdPath drops a leading /usr of the directory searched", () => {
    const host = new FakeHost()
      .add("/bin/app", app({ interp: undefined, needed: ["libx.so"] }))
      .add("/usr/lib64/libx.so", { cls: 64 });
    expect(resolveClosure(["/bin/app"], host).libs).toEqual([{ name: "libx.so", hostPath: "/usr/lib64/libx.so", initrdPath: "/lib64/libx.so" }]);
    expect(stripUsr("/usr/lib/x")).toBe("/lib/x");
    expect(stripUsr("/usr")).toBe("/");
    expect(stripUsr("/usrlocal/lib")).toBe("/usrlocal/lib");
    expect(stripUsr("/lib/x")).toBe("/lib/x");
  });

  test("RUNPATH with $ORIGIN, not inherited by dependencies", () => {
    const host = glibcHost()
      .add("/opt/app/bin/app", app({ needed: ["libbar.so"], runpath: "$ORIGIN/../lib" }))
      .add("/opt/app/lib/libbar.so", { cls: 64, needed: ["libbaz.so", "libc.so.6"], runpath: "${ORIGIN}" })
      .add("/opt/app/lib/libbaz.so", { cls: 64, needed: ["libqux.so"] })
      .add("/opt/app/lib/libqux.so", { cls: 64 });
    // libbaz has no RUNPATH of its own, and the binary's RUNPATH does not apply to it.
    expect(() => resolveClosure(["/opt/app/bin/app"], host)).toThrow(MissingLibraryError);
    try {
      resolveClosure(["/opt/app/bin/app"], host);
    } catch (err) {
      const e = err as MissingLibraryError;
      expect(e.library).toBe("libqux.so");
      expect(e.neededBy).toBe("/opt/app/lib/libbaz.so");
      expect(e.binary).toBe("/opt/app/bin/app");
      expect(e.message).toBe(
        "library libqux.so needed by /opt/app/lib/libbaz.so (loaded for /opt/app/bin/app) not found; searched: " +
          "/lib/x86_64-linux-gnu, /usr/lib/x86_64-linux-gnu, /lib/aarch64-linux-gnu, /usr/lib/aarch64-linux-gnu, /lib64, /usr/lib64, /lib, /usr/lib",
      );
    }
    host.add("/opt/app/lib/libbaz.so", { cls: 64, needed: ["libqux.so"], runpath: "$ORIGIN" });
    expect(resolveClosure(["/opt/app/bin/app"], host)).toEqual({
      libs: [
        { name: "libc.so.6", hostPath: `${MA}/libc.so.6`, initrdPath: "/lib/x86_64-linux-gnu/libc.so.6" },
        { name: "libbar.so", hostPath: "/opt/app/lib/libbar.so", initrdPath: "/opt/app/lib/libbar.so" },
        { name: "libbaz.so", hostPath: "/opt/app/lib/libbaz.so", initrdPath: "/opt/app/lib/libbaz.so" },
        { name: "libqux.so", hostPath: "/opt/app/lib/libqux.so", initrdPath: "/opt/app/lib/libqux.so" },
      ],
      interpreters: [LD64],
    });
  });

  test("$ORIGIN hits land relative to where the object will be in the initrd", () => {
    const host = new FakeHost()
      .add("/usr/bin/tool", app({ interp: undefined, needed: ["libt.so"], runpath: "$ORIGIN/../lib/tool" }))
      .add("/usr/lib/tool/libt.so", { cls: 64 });
    expect(resolveClosure(["/usr/bin/tool"], host).libs).toEqual([{ name: "libt.so", hostPath: "/usr/lib/tool/libt.so", initrdPath: "/lib/tool/libt.so" }]);
    expect(resolveClosure(["/usr/bin/tool"], host, { binaryInitrdPath: (p) => p }).libs).toEqual([
      { name: "libt.so", hostPath: "/usr/lib/tool/libt.so", initrdPath: "/usr/lib/tool/libt.so" },
    ]);
  });

  test("absolute RPATH/RUNPATH hits keep their exact directory (the loader looks there)", () => {
    const host = new FakeHost()
      .add("/usr/bin/a", app({ interp: undefined, needed: ["libp.so"], runpath: "/usr/lib/private" }))
      .add("/usr/lib/private/libp.so", { cls: 64 });
    expect(resolveClosure(["/usr/bin/a"], host).libs[0]!.initrdPath).toBe("/usr/lib/private/libp.so");
  });

  test("RPATH: searched before default dirs and inherited down the loader chain", () => {
    const host = new FakeHost()
      .add("/bin/app", app({ interp: undefined, needed: ["liba.so"], rpath: "/opt/r" }))
      .add("/opt/r/liba.so", { cls: 64, needed: ["libb.so", "libz.so.1"] })
      .add("/opt/r/libb.so", { cls: 64 })
      .add("/opt/r/libz.so.1", { cls: 64 })
      .add("/lib/libz.so.1", { cls: 64 });
    expect(resolveClosure(["/bin/app"], host).libs.map((l) => l.initrdPath)).toEqual(["/opt/r/liba.so", "/opt/r/libb.so", "/opt/r/libz.so.1"]);
  });

  test("RPATH is ignored when RUNPATH is present, also for inherited RPATH", () => {
    const host = new FakeHost()
      .add("/bin/app", app({ interp: undefined, needed: ["libx.so", "liby.so"], rpath: "/opt/r", runpath: "/opt/q" }))
      .add("/opt/r/libx.so", { cls: 64 })
      .add("/opt/q/libx.so", { cls: 64 })
      .add("/opt/q/liby.so", { cls: 64, needed: ["libw.so"], runpath: "/opt/none" })
      .add("/opt/r/libw.so", { cls: 64 })
      .add("/lib/libw.so", { cls: 64 });
    expect(resolveClosure(["/bin/app"], host).libs.map((l) => l.initrdPath)).toEqual(["/lib/libw.so", "/opt/q/libx.so", "/opt/q/liby.so"]);

    // Without RUNPATH on the binary its RPATH reaches libw through liby,
    // even though liby (having RUNPATH) contributes no RPATH of its own.
    host.add("/bin/app", app({ interp: undefined, needed: ["liby.so"], rpath: "/opt/r:/opt/q" }));
    host.add("/opt/q/liby.so", { cls: 64, needed: ["libv.so"], runpath: "/opt/none" });
    host.add("/opt/none/libv.so", { cls: 64, needed: ["libw.so"] });
    expect(resolveClosure(["/bin/app"], host).libs.map((l) => l.initrdPath)).toEqual(["/opt/none/libv.so", "/opt/q/liby.so", "/opt/r/libw.so"]);
  });

  test("candidates for another class, machine or endianness (or not ELF) are skipped", () => {
    const host = new FakeHost()
      .add("/bin/app", app({ interp: undefined, needed: ["libm.so.6"] }))
      .add("/lib/x86_64-linux-gnu/libm.so.6", { cls: 32, machine: EM_386 })
      .add("/usr/lib/x86_64-linux-gnu/libm.so.6", enc.encode("/* GNU ld script */\nGROUP ( libm.so.6 )\n"))
      .add("/lib/aarch64-linux-gnu/libm.so.6", { cls: 64, machine: EM_AARCH64 })
      .add("/usr/lib/aarch64-linux-gnu/libm.so.6", { cls: 64, le: false })
      .add("/lib64/libm.so.6", { cls: 64 });
    expect(resolveClosure(["/bin/app"], host).libs).toEqual([{ name: "libm.so.6", hostPath: "/lib64/libm.so.6", initrdPath: "/lib64/libm.so.6" }]);
  });

  test("32-bit and 64-bit binaries side by side", () => {
    const host = glibcHost()
      .add("/usr/bin/app64", app({ needed: ["libc.so.6"] }))
      .add("/usr/bin/app32", { cls: 32, interp: "/lib/ld-linux.so.2", needed: ["libc.so.6"] })
      .add("/usr/lib/i386-linux-gnu/ld-linux.so.2", { cls: 32, soname: "ld-linux.so.2" })
      .link("/usr/lib/ld-linux.so.2", "i386-linux-gnu/ld-linux.so.2")
      .add("/usr/lib/i386-linux-gnu/libc.so.6", { cls: 32, soname: "libc.so.6", needed: ["ld-linux.so.2"] });
    const r = resolveClosure(["/usr/bin/app64", "/usr/bin/app32"], host, {
      searchDirs: ["/usr/lib/x86_64-linux-gnu", "/usr/lib/i386-linux-gnu"],
    });
    expect(r).toEqual({
      libs: [
        { name: "libc.so.6", hostPath: "/usr/lib/i386-linux-gnu/libc.so.6", initrdPath: "/lib/i386-linux-gnu/libc.so.6" },
        { name: "libc.so.6", hostPath: `${MA}/libc.so.6`, initrdPath: "/lib/x86_64-linux-gnu/libc.so.6" },
      ],
      interpreters: ["/lib/ld-linux.so.2", LD64],
    });
  });

  test("missing library directly needed by a binary", () => {
    const host = glibcHost().add("/usr/bin/app", app({ needed: ["libc.so.6", "libnope.so.9"], runpath: "$ORIGIN/../lib/app" }));
    expect(() => resolveClosure(["/usr/bin/app"], host, { searchDirs: [MA, "/usr/lib/"] })).toThrow(
      `library libnope.so.9 needed by /usr/bin/app not found; searched: /usr/lib/app, ${MA}, /usr/lib`,
    );
  });

  test("deduplication, cycles, per-binary isolation and sorted output", () => {
    const host = glibcHost()
      .add("/usr/bin/b", app({ needed: ["libz.so.1", "libc.so.6"] }))
      .add("/usr/bin/a", app({ needed: ["libz.so.1", "liba.so"], rpath: "/opt/a" }))
      .add("/opt/a/libz.so.1", { cls: 64 })
      .add(`${MA}/libz.so.1`, { cls: 64, needed: ["libc.so.6"] })
      .add(`${MA}/liba.so`, { cls: 64, needed: ["libb.so"] })
      .add(`${MA}/libb.so`, { cls: 64, needed: ["liba.so", "libc.so.6"] });
    const r = resolveClosure(["/usr/bin/b", "/usr/bin/a", "/usr/bin/b"], host);
    expect(r.libs.map((l) => l.initrdPath)).toEqual([
      "/lib/x86_64-linux-gnu/liba.so",
      "/lib/x86_64-linux-gnu/libb.so",
      "/lib/x86_64-linux-gnu/libc.so.6",
      "/lib/x86_64-linux-gnu/libz.so.1",
      "/opt/a/libz.so.1",
    ]);
    expect(r.interpreters).toEqual([LD64]);
    // Order of binaries does not matter.
    expect(resolveClosure(["/usr/bin/a", "/usr/bin/b"], host)).toEqual(r);
  });

  test("a name already loaded by SONAME is not searched again", () => {
    const host = new FakeHost()
      .add("/bin/app", app({ interp: undefined, needed: ["libfoo.so", "libbar.so"], rpath: "/opt/f" }))
      .add("/opt/f/libfoo.so", { cls: 64, soname: "libfoo.so.1" })
      .add("/lib/libbar.so", { cls: 64, needed: ["libfoo.so.1"] })
      .add("/lib/libfoo.so.1", { cls: 64, soname: "libfoo.so.1" });
    expect(resolveClosure(["/bin/app"], host).libs.map((l) => l.initrdPath)).toEqual(["/lib/libbar.so", "/opt/f/libfoo.so"]);
  });

  test("static binaries need nothing", () => {
    const host = new FakeHost().add("/bin/busybox", { cls: 64, type: 2, static: true });
    expect(resolveClosure(["/bin/busybox"], host)).toEqual({ libs: [], interpreters: [] });
  });

  test("unreadable or non-ELF binaries and missing interpreters are errors naming the path", () => {
    const host = new FakeHost().add("/bin/script", enc.encode("#!/bin/sh\n")).add("/bin/app", app({ needed: [] }));
    expect(() => resolveClosure(["/bin/none"], host)).toThrow("binary /bin/none not found");
    expect(() => resolveClosure(["/bin/script"], host)).toThrow("/bin/script: not an ELF file");
    expect(() => resolveClosure(["/bin/app"], host)).toThrow(`interpreter of /bin/app: ${LD64} not found`);
  });
});

// ---------------------------------------------------------------------------

const realHost: ElfHost = {
  readFile(path) {
    try {
      return readFileSync(path);
    } catch {
      return null;
    }
  },
  realpath(path) {
    try {
      return realpathSync(path);
    } catch {
      return null;
    }
  },
};

const haveLdd = existsSync("/usr/bin/ldd");

function lddDeps(binary: string): Map<string, string> {
  const r = spawnSync("/usr/bin/ldd", [binary], { env: { ...process.env, LC_ALL: "C" } });
  expect(r.status).toBe(0);
  const deps = new Map<string, string>();
  for (const line of r.stdout.toString().split("\n")) {
    const arrow = /^\s*(\S+) => (\S+) \(/.exec(line);
    if (arrow) {
      deps.set(arrow[1]!, arrow[2]!);
      continue;
    }
    const bare = /^\s*(\/\S+) \(/.exec(line);
    if (bare) deps.set(basename(bare[1]!), bare[1]!); // the interpreter; linux-vdso has no path
  }
  return deps;
}

describe.skipIf(!haveGlibcSystem || !haveLdd)("resolveClosure against ldd", () => {
  const binaries = [lsPath!, "/usr/bin/curl", "/usr/bin/ssh", "/usr/bin/git", "/usr/bin/perl", "/usr/bin/cpio"].filter((b) => existsSync(b));
  for (const binary of binaries) {
    test(binary, () => {
      const expected = lddDeps(binary);
      const r = resolveClosure([binary], realHost);
      const ours = new Map<string, string>();
      for (const l of r.libs) ours.set(l.name, l.hostPath);
      for (const i of r.interpreters) ours.set(basename(i), realpathSync(i));
      expect([...ours.keys()].sort()).toEqual([...expected.keys()].sort());
      for (const [name, path] of expected) expect({ name, path: ours.get(name) }).toEqual({ name, path: realpathSync(path) });
      expect(r.interpreters).toEqual([expectedInterp]);
      for (const l of r.libs) expect(l.initrdPath.startsWith("/usr/")).toBe(false);
    });
  }
});
