// The boot log's line format, written and read in one place: lib/log.ts and
// the switch root write these lines, and the benchmark and `bunboot
// timeline` read a first-stage boot back from a console log with kernel
// timestamps (printk.time=1): when the kernel ran /init, each step's end and
// duration, the last line before the switch root. The reader also takes the
// busybox reference's lines ("refinit[step]: ..."), which use the same form.

/** The kernel-log body of one line: "bunboot[step]: text". */
export function logBody(step: string, text: string): string {
  return `bunboot[${step}]: ${text}`;
}

/** The line that ends a step; the reader takes its duration from it. */
export function stepDoneText(name: string, ms: number): string {
  return `step ${name}: done in ${ms.toFixed(0)} ms`;
}

/** Logged just before the switch root: PID 1's peak resident memory (VmHWM as /proc prints it, "123456 kB"). */
export function peakRssText(vmHwm: string): string {
  return `peak RSS ${vmHwm} (VmHWM of PID 1)`;
}

/** The last line of the first stage. */
export function switchingRootText(freedBytes: number, newRoot: string, exec: string): string {
  return `freed ${(freedBytes / 1048576).toFixed(1)} MiB of the old initramfs; switching root to ${newRoot}, exec ${exec}`;
}

export interface StepTime {
  name: string;
  /** Kernel time (s) when the step ended, and its own measured duration. */
  endS: number;
  ms: number;
}

export interface BootTimes {
  init: "bunboot" | "refinit";
  /** "Trying to unpack rootfs" -> "Freeing initrd memory" (s). */
  unpackS: number | null;
  /** Kernel time of "Run /init as init process". */
  runInitS: number;
  /** Kernel time of the first line the init itself logged (its own code running). */
  firstLineS: number;
  /** Kernel time of the last line before the switch root (end of stage 1). */
  switchRootS: number;
  steps: StepTime[];
  /** VmHWM of PID 1 in KiB, if the init logged it. */
  peakRssKiB: number | null;
}

const TS = /^\[\s*(\d+\.\d+)\]\s(.*)$/;
const STEP_DONE = /^(bunboot|refinit)\[[\w-]+\]: step ([\w-]+): done in (\d+) ms/;
const SWITCHING = /^(bunboot|refinit)\[switch-root\]: .*switching root to/;

/** Parses one boot; null if the log does not reach the switch root. */
export function parseBoot(text: string): BootTimes | null {
  let unpackStart: number | null = null;
  let unpackEnd: number | null = null;
  let runInit: number | null = null;
  let first: number | null = null;
  let switchRoot: number | null = null;
  let init: BootTimes["init"] | null = null;
  let rss: number | null = null;
  const steps: StepTime[] = [];
  for (const raw of text.split("\n")) {
    const m = raw.replace(/\r$/, "").match(TS);
    if (!m) continue;
    const t = Number(m[1]);
    const msg = m[2]!;
    if (msg.startsWith("Trying to unpack rootfs image")) unpackStart = t;
    else if (msg.startsWith("Freeing initrd memory")) unpackEnd = t;
    else if (msg.startsWith("Run /init as init process") || /^Run \S+ as init process/.test(msg)) runInit ??= t;
    const who = msg.match(/^(bunboot|refinit)\[/);
    if (!who || runInit === null) continue;
    init ??= who[1] as BootTimes["init"];
    const sd = msg.match(STEP_DONE);
    if (sd) {
      steps.push({ name: sd[2]!, endS: t, ms: Number(sd[3]) });
      // The first step's start is the first moment the init's own code ran.
      if (first === null) first = t - Number(sd[3]) / 1000;
    } else if (first === null) first = t;
    const r = msg.match(/peak RSS (\d+) kB/);
    if (r) rss = Number(r[1]);
    if (SWITCHING.test(msg)) {
      switchRoot = t;
      break;
    }
  }
  if (runInit === null || switchRoot === null || init === null || first === null) return null;
  // The switch root never logs "done": it ends with the exec.
  const last = steps.at(-1);
  if (last) steps.push({ name: "switch-root", endS: switchRoot, ms: Math.round((switchRoot - last.endS) * 1000) });
  return {
    init,
    unpackS: unpackStart !== null && unpackEnd !== null ? unpackEnd - unpackStart : null,
    runInitS: runInit,
    firstLineS: Math.max(first, runInit),
    switchRootS: switchRoot,
    steps,
    peakRssKiB: rss,
  };
}

/** Stage 1 as the benchmark counts it: Run /init -> last line before the switch root. */
export function stage1S(b: BootTimes): number {
  return b.switchRootS - b.runInitS;
}

/**
 * The phases of a boot for tables and the timeline: the init's startup
 * (Run /init -> its first own line: the shim and Bun's start, or the shell's),
 * then each step, with start = end - own duration.
 */
export function phases(b: BootTimes): Array<{ name: string; startS: number; endS: number }> {
  const out = [{ name: "startup", startS: b.runInitS, endS: b.firstLineS }];
  for (const s of b.steps) out.push({ name: s.name, startS: Math.max(b.runInitS, s.endS - s.ms / 1000), endS: s.endS });
  return out;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  if (n === 0) return NaN;
  return n % 2 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
}
