// Property tests ("keep it fixed") for the newc reader decodeNewc(): seeded
// random archives round-trip through encodeNewc(), and random bytes,
// truncations at every length, flipped bytes and hostile header numbers
// (namesize/filesize 0, FFFFFFFF, beyond the end; non-hex digits; bad UTF-8)
// only ever produce a CpioError, in bounded time. The PRNG (mulberry32) and
// its seed are in each test's name.
import { Gen } from "../testing/prng.ts";
import { timed } from "../testing/timed.ts";
import { describe, expect, test } from "bun:test";
import { CpioError, decodeNewc, encodeNewc, type CpioEntry } from "./cpio.ts";



function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.byteLength;
  }
  return out;
}

const NAME_PARTS = ["etc", "usr", "a", "b", "é", "😀", "x y", "-", ".hidden", "a\tb", "long".repeat(20)];

/** Random valid entries: distinct paths, parents that are directories (or left out: encodeNewc adds them). */
function entries(g: Gen): CpioEntry[] {
  const out = new Map<string, CpioEntry>();
  const dirs = new Set<string>();
  for (let n = g.int(12); n > 0; n--) {
    const depth = 1 + g.int(3);
    const parts: string[] = [];
    for (let d = 0; d < depth; d++) parts.push(g.pick(NAME_PARTS));
    const path = parts.join("/");
    // A path may not sit below a non-directory, nor a directory replace a file.
    const parents = parts.slice(0, -1).map((_, i) => parts.slice(0, i + 1).join("/"));
    if (out.has(path) || dirs.has(path) || parents.some((p) => out.has(p) && out.get(p)!.kind !== "dir")) continue;
    let e: CpioEntry;
    switch (g.int(5)) {
      case 0:
        e = { kind: "dir", path, mode: g.int(0o10000) };
        break;
      case 1:
        e = { kind: "symlink", path, target: g.pick(["/usr/bin/x", "../a", "é", "a".repeat(300)]) };
        break;
      case 2:
        e = { kind: g.pick(["chardev", "blockdev"] as const), path, mode: g.int(0o10000), major: g.pick([0, 1, 259, 0xffffffff]), minor: g.pick([0, 3, 0xfffff]) };
        break;
      default:
        e = { kind: "file", path, mode: g.int(0o10000), data: g.bytes(g.pick([0, 1, 3, 4, 5, 511, 4096 + g.int(7)])) };
    }
    for (const p of parents) dirs.add(p);
    out.set(path, e);
  }
  return [...out.values()];
}

/** What decodeNewc must give back for `given`: every entry, plus the parent directories encodeNewc adds. */
function expected(given: CpioEntry[]): Map<string, CpioEntry> {
  const m = new Map<string, CpioEntry>();
  for (const e of given) {
    const parts = e.path.split("/");
    for (let i = 1; i < parts.length; i++) {
      const p = parts.slice(0, i).join("/");
      if (!m.has(p)) m.set(p, { kind: "dir", path: p, mode: 0o755 });
    }
  }
  for (const e of given) m.set(e.path, e);
  return m;
}


/** decodeNewc, returning the CpioError instead of throwing it; any other exception fails the test. */
function attempt(archive: Uint8Array): ReturnType<typeof decodeNewc> | CpioError {
  try {
    return timed(() => decodeNewc(archive), 100, `archive of ${archive.length} bytes`);
  } catch (e) {
    if (e instanceof CpioError) return e;
    throw new Error(`decodeNewc threw ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
  }
}

const enc = new TextEncoder();

/** One raw newc header with chosen field text (8 characters each, not necessarily hex). */
function rawHeader(fields: Partial<Record<"mode" | "filesize" | "namesize" | "check", string>>, name: Uint8Array, magic = "070701"): Uint8Array {
  const f = (k: keyof typeof fields, d: string) => (fields[k] ?? d).padEnd(8, "0").slice(0, 8);
  const text =
    magic + "00000001" + f("mode", "000081A4") + "00000000" + "00000000" + "00000001" + "00000000" + f("filesize", "00000000") +
    "00000000" + "00000000" + "00000000" + "00000000" + f("namesize", (name.length + 1).toString(16).padStart(8, "0")) + f("check", "00000000");
  // Header and name padded to a multiple of 4, as the format wants.
  const out = new Uint8Array(Math.ceil((text.length + name.length + 1) / 4) * 4);
  out.set(enc.encode(text));
  out.set(name, text.length);
  return out;
}

describe("decodeNewc (property)", () => {
  test("mulberry32 seed 0xc010001: encodeNewc then decodeNewc gives back every entry, parents included", () => {
    const g = new Gen(0xc010001);
    for (let i = 0; i < 300; i++) {
      const given = entries(g);
      const archive = concat(encodeNewc(given));
      const got = attempt(archive);
      if (got instanceof CpioError) throw new Error(`own archive refused: ${got.message}`);
      expect(got.end).toBe(archive.length);
      const want = expected(given);
      expect(got.entries.map((e) => e.path).sort()).toEqual([...want.keys()].sort());
      for (const e of got.entries) {
        const w = want.get(e.path)!;
        if (w.kind === "file" && e.kind === "file") {
          expect({ ...e, data: Array.from(e.data) }).toEqual({ ...w, data: Array.from(w.data) });
        } else {
          expect(e).toEqual(w);
        }
      }
      // Trailing zero padding (as after a concatenated archive) changes nothing.
      const padded = concat([archive, new Uint8Array(g.int(600))]);
      const again = attempt(padded);
      expect(again instanceof CpioError ? again.message : again.end).toBe(archive.length);
    }
  });

  test("mulberry32 seed 0xc010002: truncation at any length and flipped bytes give a CpioError or a parse, nothing else", () => {
    const g = new Gen(0xc010002);
    let refused = 0;
    for (let i = 0; i < 150; i++) {
      const archive = concat(encodeNewc(entries(g)));
      for (let n = 0; n < 8; n++) {
        const cut = archive.subarray(0, g.int(archive.length));
        const rc = attempt(cut);
        if (rc instanceof CpioError) {
          refused++;
          // The offset is where the missing part would start: at most the name's padding past the end.
          if (rc.offset !== undefined) expect(rc.offset >= 0 && rc.offset <= cut.length + 3).toBe(true);
        }
        const flipped = archive.slice();
        for (let k = 1 + g.int(6); k > 0; k--) flipped[g.int(flipped.length)] = g.pick([0, 0x30, 0x46, 0x66, 0x7a, 0xff, g.int(256)]);
        const r = attempt(flipped);
        if (!(r instanceof CpioError)) expect(r.end).toBeLessThanOrEqual(flipped.length);
      }
    }
    expect(refused).toBeGreaterThan(500);
  });

  test("mulberry32 seed 0xc010003: hostile header numbers and names: only CpioError, with the offset", () => {
    const g = new Gen(0xc010003);
    const NUMS = ["00000000", "FFFFFFFF", "7FFFFFFF", "80000000", "00001001", "00001000", "-0000001", "0x000001", "        ", "zzzzzzzz", "0000000g", "ffffffff"];
    for (let i = 0; i < 2000; i++) {
      const name = g.pick([enc.encode("a"), enc.encode("TRAILER!!!"), new Uint8Array([0xff, 0xfe]), new Uint8Array([0xc3]), g.bytes(g.int(20)), new Uint8Array(0)]);
      const head = rawHeader(
        {
          mode: g.pick(["000081A4", "000041ED", "0000A1FF", "00002180", "0000C000", "00000000", ...NUMS]),
          filesize: g.pick(NUMS),
          namesize: g.chance(0.5) ? g.pick(NUMS) : undefined,
          check: g.pick(NUMS),
        },
        name,
        g.pick(["070701", "070702", "070707", "07070", "\u0000\u0000\u0000\u0000\u0000\u0000"]),
      );
      const body = g.bytes(g.pick([0, 3, 100, 5000]));
      const archive = concat([head, body, g.chance(0.5) ? concat(encodeNewc([])) : new Uint8Array(0)]);
      const r = attempt(archive);
      if (r instanceof CpioError) {
        expect(r.name).toBe("CpioError");
        if (r.offset !== undefined) expect(r.offset >= 0 && r.offset <= archive.length).toBe(true);
        expect(r.message.length).toBeLessThan(10_000);
      }
    }
  });

  test("mulberry32 seed 0xc010004: random bytes and a huge archive of tiny entries stay within time bounds", () => {
    const g = new Gen(0xc010004);
    for (let i = 0; i < 300; i++) expect(attempt(g.bytes(g.int(400)))).toBeInstanceOf(CpioError);
    const many: CpioEntry[] = [];
    for (let i = 0; i < 20_000; i++) many.push({ kind: "file", path: `d/f${i}`, data: new Uint8Array(i % 5) });
    const archive = concat(encodeNewc(many));
    const r = timed(() => attempt(archive), 500, "20000 entries");
    expect(r instanceof CpioError ? r.message : r.entries.length).toBe(20_001);
  });

  // Findings of this test, fixed in cpio.ts.
  test("mulberry32 seed 0xc010005: a name with a NUL inside is refused (the kernel would cut it at the NUL)", () => {
    const g = new Gen(0xc010005);
    for (let i = 0; i < 20; i++) {
      const archive = concat([rawHeader({}, new Uint8Array([0x61, 0, 0x62 + g.int(20)])), concat(encodeNewc([]))]);
      const r = attempt(archive);
      if (!(r instanceof CpioError)) for (const e of r.entries) expect(e.path.includes("\0")).toBe(false);
    }
  });

  test("mulberry32 seed 0xc010006: names from the archive reach messages with control characters escaped", () => {
    const g = new Gen(0xc010006);
    for (let i = 0; i < 20; i++) {
      const name = enc.encode(`a\x1b[${g.int(10)}J`);
      // File type 0 is unsupported: the message names the entry.
      const r = attempt(concat([rawHeader({ mode: "00000000" }, name), concat(encodeNewc([]))]));
      expect(r).toBeInstanceOf(CpioError);
      expect(/[\u0000-\u001f\u007f-\u009f]/.test((r as CpioError).message)).toBe(false);
    }
  });
});
