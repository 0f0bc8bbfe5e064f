// `bunboot timeline LOG... [-o FILE]`: turns console logs of boots (kernel
// timestamps, printk.time=1) into an SVG of the first stage's steps, one lane
// per log, all aligned at the kernel's `Run /init`. Reads bunboot's and the
// busybox reference's lines alike, so both draw the same picture.
import fs from "node:fs";
import path from "node:path";
import parseArgs from "yargs-parser";
import { parseBoot, type BootTimes } from "../lib/bootlog.ts";
import { renderTimeline } from "../lib/timeline-svg.ts";

export const summary = "draw the first-stage steps of boot logs as an SVG timeline";

const HELP = `usage: bunboot timeline LOG [LOG...] [-o FILE.svg] [--label NAME]...
  LOG        a console log or dmesg with kernel timestamps (printk.time=1)
  -o FILE    where to write the SVG (default: stdout)
  --label    a name per lane, in the order of the logs (default: the file name)`;

export async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { string: ["o", "label"], boolean: ["help"], alias: { o: "output", h: "help" } });
  if (args.help) {
    console.log(HELP);
    return 0;
  }
  const logs = args._.map(String);
  if (logs.length === 0) {
    console.error(HELP);
    return 2;
  }
  const labels = ([] as string[]).concat(args.label ?? []);
  const lanes: Array<{ label: string; boot: BootTimes }> = [];
  for (const [i, f] of logs.entries()) {
    const boot = parseBoot(fs.readFileSync(f, "utf8"));
    if (!boot) throw new Error(`${f}: no first stage found (needs "Run /init" and a "switching root" line with kernel timestamps)`);
    lanes.push({ label: labels[i] ?? path.basename(f).replace(/\.log$/, ""), boot });
  }
  const svg = renderTimeline(lanes);
  if (args.o) fs.writeFileSync(String(args.o), svg);
  else process.stdout.write(svg);
  return 0;
}
