#!/usr/bin/env bun
// The budgets, checked against the figures of the last benchmark run
// (.cache/bench/results.json, written by bench/run.ts), never by a timed
// unit test: TCG timings are too noisy to fail a test suite on.
//   bun bench/budgets.ts [results.json]    exit 0: all met, 3: a budget missed
import fs from "node:fs";
import path from "node:path";

export interface Results {
  /** stage-1 time of bunboot over the busybox reference's: median of the interleaved pairs' ratios */
  stage1Ratio: number;
  /** bunboot's initrd over a bare Bun hello-world, both compressed the same way */
  sizeRatio: number;
  bootCompression: string;
  /** whether the verity scenario booted with -m 512 (null: not measured) */
  boots512: boolean | null;
  minMemoryMiB: number | null;
}

export const BUDGETS = { stage1Ratio: 1.0, sizeRatio: 1.15, memoryMiB: 512 } as const;

export function checkBudgets(r: Results): { ok: boolean; lines: string[] } {
  const lines: string[] = [];
  let ok = true;
  const mark = (met: boolean | null) => (met === null ? "not measured" : met ? "met" : "MISSED");
  const t = r.stage1Ratio <= BUDGETS.stage1Ratio;
  lines.push(`stage-1 time / busybox reference (median of paired boots) = ${r.stage1Ratio.toFixed(2)} (budget <= ${BUDGETS.stage1Ratio}): ${mark(t)}`);
  const s = r.sizeRatio <= BUDGETS.sizeRatio;
  lines.push(`initrd / bare Bun executable, both ${r.bootCompression} = ${r.sizeRatio.toFixed(2)} (budget <= ${BUDGETS.sizeRatio}): ${mark(s)}`);
  lines.push(`boots with ${BUDGETS.memoryMiB} MiB RAM: ${mark(r.boots512)}${r.minMemoryMiB ? ` (smallest that boots: ${r.minMemoryMiB} MiB)` : ""}`);
  ok = t && s && r.boots512 !== false;
  return { ok, lines };
}

if (import.meta.main) {
  const file = process.argv[2] ?? path.resolve(import.meta.dir, "../.cache/bench/results.json");
  if (!fs.existsSync(file)) {
    console.error(`budgets: ${file} does not exist: run \`npm run bench\` first`);
    process.exit(2);
  }
  const { ok, lines } = checkBudgets(JSON.parse(fs.readFileSync(file, "utf8")) as Results);
  for (const l of lines) console.log(l);
  process.exit(ok ? 0 : 3);
}
