#!/usr/bin/env bun
// The budgets, checked against the figures of the last benchmark run
// (.cache/bench/results.json, written by bench/run.ts), never by a timed
// unit test: TCG timings are too noisy to fail a test suite on. They apply
// to the default layout; the other layout's figures are printed beside.
//   bun bench/budgets.ts [results.json]
//   exit 0: all met, 3: a budget missed, 4: none missed but some not measured (--quick, --no-bisect)
import fs from "node:fs";
import path from "node:path";

export interface LayoutFigures {
  /** kernel start -> the last stage-1 line, over the reference's: median of the interleaved triples' ratios */
  kernelToStage2Ratio: number;
  /** stage 1 (`Run /init` -> last line), over the reference's, same way */
  stage1Ratio: number;
  /** smallest -m that boots over the reference's (null: not measured) */
  memoryRatio: number | null;
  /** initrd file at zstd -19, MiB (null: the run booted another compression) */
  initrdMiB: number | null;
  /** that file over a bare compiled Bun hello-world compressed the same way */
  helloRatio: number;
}

export interface Results extends LayoutFigures {
  defaultLayout: string;
  bootCompression: string;
  bootLevel: number;
  /** timed boots asked for, and the triples in which flat, payload and the reference all booted */
  boots: number;
  triples: number;
  failedBoots: Record<string, number>;
  minMemoryMiB: number | null;
  refMinMemoryMiB: number | null;
  layouts: Record<string, LayoutFigures>;
}

/** The ESP arithmetic behind the size budget: 2 x (kernel + initrd + spare) <= ESP. */
export const SLOT = { espMiB: 128, kernelMiB: 12, spareMiB: 4 } as const;

export const BUDGETS = {
  kernelToStage2Ratio: 1.0,
  stage1Ratio: 0.9,
  memoryRatio: 1.3,
  /** two slots of a 12 MiB kernel plus the initrd, 4 MiB to spare each, in a 128 MiB ESP: 48 */
  initrdMiB: SLOT.espMiB / 2 - SLOT.kernelMiB - SLOT.spareMiB,
  /** a goal, reported beside the budgets */
  helloRatio: 1.15,
  /** the timed figures need this many interleaved boots to count */
  minBoots: 5,
} as const;

export function checkBudgets(r: Results): { ok: boolean; exitCode: 0 | 3 | 4; lines: string[] } {
  const lines: string[] = [];
  let missed = false;
  let unmeasured = false;
  if (!r || typeof r !== "object" || !r.layouts || typeof r.triples !== "number") {
    return { ok: false, exitCode: 3, lines: ["these results are from an older benchmark (no per-layout figures): run `npm run bench`"] };
  }
  const other = Object.entries(r.layouts).filter(([name]) => name !== r.defaultLayout);
  const beside = (f: (l: LayoutFigures) => number | null, digits: number) =>
    other.map(([name, l]) => { const v = f(l); return `; ${name}: ${v === null ? "not measured" : v.toFixed(digits)}`; }).join("");
  const check = (what: string, value: number | null, budget: number, digits: number, f: (l: LayoutFigures) => number | null, counts = true) => {
    const met = value === null ? null : value <= budget;
    if (counts && met === false) missed = true;
    if (counts && met === null) unmeasured = true;
    lines.push(`${what} = ${value === null ? "not measured" : value.toFixed(digits)} (${counts ? "budget" : "goal"} <= ${budget}): ${met === null ? "NOT MEASURED" : met ? "met" : "MISSED"}${beside(f, digits)}`);
  };
  const failed = Object.entries(r.failedBoots).filter(([, n]) => n > 0);
  const timedCount = r.triples >= BUDGETS.minBoots && (r.failedBoots[r.defaultLayout] ?? 0) === 0;
  if (!timedCount) {
    missed = true;
    lines.push(`only ${r.triples} complete interleaved triples of ${r.boots}${failed.length ? ` (failed boots: ${failed.map(([w, n]) => `${w} ${n}`).join(", ")})` : ""}; the time budgets need >= ${BUDGETS.minBoots} and no failed boot of the default layout: counted as MISSED`);
  } else if (failed.length) {
    lines.push(`failed boots outside the default layout: ${failed.map(([w, n]) => `${w} ${n}`).join(", ")}`);
  }
  check(`kernel start -> stage 2 / busybox reference, ${r.defaultLayout} (median of interleaved triples)`, r.kernelToStage2Ratio, BUDGETS.kernelToStage2Ratio, 2, (l) => l.kernelToStage2Ratio);
  check(`stage 1 / busybox reference, ${r.defaultLayout}`, r.stage1Ratio, BUDGETS.stage1Ratio, 2, (l) => l.stage1Ratio);
  check(`smallest RAM that boots / busybox reference's, ${r.defaultLayout}${r.minMemoryMiB ? ` (${r.minMemoryMiB} vs ${r.refMinMemoryMiB} MiB)` : ""}`, r.memoryRatio, BUDGETS.memoryRatio, 2, (l) => l.memoryRatio);
  check(`initrd at zstd -19, ${r.defaultLayout}, MiB (2 x (${SLOT.kernelMiB} MiB kernel + initrd + ${SLOT.spareMiB} MiB) <= ${SLOT.espMiB} MiB ESP)`, r.initrdMiB, BUDGETS.initrdMiB, 1, (l) => l.initrdMiB);
  check(`initrd / bare Bun executable, both ${r.bootCompression} -${r.bootLevel}, ${r.defaultLayout}`, r.helloRatio, BUDGETS.helloRatio, 2, (l) => l.helloRatio, false);
  const exitCode = missed ? 3 : unmeasured ? 4 : 0;
  return { ok: exitCode === 0, exitCode, lines };
}

if (import.meta.main) {
  const file = process.argv[2] ?? path.resolve(import.meta.dir, "../.cache/bench/results.json");
  if (!fs.existsSync(file)) {
    console.error(`budgets: ${file} does not exist: run \`npm run bench\` first`);
    process.exit(2);
  }
  const { exitCode, lines } = checkBudgets(JSON.parse(fs.readFileSync(file, "utf8")) as Results);
  for (const l of lines) console.log(l);
  process.exit(exitCode);
}
