// The time bound of the property tests. Its job is to catch a hang or a
// quadratic blow-up on hostile input (minutes, or forever), not to measure
// speed: the limits written in the tests hold on an idle machine, and a
// machine busy with QEMU boots runs them several times slower, so each is
// stretched by SLACK before it fails.
export const SLACK = 10;

/** Runs fn; throws if it took longer than SLACK × limitMs. */
export function timed<T>(fn: () => T, limitMs: number, what: string): T {
  const t0 = performance.now();
  const r = fn();
  const ms = performance.now() - t0;
  if (ms > limitMs * SLACK) throw new Error(`${what}: took ${ms.toFixed(0)} ms (limit ${limitMs * SLACK} ms)`);
  return r;
}
