// Property test ("keep it fixed") for parseMountOptions(): seeded random and
// adversarial option strings. Only MountOptionError comes out, naming the
// parameter, with no raw control character; accepted data never holds a
// blank, quote, backslash or control character; bounded time. The PRNG
// (mulberry32) and its seed are in the test's name.
import { mulberry32 } from "./testing/prng.ts";
import { SLACK } from "./testing/timed.ts";
import { describe, expect, test } from "bun:test";
import { MountOptionError, parseMountOptions, type MountParam } from "./mountopts.ts";
import { MS_FLAGS } from "./msflags.ts";


const ATOMS = ["ro", "rw", "noatime", "x-systemd.a", "X-mount.mkdir", "defaults", "compress=zstd:3", "subvol=/usr", "=", "==", ",", ",,", " ", "\t", '"', "'", "\\", "\0", "\x1b[2J", "\x7f", "\x85", "\u2028", "\u202e", "é", "😀", "\ud800", "a".repeat(300), "RO", "-o", "%"];

describe("parseMountOptions (property)", () => {
  test("mulberry32 seed 0x3070001: only MountOptionError, naming the parameter, escaped; accepted data is clean", () => {
    const next = mulberry32(0x3070001);
    const pick = <T>(xs: readonly T[]) => xs[Math.floor(next() * xs.length)]!;
    const params: MountParam[] = ["mount.usrflags", "usrflags"];
    for (let i = 0; i < 5000; i++) {
      let text = "";
      for (let n = Math.floor(next() * 8); n > 0; n--) text += next() < 0.8 ? pick(ATOMS) : String.fromCharCode(Math.floor(next() * 0x100));
      const param = pick(params);
      const t0 = performance.now();
      try {
        const r = parseMountOptions(text, param);
        expect(r.readOnly).toBe((r.flags & MS_FLAGS.RDONLY) !== 0);
        expect(/[\s"'\\\u0000-\u001f\u007f-\u009f]/.test(r.data)).toBe(false);
        for (const item of r.data.split(",")) if (r.data !== "") expect(item === "" || /^[xX]-/.test(item)).toBe(false);
      } catch (e) {
        expect(e).toBeInstanceOf(MountOptionError);
        const m = e as MountOptionError;
        expect(m.param).toBe(param);
        expect(m.message.startsWith(`${param}=`)).toBe(true);
        expect(/[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e]/.test(m.message)).toBe(false);
        expect(m.message.length).toBeLessThan(1500);
      }
      expect(performance.now() - t0).toBeLessThan(50 * SLACK);
    }
  });
});
