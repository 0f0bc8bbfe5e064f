// The first-stage timeline as an SVG: one lane per boot, each step a bar,
// all aligned at the kernel's `Run /init`. Pure (boots in, text out); used by
// `bunboot timeline` and the benchmark.
import { phases, stage1S, type BootTimes } from "./bootlog.ts";

// One colour per step name, stable across lanes so the same step looks the same.
const COLOURS: Record<string, string> = {
  startup: "#9e9e9e",
  "early-mounts": "#8d6e63",
  cmdline: "#bcaaa4",
  config: "#bcaaa4",
  plan: "#bcaaa4",
  "device-manager": "#42a5f5",
  "wait-usr": "#ffca28",
  verity: "#66bb6a",
  "mount-usr": "#ab47bc",
  "full-initrd": "#ec407a",
  "switch-root": "#ef5350",
};

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/** The SVG for lanes of parsed boots. */
export function renderTimeline(lanes: Array<{ label: string; boot: BootTimes }>): string {
  const left = 150, right = 30, laneH = 46, top = 40, barH = 26;
  const width = 1000;
  const maxS = Math.max(...lanes.map((l) => stage1S(l.boot)), 0.1);
  // Ticks every 0.1/0.25/0.5/1 s, whichever gives at most ~12.
  const step = [0.1, 0.25, 0.5, 1, 2, 5].find((s) => maxS / s <= 12) ?? 10;
  const x = (s: number) => left + (s / (Math.ceil(maxS / step) * step)) * (width - left - right);
  const height = top + lanes.length * laneH + 70;
  const o: string[] = [];
  o.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="11">`);
  o.push(`<rect width="100%" height="100%" fill="white"/>`);
  o.push(`<text x="${left}" y="18" font-size="13" font-weight="bold">First stage: kernel's "Run /init" (0 s) to the last line before the switch root</text>`);
  for (let t = 0; t <= maxS + step / 2; t += step) {
    o.push(`<line x1="${x(t)}" y1="${top - 8}" x2="${x(t)}" y2="${top + lanes.length * laneH}" stroke="#ddd"/>`);
    o.push(`<text x="${x(t)}" y="${top + lanes.length * laneH + 14}" text-anchor="middle" fill="#555">${+t.toFixed(2)} s</text>`);
  }
  lanes.forEach((lane, i) => {
    const y = top + i * laneH;
    const b = lane.boot;
    o.push(`<text x="${left - 8}" y="${y + barH / 2 + 4}" text-anchor="end" font-weight="bold">${esc(lane.label)}</text>`);
    o.push(`<text x="${left - 8}" y="${y + barH + 12}" text-anchor="end" fill="#555">${stage1S(b).toFixed(3)} s</text>`);
    for (const p of phases(b)) {
      const x0 = x(p.startS - b.runInitS), x1 = x(p.endS - b.runInitS);
      const w = Math.max(x1 - x0, 0.5);
      const ms = Math.round((p.endS - p.startS) * 1000);
      o.push(`<rect x="${x0.toFixed(1)}" y="${y}" width="${w.toFixed(1)}" height="${barH}" fill="${COLOURS[p.name] ?? "#78909c"}" stroke="white" stroke-width="0.5"><title>${esc(p.name)}: ${ms} ms</title></rect>`);
      // Labels only where they fit; the legend and tooltips cover the rest.
      if (w > 60) o.push(`<text x="${(x0 + w / 2).toFixed(1)}" y="${y + barH / 2 + 4}" text-anchor="middle" fill="white">${esc(p.name)} ${ms}</text>`);
    }
  });
  const names = [...new Set(lanes.flatMap((l) => phases(l.boot).map((p) => p.name)))];
  let lx = left;
  const ly = top + lanes.length * laneH + 34;
  for (const n of names) {
    o.push(`<rect x="${lx}" y="${ly}" width="10" height="10" fill="${COLOURS[n] ?? "#78909c"}"/>`);
    o.push(`<text x="${lx + 14}" y="${ly + 9}">${esc(n)}</text>`);
    lx += 14 + n.length * 6.5 + 14;
  }
  o.push(`<text x="${left}" y="${ly + 28}" fill="#555">startup: Run /init → the init's first own line (shim + Bun start, or the shell). Bars: step end − its own measured duration → step end.</text>`);
  o.push(`</svg>`);
  return o.join("\n") + "\n";
}
