// Seeded property test: the network /usr references against hostile text
// (every printable and control character, escapes, huge values). Whatever
// comes, the answer is a parsed reference or a ParamError naming the
// parameter, in bounded time; a parsed reference is spelt back to text that
// parses to the same.
import { expect, test } from "bun:test";
import { Gen } from "../testing/prng.ts";
import { ParamError } from "../param-error.ts";
import { formatNetworkUsr, formatNfsExport, parseNetworkUsr, parseNfsExport } from "./ref.ts";

const SEED = Number(process.env.NETUSR_SEED ?? 0x6e6264) >>> 0;
const RUNS = 20_000;
const PIECES = ["nbd://", "nfs://", "nfs4:", "h", "10.0.2.2", ":", ":10809", ":0", "/", "//", "usr", ".img", "%", "%2F", "%zz", "%00", "..", ".", "@", "?", "#", " ", "\u0000", "\u009b", "\u202e", "é", "[::1]", ",", "-", "x".repeat(300)];

function hostile(g: Gen): string {
  let s = "";
  for (let i = 1 + g.int(8); i > 0; i--) s += g.chance(0.8) ? g.pick(PIECES) : String.fromCharCode(g.int(0x250));
  return s;
}

test(`network /usr references: parsed or refused by name, never thrown otherwise (seed ${SEED}, ${RUNS} runs)`, () => {
  const g = new Gen(SEED);
  let parsed = 0;
  for (let i = 0; i < RUNS; i++) {
    const text = hostile(g);
    for (const [param, parse, format] of [
      ["verity.usr", parseNetworkUsr, formatNetworkUsr],
      ["mount.usr", parseNfsExport, formatNfsExport],
    ] as const) {
      try {
        const v = (parse as (p: string, t: string) => never)(param, text);
        parsed++;
        expect((parse as (p: string, t: string) => unknown)(param, (format as (v: unknown) => string)(v))).toEqual(v);
      } catch (e) {
        if (!(e instanceof ParamError)) throw new Error(`${param}=${JSON.stringify(text)} threw ${e}`);
        expect(e.param).toBe(param);
      }
    }
  }
  // The generator must reach the accepting paths too, or the round trip tests nothing.
  expect(parsed).toBeGreaterThan(200);
});
