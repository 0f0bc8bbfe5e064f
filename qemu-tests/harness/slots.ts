// A limit on how many VMs the concurrent scenarios of a file boot at once:
// each QEMU (TCG) keeps a CPU busy, so on a small machine running all of a
// file's scenarios together would make every boot slower than running them
// two at a time. BUNBOOT_MAX_VMS overrides the default of 2.
export class Slots {
  private free: number;
  private readonly waiting: Array<() => void> = [];

  constructor(readonly size: number) {
    if (!Number.isInteger(size) || size < 1) throw new Error(`a VM limit must be a positive integer, not ${size}`);
    this.free = size;
  }

  /** Runs fn once a slot is free; the slot is released when fn settles. */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    try {
      return await fn();
    } finally {
      const next = this.waiting.shift();
      // The slot passes straight to the next waiter, or becomes free.
      if (next) next();
      else this.free++;
    }
  }
}

export const vmSlots = new Slots(Number(process.env.BUNBOOT_MAX_VMS ?? "2"));
