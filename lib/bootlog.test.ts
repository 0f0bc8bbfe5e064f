// The writer and the reader of the boot log's lines live together: a line
// the init writes must read back as the same step, time and figure, or the
// benchmark and `bunboot timeline` silently lose it.
import { describe, expect, test } from "bun:test";
import { logBody, median, parseBoot, peakRssText, phases, stage1S, stepDoneText, switchingRootText } from "./bootlog.ts";
import { renderTimeline } from "./timeline-svg.ts";

/** A console log as the kernel prints kmsg records: "[   t] body". */
function consoleLog(lines: Array<[number, string]>): string {
  return lines.map(([t, body]) => `[${t.toFixed(6).padStart(12)}] ${body}`).join("\r\n") + "\n";
}

describe("boot log round trip", () => {
  const text = consoleLog([
    [1.5, "Trying to unpack rootfs image as initramfs..."],
    [4.0, "Freeing initrd memory: 70348K"],
    [5.0, "Run /init as init process"],
    [5.9, logBody("early-mounts", stepDoneText("early-mounts", 101.4))],
    [5.95, logBody("init", "bunboot starting (PID 1)")],
    [6.5, logBody("device-manager", stepDoneText("device-manager", 480))],
    [7.25, logBody("wait-usr", stepDoneText("wait-usr", 700))],
    [7.3, logBody("switch-root", peakRssText("98304 kB"))],
    [7.4, logBody("switch-root", switchingRootText(123 * 1048576, "/realinit", "/init --switched-root"))],
    [9.0, "systemd[1]: something after the switch"],
  ]);

  test("what the init writes reads back as steps, times and the peak RSS", () => {
    const b = parseBoot(text)!;
    expect(b).not.toBeNull();
    expect(b.init).toBe("bunboot");
    expect(b.unpackS).toBeCloseTo(2.5, 6);
    expect(b.runInitS).toBe(5.0);
    expect(b.switchRootS).toBe(7.4);
    expect(b.peakRssKiB).toBe(98304);
    expect(b.steps.map((s) => [s.name, s.ms])).toEqual([
      ["early-mounts", 101],
      ["device-manager", 480],
      ["wait-usr", 700],
      ["switch-root", 150],
    ]);
    // The first own line is the first step's start: its end minus its duration.
    expect(b.firstLineS).toBeCloseTo(5.9 - 0.101, 6);
    expect(stage1S(b)).toBeCloseTo(2.4, 6);
    expect(phases(b)[0]).toEqual({ name: "startup", startS: 5.0, endS: b.firstLineS });
  });

  test("the switching line names what was freed and what runs next", () => {
    expect(switchingRootText(123 * 1048576, "/realinit", "/init")).toBe("freed 123.0 MiB of the old initramfs; switching root to /realinit, exec /init");
  });

  test("a log that never reaches the switch root is not a boot", () => {
    expect(parseBoot(text.split("switching root")[0]!)).toBeNull();
    expect(parseBoot("")).toBeNull();
  });

  test("the timeline draws every phase of the boot", () => {
    const svg = renderTimeline([{ label: "a<b", boot: parseBoot(text)! }]);
    expect(svg).toStartWith("<svg");
    for (const name of ["startup", "early-mounts", "device-manager", "wait-usr", "switch-root"]) expect(svg).toContain(`<title>${name}: `);
    expect(svg).toContain("a&lt;b");
  });

  test("median", () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 2, 3])).toBe(2.5);
    expect(median([])).toBeNaN();
  });
});
