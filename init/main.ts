// bunboot: the first-stage init (PID 1). The boot, top to bottom; each step
// is one call into lib/ and logs its name and duration. See
// shared/spec/boot-contract.md for the behaviour this follows.
import fs from "node:fs";
import { BREAKPOINTS, parseBootParams, splitCmdline, type BootParams } from "../lib/cmdline.ts";
import { readConfig, type InitrdConfig } from "../lib/config.ts";
import { waitForDevice } from "../lib/devices/wait.ts";
import { describeUnbound, findUnboundDevices } from "../lib/devices/unbound.ts";
import { emergencyShell, handleFailure, powerAction, shellPolicyOf } from "../lib/emergency.ts";
import { ModuleLoader } from "../lib/kmod.ts";
import { log, openSinks, persistTo, runStep, setVerbose, StepFailure } from "../lib/log.ts";
import { mountEarly, mountSquashfsFile, mountSourceOf, mountUsrDevice, unmountBelow } from "../lib/mounts.ts";
import { planUsr, type UsrPlan } from "../lib/plan.ts";
import { startReaper } from "../lib/reaper.ts";
import { handOverPxe, mountFullInitrd, NEW_ROOT, switchRoot, SYSUSR } from "../lib/switch-root.ts";
import { DeviceManager } from "../lib/uevent/manager.ts";
import { openUsrVerity } from "../lib/usr-verity.ts";
import { bringUpNetwork } from "../lib/net/up.ts";
import { fetchUsr, USR_HASHES } from "../lib/remote-usr.ts";
import { dualTimestampUsec, reboot, RB } from "../lib/sys/index.ts";
import { writeBlacklist } from "../lib/kmod.ts";

// Modules every boot needs whatever the hardware: sd_mod is not requested by
// any modalias (Flatcar loads it explicitly); the rest back the mounts below.
const BASE_MODULES = ["sd_mod", "loop", "dm_mod", "dm_verity", "squashfs", "overlay"];

const modules = new ModuleLoader();
const devices = new DeviceManager(modules);
let params: BootParams | null = null;
let config: InitrdConfig | null = null;
let currentAttempt = 0;
/** When the first stage started, for a systemd stage 2's initrd timestamp. */
let initrdTimestamp: { realtimeUsec: bigint; monotonicUsec: bigint } | undefined;

class Superseded extends Error {}

/** Runs a boot step unless this attempt was abandoned after a stray error. */
function step<T>(attempt: number, name: string, fn: () => Promise<T> | T): Promise<T> {
  if (attempt !== currentAttempt) throw new Superseded(`attempt ${attempt} was abandoned`);
  return runStep(name, fn);
}

async function breakpoint(name: (typeof BREAKPOINTS)[number]): Promise<void> {
  if (!params) return;
  if (params.earlyShell || params.breakpoints.includes(name)) {
    log.info(`breakpoint ${name}: ${params.earlyShell ? "rd.earlyshell" : `rd.break=${name}`}`);
    await emergencyShell(`breakpoint ${name}; exit to continue the boot`, shellPolicyOf(params));
  }
}

function readCommandLine(): BootParams {
  const text = fs.readFileSync("/proc/cmdline", "utf8");
  const parsed = parseBootParams(splitCmdline(text));
  setVerbose(parsed.params.debug || parsed.params.earlyTrace);
  params = parsed.params;
  if (parsed.errors.length > 0) {
    const first = parsed.errors[0]!;
    const e = new Error(parsed.errors.map((x) => x.message).join("\n"));
    (e as Error & { param?: string }).param = first.param;
    throw e;
  }
  log.debug(`command line: ${text.trim()}`);
  return parsed.params;
}

/** Loading of BASE_MODULES, started by the device manager step; awaited where they are needed. */
let baseModules: Promise<void> = Promise.resolve();

async function startDeviceManager(p: BootParams): Promise<void> {
  // kmod reads modprobe.blacklist= from /proc/cmdline itself; the dracut
  // name needs a config file it reads the same way.
  writeBlacklist(p.driverBlacklist);
  if (p.driverPre.length > 0) await modules.load(p.driverPre, "rd.driver.pre");
  devices.start();
  const n = devices.coldplug();
  log.debug(`coldplug: ${n} modaliases`);
  // Not awaited here: dm-verity, loop and the filesystems load while the
  // disk controllers probe; the verity and mount steps wait for them.
  baseModules = modules.load(BASE_MODULES, "base modules");
}

/** The hint in "still waiting" lines: controllers no driver took, and why. */
async function unboundHint(): Promise<string | null> {
  const devs = findUnboundDevices();
  const resolved = new Map<string, string[]>();
  for (const d of devs) resolved.set(d.modalias, await modules.resolve(d.modalias));
  return describeUnbound(devs, (a) => resolved.get(a) ?? [], params?.driverBlacklist ?? []);
}

async function findAndOpenUsr(attempt: number, plan: UsrPlan, p: BootParams, cfg: InitrdConfig): Promise<{ device: string | null }> {
  switch (plan.kind) {
    case "verity": {
      const dataDev = await step(attempt, "wait-usr", () => waitForDevice("verity.usr", plan.data, p.earlyTimeoutSec, devices, unboundHint));
      await breakpoint("pre-verity");
      return {
        device: await step(attempt, "verity", async () => {
          await baseModules;
          return openUsrVerity(dataDev, plan.rootHash, cfg.verityHashOffset);
        }),
      };
    }
    case "plain": {
      const dev = await step(attempt, "wait-usr", () => waitForDevice("mount.usr", plan.device, p.earlyTimeoutSec, devices, unboundHint));
      await breakpoint("pre-verity");
      return { device: dev };
    }
    case "squashfs-file":
    case "remote":
      await breakpoint("pre-verity");
      return { device: null };
  }
}

async function boot(attempt: number): Promise<never> {
  await step(attempt, "early-mounts", () => {
    mountEarly();
    openSinks();
    if (attempt === 1) persistTo("/run/bunboot/log");
  });
  if (attempt === 1) log.info(`bunboot starting (PID ${process.pid})`);
  else log.info(`boot attempt ${attempt}`);
  // A retry starts from a clean state: the mounts of the failed attempt go.
  if (attempt > 1) unmountBelow([NEW_ROOT, "/underlay", "/work", "/sysusr"]);

  const p = await step(attempt, "cmdline", readCommandLine);
  const cfg = (config = await step(attempt, "config", readConfig));
  const hasUsrSquashfs = fs.existsSync("/usr.squashfs");
  const plan = await step(attempt, "plan", () => planUsr(p, { hasUsrSquashfs, hasUsrHashList: fs.existsSync(USR_HASHES) }));
  log.info(`/usr from ${plan.kind === "squashfs-file" ? plan.image : plan.kind === "remote" ? plan.url : plan.kind === "verity" ? "dm-verity" : "a plain device"}`);
  if (hasUsrSquashfs && p.usrUrl) log.info(`rd.usr.url= is ignored: the appended /usr.squashfs wins`);

  await breakpoint("pre-udev");
  await step(attempt, "device-manager", () => startDeviceManager(p));

  // rd.usr.url= implies rd.neednet=1.
  if (p.neednet || plan.kind === "remote") await step(attempt, "network", () => bringUpNetwork(p, devices));
  if (plan.kind === "remote") await step(attempt, "fetch-usr", () => fetchUsr(plan, p, cfg.buildId));
  const usr = await findAndOpenUsr(attempt, plan, p, cfg);
  await breakpoint("pre-mount");
  await step(attempt, "mount-usr", async () => {
    await baseModules;
    if (plan.kind === "squashfs-file" || plan.kind === "remote") mountSquashfsFile(plan.image, SYSUSR);
    else mountUsrDevice(usr.device!, SYSUSR, plan.fsType, plan.options);
  });
  await step(attempt, "full-initrd", () => {
    mountFullInitrd();
    if (plan.kind === "squashfs-file" || plan.kind === "remote") handOverPxe(plan.image);
  });
  await modules.idleWithin(30_000);
  await breakpoint("pre-switch-root");
  return step(attempt, "switch-root", () => {
    log.info(`/usr is ${mountSourceOf(NEW_ROOT + SYSUSR)} at ${SYSUSR}`);
    if (attempt !== currentAttempt) throw new Superseded(`attempt ${attempt} was abandoned`);
    return switchRoot({ init: p.init ?? "/init", args: [], env: process.env, onCommit: () => devices.stop(), initrdTimestamp });
  });
}

function describe(e: unknown): { step: string; message: string; param?: string } {
  const inner = e instanceof StepFailure ? e.cause : e;
  const step = e instanceof StepFailure ? e.step : "unknown";
  const message = inner instanceof Error ? inner.message : String(inner);
  const param = (inner as { param?: string } | null)?.param;
  return { step, message, param: typeof param === "string" ? param : undefined };
}

async function main(): Promise<never> {
  // Our start, as systemd would record its own: now minus the time since
  // Bun's clock origin at process start, so Bun's startup counts too.
  try {
    const now = dualTimestampUsec();
    const since = BigInt(Math.round(performance.now() * 1000));
    initrdTimestamp = { realtimeUsec: now.realtimeUsec - since, monotonicUsec: now.monotonicUsec - since };
  } catch {}
  // Ctrl-Alt-Del arrives as SIGINT once the kernel is told not to reboot
  // by itself; a clean reboot syncs first.
  try {
    reboot(RB.DISABLE_CAD);
  } catch {}
  process.on("SIGINT", () => powerAction("reboot"));
  process.on("SIGTERM", () => {});
  // PID 1 must never exit: anything thrown outside the boot's own try is
  // logged (the boot loop below handles failures of the boot itself).
  // An error thrown outside the boot's own await chain (a callback, a stray
  // promise) must fail the boot like any other error, not leave it hanging.
  let failBoot: (e: unknown) => void = () => {};
  const onStray = (what: string) => (e: unknown) => {
    log.debug(`${what}: ${e instanceof Error ? (e.stack ?? e.message) : e}`);
    failBoot(e);
  };
  process.on("uncaughtException", onStray("uncaught exception"));
  process.on("unhandledRejection", onStray("unhandled rejection"));
  startReaper();
  for (let attempt = 1; ; attempt++) {
    currentAttempt = attempt;
    try {
      const stray = new Promise<never>((_, reject) => (failBoot = reject));
      // Settled late (while the emergency path runs) it must not count as unhandled.
      stray.catch(() => {});
      await Promise.race([boot(attempt), stray]);
    } catch (e) {
      // A stray error wins the race while boot() may still be running: the
      // next step it reaches sees it was superseded and stops.
      currentAttempt = -attempt;
      try {
        await handleFailure(describe(e), params, config?.buildId ?? "unknown");
      } catch (inner) {
        // The failure path itself failed (no shell to spawn?): the only
        // safe thing left for PID 1 is a clean reboot.
        log.err(`emergency handling failed: ${inner instanceof Error ? inner.message : inner}`);
        powerAction("reboot");
      }
    }
  }
}

void main();
