// The budget checker on hand-made results: what counts as met, missed and
// not measured, so a smoke run or a run with failed boots never reads as a pass.
import { describe, expect, test } from "bun:test";
import { BUDGETS, checkBudgets, type LayoutFigures, type Results } from "./budgets.ts";

const good: LayoutFigures = { kernelToStage2Ratio: 0.9, stage1Ratio: 0.8, memoryRatio: 1.2, initrdMiB: 47, helloRatio: 1.1 };
function results(over: Partial<Results> = {}): Results {
  return {
    ...good, defaultLayout: "payload", bootCompression: "zstd", bootLevel: 19, boots: 5, triples: 5,
    failedBoots: { flat: 0, payload: 0, ref: 0 }, minMemoryMiB: 200, refMinMemoryMiB: 176,
    layouts: { flat: { ...good, initrdMiB: 54 }, payload: good }, ...over,
  };
}

describe("checkBudgets", () => {
  test("all met: exit 0, and the other layout's figure is printed beside", () => {
    const r = checkBudgets(results());
    expect(r.exitCode).toBe(0);
    expect(r.lines.find((l) => l.startsWith("initrd at zstd -19"))).toContain("met; flat: 54.0");
  });

  test("the size budget is the ESP arithmetic: 2 x (12 + 48 + 4) = 128", () => {
    expect(BUDGETS.initrdMiB).toBe(48);
    expect(checkBudgets(results({ initrdMiB: 48.1 })).exitCode).toBe(3);
  });

  test("each budget can fail on its own", () => {
    for (const over of [{ kernelToStage2Ratio: 1.01 }, { stage1Ratio: 0.91 }, { memoryRatio: 1.31 }, { initrdMiB: 49 }]) {
      expect(checkBudgets(results(over)).exitCode).toBe(3);
    }
  });

  test("the Bun ratio is a goal: missing it does not fail the run", () => {
    const r = checkBudgets(results({ helloRatio: 1.4 }));
    expect(r.exitCode).toBe(0);
    expect(r.lines.some((l) => l.includes("(goal <= 1.15): MISSED"))).toBe(true);
  });

  test("too few triples, or a failed boot of the default layout, count as missed", () => {
    expect(checkBudgets(results({ triples: 4 })).exitCode).toBe(3);
    expect(checkBudgets(results({ failedBoots: { flat: 0, payload: 1, ref: 0 } })).exitCode).toBe(3);
    expect(checkBudgets(results({ failedBoots: { flat: 2, payload: 0, ref: 0 } })).exitCode).toBe(0);
  });

  test("an unmeasured budget (a --quick run) is exit 4, not a pass", () => {
    expect(checkBudgets(results({ memoryRatio: null })).exitCode).toBe(4);
    expect(checkBudgets(results({ memoryRatio: null, stage1Ratio: 2 })).exitCode).toBe(3);
  });

  test("results of the older benchmark format are refused with a clear line", () => {
    const r = checkBudgets({ stage1Ratio: 0.98, sizeRatio: 1.42 } as unknown as Results);
    expect(r.exitCode).toBe(3);
    expect(r.lines[0]).toContain("older benchmark");
  });
});
