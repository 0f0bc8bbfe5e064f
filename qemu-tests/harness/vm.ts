// Boots the Debian kernel with an initrd in QEMU (TCG, -cpu max by default; the
// runtime needs x86-64-v2) and gives the test a console to expect on and type
// into. On a timeout the error carries the last console lines.
import fs from "node:fs";
import path from "node:path";
import type { Subprocess } from "bun";

export const REPO = path.resolve(import.meta.dir, "../..");
export const DIST_INITRD = path.join(REPO, "dist/initrd.img");
/** The compiled init inside it (the builder writes it beside the initrd). */
export const DIST_INIT_BINARY = path.join(REPO, "dist/bunboot-init");

export function kernelImage(): string {
  const fromEnv = process.env.BUNBOOT_KERNEL;
  if (fromEnv) return fromEnv;
  const versions = fs
    .readdirSync("/boot")
    .filter((f) => f.startsWith("vmlinuz-"))
    .sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
  if (versions.length === 0) throw new Error("no /boot/vmlinuz-*: install linux-image-amd64 (scripts/test.sh does)");
  return path.join("/boot", versions.at(-1)!);
}

export interface VmOptions {
  initrd?: string;
  append: string;
  disks?: string[];
  memoryMiB?: number;
  /** Network devices and the like, raw QEMU arguments. */
  extraArgs?: string[];
  name?: string;
  /** A human-monitor socket, for keys the serial line cannot send (Ctrl-Alt-Del). */
  monitorSocket?: string;
  /** false: guest writes reach the disk files (default true: snapshot=on, files untouched). */
  snapshot?: boolean;
  /** QEMU CPU model (default max). */
  cpu?: string;
  /** Guest architecture (default x86_64: q35 and the host's Debian kernel). */
  arch?: "x86_64" | "aarch64";
  /** QEMU machine type (default q35 on x86_64, virt on aarch64). */
  machine?: string;
  /** Kernel image (default: kernelImage() for x86_64; aarch64 needs one). */
  kernel?: string;
  /** The kernel's console= parameters (default console=ttyS0,115200, or ttyAMA0 on aarch64). */
  kernelConsole?: string;
  /** How the guest's consoles reach the host (default -serial stdio). */
  consoleArgs?: string[];
  /**
   * QEMU arguments attaching disk file number `index` (default: a virtio-blk
   * drive). Storage-controller scenarios put the disk behind their controller.
   */
  diskArgs?: (file: string, index: number, snapshot: boolean) => string[];
}

/** A virtio-blk drive: the disk of every scenario that is not about the controller. */
export function virtioDisk(file: string, _index: number, snapshot: boolean): string[] {
  return ["-drive", `file=${file},if=virtio,format=raw,snapshot=${snapshot ? "on" : "off"}`];
}

/** The QEMU command line for a scenario (or the demo). */
export function qemuArgs(opts: VmOptions): string[] {
  const arm = opts.arch === "aarch64";
  if (arm && !opts.kernel) throw new Error("an aarch64 VM needs its kernel image (opts.kernel)");
  const args = [
    arm ? "qemu-system-aarch64" : "qemu-system-x86_64",
    "-machine", opts.machine ?? (arm ? "virt" : "q35"),
    "-cpu", opts.cpu ?? "max",
    "-smp", "2",
    "-m", String(opts.memoryMiB ?? 1024),
    "-nodefaults",
    "-display", "none",
    ...(opts.consoleArgs ?? ["-serial", "stdio"]),
    "-monitor", opts.monitorSocket ? `unix:${opts.monitorSocket},server=on,wait=off` : "none",
    "-no-reboot",
    "-kernel", opts.kernel ?? kernelImage(),
    "-initrd", opts.initrd ?? DIST_INITRD,
    "-append", `${opts.kernelConsole ?? (arm ? "console=ttyAMA0,115200" : "console=ttyS0,115200")} printk.time=1 panic=-1 ${opts.append}`,
  ];
  const diskArgs = opts.diskArgs ?? virtioDisk;
  (opts.disks ?? []).forEach((d, i) => args.push(...diskArgs(d, i, opts.snapshot !== false)));
  args.push(...(opts.extraArgs ?? []));
  return args;
}

export class Vm {
  private proc: Subprocess<"pipe", "pipe", "pipe">;
  private output = "";
  private exitCode: number | null = null;
  private readonly exited: Promise<number>;
  private listeners: Array<() => void> = [];
  readonly logFile: string;

  constructor(readonly opts: VmOptions) {
    const args = qemuArgs(opts);
    fs.mkdirSync(path.join(REPO, ".cache/vm-logs"), { recursive: true });
    this.logFile = path.join(REPO, ".cache/vm-logs", `${opts.name ?? "vm"}.log`);
    fs.writeFileSync(this.logFile, `$ ${args.join(" ")}\n`);
    this.proc = Bun.spawn(args, { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
    void this.pump(this.proc.stdout);
    void this.pump(this.proc.stderr);
    this.exited = this.proc.exited.then((c) => {
      this.exitCode = c;
      this.notify();
      return c;
    });
  }

  private async pump(stream: ReadableStream<Uint8Array>): Promise<void> {
    const dec = new TextDecoder();
    for await (const chunk of stream) {
      const text = dec.decode(chunk, { stream: true }).replace(/\r/g, "");
      this.output += text;
      fs.appendFileSync(this.logFile, text);
      this.notify();
    }
  }

  private notify(): void {
    for (const l of this.listeners.splice(0)) l();
  }

  get console(): string {
    return this.output;
  }

  tail(lines = 40): string {
    return this.output.split("\n").slice(-lines).join("\n");
  }

  /** Waits until the console output (from `from` on) matches; returns the match. */
  async expect(pattern: RegExp | string, timeoutMs: number, from = 0): Promise<RegExpMatchArray> {
    const re = typeof pattern === "string" ? new RegExp(pattern.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")) : pattern;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = this.output.slice(from).match(re);
      if (m) return m;
      if (this.exitCode !== null) {
        throw new Error(`VM ${this.opts.name ?? ""} exited (${this.exitCode}) before printing ${re}. Last console lines:\n${this.tail()}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(`VM ${this.opts.name ?? ""} timed out after ${timeoutMs / 1000} s waiting for ${re}. Last console lines:\n${this.tail()}`);
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 1000));
        this.listeners.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  send(text: string): void {
    this.proc.stdin.write(text);
    void this.proc.stdin.flush();
  }

  /** Waits for QEMU to exit by itself (poweroff, or reboot with -no-reboot). */
  async waitExit(timeoutMs: number): Promise<number> {
    const t = new Promise<"timeout">((r) => setTimeout(() => r("timeout"), timeoutMs));
    const r = await Promise.race([this.exited, t]);
    if (r === "timeout") {
      this.kill();
      throw new Error(`VM ${this.opts.name ?? ""} did not power off within ${timeoutMs / 1000} s. Last console lines:\n${this.tail()}`);
    }
    return r;
  }

  /** Sends one command to the QEMU monitor (needs monitorSocket). */
  async monitor(command: string): Promise<void> {
    if (!this.opts.monitorSocket) throw new Error("this VM has no monitor socket");
    await new Promise<void>((resolve, reject) => {
      Bun.connect({
        unix: this.opts.monitorSocket!,
        socket: {
          open(sock) {
            sock.write(command + "\n");
            setTimeout(() => {
              sock.end();
              resolve();
            }, 500);
          },
          data() {},
          error(_sock, err) {
            reject(err);
          },
        },
      }).catch(reject);
    });
  }

  kill(): void {
    if (this.exitCode === null) this.proc.kill("SIGKILL");
  }
}

/** Waits for the stage-2 test init to finish and power off; its facts. */
export async function bootToStage2(vm: Vm, bootMs: number): Promise<Record<string, string>> {
  try {
    await vm.expect("STAGE2: done", bootMs);
    await vm.waitExit(60_000);
  } finally {
    vm.kill();
  }
  return stage2Facts(vm.console);
}

/** Lines the stage-2 test init printed, as a key -> value map ("STAGE2: key=value"). */
export function stage2Facts(consoleText: string): Record<string, string> {
  const facts: Record<string, string> = {};
  for (const line of consoleText.split("\n")) {
    const m = line.match(/STAGE2: ([a-z0-9_-]+)=(.*)$/);
    // The kernel writes to the same console: a message can land in the
    // middle of a line the test init echoes ("pid=1[    7.254263] IPv6: …").
    if (m) facts[m[1]!] = m[2]!.replace(/\[\s*\d+\.\d{6}\] .*$/, "").trim();
  }
  return facts;
}
