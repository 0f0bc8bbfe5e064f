// Just enough ELF to find what a binary needs at run time, without ldd:
// ldd executes the target's loader, which is wrong (and often impossible) for
// a foreign root or another architecture. Pure: file access is injected.

import { posix } from "node:path";
import { messageOf } from "../errors.ts";

export interface ElfInfo {
  class: 32 | 64;
  littleEndian: boolean;
  machine: number;
  type: number;
  interpreter?: string;
  needed: string[];
  runpath: string[];
  rpath: string[];
  soname?: string;
}

export class ElfError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ElfError";
  }
}

export class MissingLibraryError extends Error {
  readonly library: string;
  readonly neededBy: string;
  readonly binary: string;
  readonly searched: string[];
  constructor(library: string, neededBy: string, binary: string, searched: string[]) {
    const via = neededBy === binary ? "" : ` (loaded for ${binary})`;
    super(
      `library ${library} needed by ${neededBy}${via} not found; searched: ${searched.length > 0 ? searched.join(", ") : "(no directories)"}`,
    );
    this.name = "MissingLibraryError";
    this.library = library;
    this.neededBy = neededBy;
    this.binary = binary;
    this.searched = searched;
  }
}

export const ET_EXEC = 2;
export const ET_DYN = 3;
export const EM_386 = 3;
export const EM_ARM = 40;
export const EM_X86_64 = 62;
export const EM_AARCH64 = 183;
export const EM_RISCV = 243;

const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const PT_INTERP = 3;
const PN_XNUM = 0xffff;

const DT_NULL = 0n;
const DT_NEEDED = 1n;
const DT_STRTAB = 5n;
const DT_STRSZ = 10n;
const DT_SONAME = 14n;
const DT_RPATH = 15n;
const DT_RUNPATH = 29n;

export function isElf(buf: Uint8Array): boolean {
  return buf.byteLength >= 4 && buf[0] === 0x7f && buf[1] === 0x45 && buf[2] === 0x4c && buf[3] === 0x46;
}

class Reader {
  private readonly view: DataView;
  constructor(
    readonly buf: Uint8Array,
    readonly is64: boolean,
    readonly le: boolean,
  ) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  need(off: number, len: number, what: string): void {
    if (!Number.isSafeInteger(off) || off < 0 || off + len > this.buf.byteLength)
      throw new ElfError(
        `truncated ELF: expected ${len} bytes of ${what} at offset ${off}, but the file is ${this.buf.byteLength} bytes`,
      );
  }
  u16(off: number, what: string): number {
    this.need(off, 2, what);
    return this.view.getUint16(off, this.le);
  }
  u32(off: number, what: string): number {
    this.need(off, 4, what);
    return this.view.getUint32(off, this.le);
  }
  /** An address/offset/size: 4 bytes in ELF32, 8 in ELF64. */
  word(off: number, what: string): number {
    if (!this.is64) return this.u32(off, what);
    this.need(off, 8, what);
    const v = this.view.getBigUint64(off, this.le);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ElfError(`${what} at offset ${off} is out of range (${v})`);
    return Number(v);
  }
  /** Raw 32/64-bit value (dynamic tags may legitimately use the whole range). */
  big(off: number, what: string): bigint {
    if (!this.is64) return BigInt(this.u32(off, what));
    this.need(off, 8, what);
    return this.view.getBigUint64(off, this.le);
  }
}

interface Phdr {
  type: number;
  offset: number;
  vaddr: number;
  filesz: number;
}

const latin1 = new TextDecoder("latin1");
const utf8 = new TextDecoder("utf-8");
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

function cString(buf: Uint8Array, start: number, limit: number, what: string): string {
  if (start < 0 || start >= limit) throw new ElfError(`${what} at offset ${start} lies outside its table`);
  const nul = buf.indexOf(0, start);
  if (nul === -1 || nul >= limit) throw new ElfError(`truncated ELF: ${what} at offset ${start} is not NUL-terminated`);
  const bytes = buf.subarray(start, nul);
  // Library names are ASCII in practice; latin1 keeps odd bytes lossless-ish
  // when they are not valid UTF-8.
  try {
    return strictUtf8.decode(bytes);
  } catch {
    return latin1.decode(bytes);
  }
}

function splitPathList(s: string): string[] {
  return s.split(":").filter((p) => p !== "");
}

export function parseElf(buf: Uint8Array): ElfInfo {
  if (!isElf(buf)) throw new ElfError("not an ELF file (missing \\x7fELF magic)");
  if (buf.byteLength < 16) throw new ElfError(`truncated ELF: expected 16 bytes of e_ident, but the file is ${buf.byteLength} bytes`);
  const cls = buf[4];
  if (cls !== 1 && cls !== 2) throw new ElfError(`unsupported ELF class ${cls} (expected 1 for ELF32 or 2 for ELF64)`);
  const data = buf[5];
  if (data !== 1 && data !== 2) throw new ElfError(`unsupported ELF data encoding ${data} (expected 1 for LSB or 2 for MSB)`);
  const is64 = cls === 2;
  const r = new Reader(buf, is64, data === 1);

  const ehsize = is64 ? 64 : 52;
  r.need(0, ehsize, "ELF header");
  const type = r.u16(16, "e_type");
  const machine = r.u16(18, "e_machine");
  const phoff = r.word(is64 ? 32 : 28, "e_phoff");
  const shoff = r.word(is64 ? 40 : 32, "e_shoff");
  const phentsize = r.u16(is64 ? 54 : 42, "e_phentsize");
  let phnum = r.u16(is64 ? 56 : 44, "e_phnum");
  const minPhent = is64 ? 56 : 32;

  if (phnum === PN_XNUM) {
    // Too many program headers for e_phnum: the real count is sh_info of section 0.
    if (shoff === 0) throw new ElfError("e_phnum is PN_XNUM but there is no section header table");
    phnum = r.u32(shoff + (is64 ? 44 : 28), "sh_info of section 0 (program header count)");
  }

  const phdrs: Phdr[] = [];
  if (phnum > 0) {
    if (phentsize < minPhent) throw new ElfError(`e_phentsize ${phentsize} is smaller than the ${minPhent} bytes of a program header`);
    r.need(phoff, phnum * phentsize, `${phnum} program headers`);
    for (let i = 0; i < phnum; i++) {
      const at = phoff + i * phentsize;
      const what = `program header ${i}`;
      phdrs.push(
        is64
          ? { type: r.u32(at, what), offset: r.word(at + 8, what), vaddr: r.word(at + 16, what), filesz: r.word(at + 32, what) }
          : { type: r.u32(at, what), offset: r.word(at + 4, what), vaddr: r.word(at + 8, what), filesz: r.word(at + 16, what) },
      );
    }
  }

  const info: ElfInfo = { class: is64 ? 64 : 32, littleEndian: r.le, machine, type, needed: [], runpath: [], rpath: [] };

  const interp = phdrs.find((p) => p.type === PT_INTERP);
  if (interp) {
    r.need(interp.offset, interp.filesz, "PT_INTERP");
    const bytes = buf.subarray(interp.offset, interp.offset + interp.filesz);
    const nul = bytes.indexOf(0);
    info.interpreter = utf8.decode(nul === -1 ? bytes : bytes.subarray(0, nul));
  }

  const dyn = phdrs.find((p) => p.type === PT_DYNAMIC);
  if (!dyn) return info;

  const entsize = is64 ? 16 : 8;
  r.need(dyn.offset, dyn.filesz, "PT_DYNAMIC");
  const needed: bigint[] = [];
  const runpath: bigint[] = [];
  const rpath: bigint[] = [];
  let soname: bigint | undefined;
  let strtab: number | undefined;
  let strsz: number | undefined;
  for (let at = dyn.offset; at + entsize <= dyn.offset + dyn.filesz; at += entsize) {
    const tag = r.big(at, "d_tag");
    const val = r.big(at + entsize / 2, "d_val");
    if (tag === DT_NULL) break;
    if (tag === DT_NEEDED) needed.push(val);
    else if (tag === DT_RUNPATH) runpath.push(val);
    else if (tag === DT_RPATH) rpath.push(val);
    else if (tag === DT_SONAME) soname = val;
    else if (tag === DT_STRTAB) strtab = r.word(at + entsize / 2, "DT_STRTAB");
    else if (tag === DT_STRSZ) strsz = r.word(at + entsize / 2, "DT_STRSZ");
  }
  if (needed.length + runpath.length + rpath.length === 0 && soname === undefined) return info;
  if (strtab === undefined) throw new ElfError("dynamic section references strings but has no DT_STRTAB");

  // DT_STRTAB is a run-time address; find the file bytes that get mapped there.
  const vaddr = strtab;
  const seg = phdrs.find((p) => p.type === PT_LOAD && vaddr >= p.vaddr && vaddr < p.vaddr + p.filesz);
  if (!seg) throw new ElfError(`DT_STRTAB address 0x${vaddr.toString(16)} is not inside any PT_LOAD segment's file contents`);
  const strOff = seg.offset + (vaddr - seg.vaddr);
  const segEnd = seg.offset + seg.filesz;
  const limit = Math.min(buf.byteLength, strsz === undefined ? segEnd : Math.min(segEnd, strOff + strsz));
  if (strOff >= buf.byteLength) r.need(strOff, 1, "string table");

  const str = (v: bigint, what: string): string => {
    if (v >= BigInt(limit - strOff)) throw new ElfError(`${what} string offset ${v} lies outside the string table`);
    return cString(buf, strOff + Number(v), limit, what);
  };
  info.needed = needed.map((v) => str(v, "DT_NEEDED"));
  info.runpath = runpath.flatMap((v) => splitPathList(str(v, "DT_RUNPATH")));
  info.rpath = rpath.flatMap((v) => splitPathList(str(v, "DT_RPATH")));
  if (soname !== undefined) info.soname = str(soname, "DT_SONAME");
  return info;
}

export interface ElfHost {
  readFile(path: string): Uint8Array | null;
  realpath(path: string): string | null;
}

export interface ResolvedLib {
  /** The DT_NEEDED name that led to this file. */
  name: string;
  /** Canonical host path to copy the contents from. */
  hostPath: string;
  /** Where the loader inside the initrd will look for it. */
  initrdPath: string;
}

export const DEFAULT_SEARCH_DIRS: readonly string[] = [
  "/lib/x86_64-linux-gnu",
  "/usr/lib/x86_64-linux-gnu",
  "/lib/aarch64-linux-gnu",
  "/usr/lib/aarch64-linux-gnu",
  "/lib64",
  "/usr/lib64",
  "/lib",
  "/usr/lib",
];

/** /usr/lib/x -> /lib/x: the initrd has no separate /usr, and the loader's default dirs include the /lib twins. */
export function stripUsr(path: string): string {
  if (path === "/usr") return "/";
  return path.startsWith("/usr/") ? path.slice(4) : path;
}

export interface ResolveOptions {
  /** Default library directories, searched after DT_RPATH/DT_RUNPATH. */
  searchDirs?: string[];
  /**
   * Where a binary will live in the initrd; only matters for resolving
   * $ORIGIN-relative DT_RPATH/DT_RUNPATH of the binary itself. Defaults to
   * the binary's path with a leading /usr removed, like libraries.
   */
  binaryInitrdPath?: (binary: string) => string;
  /**
   * ELF e_machine every binary must have (EM_X86_64, EM_AARCH64): a binary
   * of another architecture is an error naming it, instead of an initrd
   * whose init cannot run.
   */
  machine?: number;
}

const MACHINE_NAMES: Readonly<Record<number, string>> = { 3: "i386", 40: "arm", 62: "x86-64", 183: "aarch64", 243: "riscv" };
export function machineName(machine: number): string {
  return MACHINE_NAMES[machine] ?? `e_machine ${machine}`;
}

/** A directory to look in: where it is on the host and what it will be in the initrd. */
interface SearchDir {
  host: string;
  initrd: string;
}

interface LoadedObject {
  info: ElfInfo;
  /** Path the object was found under on the host (not canonicalised: $ORIGIN is based on it). */
  hostPath: string;
  initrdPath: string;
}

interface Process {
  binary: string;
  /** Names already satisfied in this process, like ld.so's list of loaded objects. */
  loaded: Set<string>;
  /** initrd paths already queued in this process. */
  seen: Set<string>;
}

interface QueueItem {
  obj: LoadedObject;
  proc: Process;
  /** DT_RPATH dirs inherited from the chain of objects that loaded this one. */
  inheritedRpath: SearchDir[];
}

function sameTarget(a: ElfInfo, b: ElfInfo): boolean {
  return a.class === b.class && a.machine === b.machine && a.littleEndian === b.littleEndian;
}

function expandDirs(list: string[], obj: LoadedObject): SearchDir[] {
  const hostOrigin = posix.dirname(obj.hostPath);
  const initrdOrigin = posix.dirname(obj.initrdPath);
  const out: SearchDir[] = [];
  for (const entry of list) {
    const expand = (origin: string) => entry.replace(/\$ORIGIN(?![A-Za-z0-9_])|\$\{ORIGIN\}/g, origin);
    const host = expand(hostOrigin);
    // $LIB/$PLATFORM depend on the target loader's build; relative entries
    // depend on the cwd at run time. Neither can be resolved statically.
    if (host.includes("$") || !host.startsWith("/")) continue;
    out.push({ host: posix.normalize(host), initrd: posix.normalize(expand(initrdOrigin)) });
  }
  return out;
}

function withPath(path: string, err: unknown): Error {
  const msg = messageOf(err);
  return new ElfError(`${path}: ${msg}`);
}

/**
 * Computes the shared libraries (and program interpreters) that `binaries`
 * need, following the glibc loader's search rules: DT_RPATH of the object and
 * its loaders (ignored once an object has DT_RUNPATH), then the object's own
 * DT_RUNPATH, then `searchDirs`. Each binary is resolved as its own process,
 * so an RPATH of one binary never leaks into another's closure.
 */
export function resolveClosure(
  binaries: string[],
  host: ElfHost,
  opts?: ResolveOptions,
): { libs: ResolvedLib[]; interpreters: string[] } {
  const defaults: SearchDir[] = (opts?.searchDirs ?? DEFAULT_SEARCH_DIRS).map((d) => {
    const dir = posix.normalize(d);
    return { host: dir, initrd: stripUsr(dir) };
  });
  const binaryInitrdPath = opts?.binaryInitrdPath ?? stripUsr;

  const parsed = new Map<string, ElfInfo | null>();
  const parseAt = (path: string): ElfInfo | null => {
    if (parsed.has(path)) return parsed.get(path)!;
    const bytes = host.readFile(path);
    let info: ElfInfo | null = null;
    if (bytes !== null && isElf(bytes)) {
      try {
        info = parseElf(bytes);
      } catch {
        info = null;
      }
    }
    parsed.set(path, info);
    return info;
  };
  const mustParse = (path: string, role: string): ElfInfo => {
    const bytes = host.readFile(path);
    if (bytes === null) throw new ElfError(`${role} ${path} not found`);
    try {
      return parseElf(bytes);
    } catch (err) {
      throw withPath(path, err);
    }
  };

  const libs = new Map<string, ResolvedLib>();
  const interpreters = new Set<string>();
  const queue: QueueItem[] = [];

  for (const binary of binaries) {
    const info = mustParse(binary, "binary");
    if (opts?.machine !== undefined && info.machine !== opts.machine)
      throw new ElfError(`${binary} is a ${machineName(info.machine)} binary, but the initrd is for ${machineName(opts.machine)}`);
    const proc: Process = { binary, loaded: new Set(), seen: new Set() };
    queue.push({ obj: { info, hostPath: binary, initrdPath: binaryInitrdPath(binary) }, proc, inheritedRpath: [] });
    if (info.interpreter !== undefined) {
      const interpPath = info.interpreter;
      interpreters.add(interpPath);
      const interp = mustParse(interpPath, `interpreter of ${binary}:`);
      if (!sameTarget(info, interp))
        throw new ElfError(`interpreter ${interpPath} of ${binary} is for a different ELF class or machine`);
      // The loader is already mapped when DT_NEEDED is processed, so a
      // library asking for it by name (libc asks for ld-linux-*.so.*) gets it
      // without a search.
      proc.loaded.add(interp.soname ?? posix.basename(interpPath));
      proc.loaded.add(interpPath);
      proc.seen.add(interpPath);
      queue.push({ obj: { info: interp, hostPath: interpPath, initrdPath: interpPath }, proc, inheritedRpath: [] });
    }
  }

  for (let qi = 0; qi < queue.length; qi++) {
    const { obj, proc, inheritedRpath } = queue[qi]!;
    const hasRunpath = obj.info.runpath.length > 0;
    // An object with DT_RUNPATH disables DT_RPATH for its own dependencies,
    // including the RPATHs of its loaders, but the chain still passes through
    // it to what it loads.
    const rpathChain = [...(hasRunpath ? [] : expandDirs(obj.info.rpath, obj)), ...inheritedRpath];
    const dirs: SearchDir[] = [...(hasRunpath ? expandDirs(obj.info.runpath, obj) : rpathChain), ...defaults];

    for (const name of obj.info.needed) {
      if (proc.loaded.has(name)) continue;

      let found: { dir: SearchDir; candidate: string; info: ElfInfo } | undefined;
      if (name.includes("/")) {
        // A path in DT_NEEDED is opened as-is, no search.
        const info = name.startsWith("/") ? parseAt(name) : null;
        if (info && sameTarget(info, obj.info)) found = { dir: { host: posix.dirname(name), initrd: posix.dirname(name) }, candidate: name, info };
      } else {
        for (const dir of dirs) {
          const candidate = posix.join(dir.host, name);
          const info = parseAt(candidate);
          // Like ld.so, silently skip files for another class/machine (e.g. a
          // 32-bit library in a directory shared with 64-bit ones).
          if (info && sameTarget(info, obj.info)) {
            found = { dir, candidate, info };
            break;
          }
        }
      }
      if (!found) {
        const searched = name.includes("/") ? [name] : [...new Set(dirs.map((d) => d.host))];
        throw new MissingLibraryError(name, obj.hostPath, proc.binary, searched);
      }

      const initrdPath = name.includes("/") ? name : posix.join(found.dir.initrd, name);
      proc.loaded.add(name);
      if (found.info.soname !== undefined) proc.loaded.add(found.info.soname);
      if (!libs.has(initrdPath)) {
        libs.set(initrdPath, { name, hostPath: host.realpath(found.candidate) ?? found.candidate, initrdPath });
      }
      if (!proc.seen.has(initrdPath)) {
        proc.seen.add(initrdPath);
        queue.push({ obj: { info: found.info, hostPath: found.candidate, initrdPath }, proc, inheritedRpath: rpathChain });
      }
    }
  }

  return {
    libs: [...libs.values()].sort((a, b) => (a.initrdPath < b.initrdPath ? -1 : a.initrdPath > b.initrdPath ? 1 : 0)),
    interpreters: [...interpreters].sort(),
  };
}
