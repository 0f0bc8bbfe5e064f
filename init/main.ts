// bunboot: the first-stage init (PID 1). The boot, top to bottom; each step
// is one call into lib/ and logs its name and duration. docs/boot-sequence.md
// describes the behaviour, with the step numbers of the README.
import fs from "node:fs";
import { parseBootParams, splitCmdline, type BootParams, type Breakpoint } from "../lib/cmdline.ts";
import { readConfig, type InitrdConfig } from "../lib/config.ts";
import { waitForDevice } from "../lib/devices/wait.ts";
import { describeUnbound, findUnboundDevices } from "../lib/devices/unbound.ts";
import { describeDisklessHosts, findDisklessHosts } from "../lib/devices/diskless-hosts.ts";
import { emergencyShell, handleFailure, powerAction, shellPolicyOf, type FailureReport } from "../lib/emergency.ts";
import { BASE_MODULES, ModuleLoader } from "../lib/kmod.ts";
import { bestEffort, log, openSinks, persistTo, runStep, setVerbose, StepFailure } from "../lib/log.ts";
import { mountEarly, mountSquashfsFile, mountSourceOf, mountUsrDevice, unmountBelow } from "../lib/mounts.ts";
import { planUsr, type UsrPlan } from "../lib/plan.ts";
import { startReaper } from "../lib/reaper.ts";
import { handOverPxe, mountFullInitrd, NEW_ROOT, switchRoot, SYSUSR } from "../lib/switch-root.ts";
import { DeviceManager } from "../lib/uevent/manager.ts";
import { openUsrVerity } from "../lib/usr-verity.ts";
import { bringUpNetwork } from "../lib/net/up.ts";
import { fetchUsr } from "../lib/remote-usr.ts";
import { attachNetworkUsr, SOURCE_MODULES } from "../lib/netusr/attach.ts";
import { settleNbdForStage2 } from "../lib/netusr/nbd.ts";
import { mountNfsUsr } from "../lib/netusr/nfs.ts";
import { formatNetworkUsr, formatNfsExport } from "../lib/netusr/ref.ts";
import { USR_HASHES } from "../lib/paths.ts";
import { PAYLOAD_IMAGE } from "../lib/initrd/payload.ts";
import { awaitEarlyColdplug } from "../lib/early-coldplug.ts";
import { redactText, redactUrl } from "../lib/redact.ts";
import { dualTimestampUsec, reboot, RB } from "../lib/sys/index.ts";
import { writeBlacklist } from "../lib/kmod.ts";
import { BootError, isBootParam, messageOf } from "../lib/errors.ts";

const modules = new ModuleLoader();
const devices = new DeviceManager(modules);
let params: BootParams | null = null;
let config: InitrdConfig | null = null;
/** When the first stage started, for a systemd stage 2's initrd timestamp. */
let initrdTimestamp: { realtimeUsec: bigint; monotonicUsec: bigint } | undefined;
/**
 * Whether the boot loader appended /usr.squashfs. Looked at once, before
 * the first attempt: later a fetched image sits at the same path.
 */
const appendedUsrSquashfs = fs.existsSync("/usr.squashfs");

/**
 * Runs a boot step unless this attempt was abandoned. An attempt is
 * abandoned when a stray error (a callback, a stray promise) failed the boot
 * while its steps were still running: the failure path owns the machine
 * from then on, and the abandoned attempt must stop at its next step.
 */
function step<T>(signal: AbortSignal, name: string, fn: () => Promise<T> | T): Promise<T> {
  signal.throwIfAborted();
  return runStep(name, fn);
}

async function breakpoint(name: Breakpoint): Promise<void> {
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
    const first = parsed.errors[0]!.param;
    throw new BootError(parsed.errors.map((x) => x.message).join("\n"), { param: isBootParam(first) ? first : undefined });
  }
  log.debug(`command line: ${redactText(text.trim())}`);
  return parsed.params;
}

/** Loading of BASE_MODULES, started by the device manager step; awaited where they are needed. */
let baseModules: Promise<void> = Promise.resolve();

async function startDeviceManager(p: BootParams, cfg: InitrdConfig): Promise<void> {
  // kmod reads modprobe.blacklist= from /proc/cmdline itself; the dracut
  // name needs a config file it reads the same way.
  writeBlacklist(p.driverBlacklist);
  if (p.driverPre.length > 0) await modules.load(p.driverPre, "rd.driver.pre");
  devices.start();
  const n = devices.coldplug();
  log.debug(`coldplug: ${n} modaliases`);
  // Not awaited here: dm-verity, loop and the filesystems load while the
  // disk controllers probe; the verity and mount steps wait for them.
  baseModules = modules.load(cfg.baseModules ?? BASE_MODULES, "base modules");
}

/**
 * The hint in "still waiting" lines and the timeout: controllers no driver
 * took (and why), and controllers a driver took that show no disk.
 */
async function storageHint(): Promise<string | null> {
  const devs = findUnboundDevices();
  const resolved = new Map<string, string[]>();
  for (const d of devs) resolved.set(d.modalias, await modules.resolve(d.modalias));
  const lines = [describeUnbound(devs, (a) => resolved.get(a) ?? [], params?.driverBlacklist ?? []), describeDisklessHosts(findDisklessHosts())];
  return lines.filter((l) => l !== null).join("\n") || null;
}

/** What the mount step mounts: a block device (verity or plain), an image file, or an NFS export. */
type UsrSource = { kind: "device"; path: string } | { kind: "image"; path: string } | { kind: "nfs" };

async function findAndOpenUsr(signal: AbortSignal, plan: UsrPlan, p: BootParams, cfg: InitrdConfig, settleInBackground: (settled: Promise<void>) => void): Promise<UsrSource> {
  switch (plan.kind) {
    case "verity": {
      const dataDev = await step(signal, "wait-usr", () => waitForDevice("verity.usr", plan.data, p.earlyTimeoutSec, devices, storageHint, { settleInBackground }));
      await breakpoint("pre-verity");
      const path = await step(signal, "verity", async () => {
        await baseModules;
        return openUsrVerity(dataDev, plan.rootHash, cfg.verityHashOffset);
      });
      return { kind: "device", path };
    }
    case "plain": {
      const path = await step(signal, "wait-usr", () => waitForDevice("mount.usr", plan.device, p.earlyTimeoutSec, devices, storageHint, { settleInBackground }));
      await breakpoint("pre-verity");
      return { kind: "device", path };
    }
    case "squashfs-file":
      await breakpoint("pre-verity");
      return { kind: "image", path: plan.image };
    case "verity-net": {
      const data = await step(signal, "attach-usr", () => attachNetworkUsr(plan.source, modules, signal));
      try {
        await breakpoint("pre-verity");
        const path = await step(signal, "verity", async () => {
          await baseModules;
          // A network source fails a corrupt read with EIO instead of panicking (usr-verity.ts says why).
          return openUsrVerity(data.dev, plan.rootHash, cfg.verityHashOffset, "eio");
        });
        return { kind: "device", path };
      } finally {
        // Whatever happened, even an abandoned attempt: the mapping holds the device now, or nothing should.
        data.release();
      }
    }
    case "nfs":
      await step(signal, "load-nfs", () => modules.load(SOURCE_MODULES.nfs, "mount.usr= (NFS)"));
      await breakpoint("pre-verity");
      return { kind: "nfs" };
    case "remote":
      await step(signal, "fetch-usr", () => fetchUsr(plan, p, cfg.buildId, signal));
      await breakpoint("pre-verity");
      return { kind: "image", path: plan.image };
  }
}

function describePlan(plan: UsrPlan): string {
  switch (plan.kind) {
    case "squashfs-file":
      return plan.image;
    case "remote":
      return redactUrl(plan.url);
    case "verity":
      return "dm-verity";
    case "verity-net":
      return `dm-verity over ${formatNetworkUsr(plan.source)}, read block by block`;
    case "nfs":
      return `NFS ${formatNfsExport(plan.export)}, unverified (rd.usr.insecure=1)`;
    case "plain":
      return "a plain device";
  }
}

async function boot(attempt: number, signal: AbortSignal): Promise<never> {
  await step(signal, "early-mounts", () => {
    mountEarly();
    openSinks();
    if (attempt === 1) persistTo("/run/bunboot/log");
  });
  // Which layout this initrd has (lib/initrd/payload.ts), for whoever reads the log.
  if (attempt === 1) log.info(`bunboot starting (PID ${process.pid}, ${fs.existsSync(PAYLOAD_IMAGE) ? `running from the payload image ${PAYLOAD_IMAGE}` : "flat initramfs"})`);
  else log.info(`boot attempt ${attempt}`);
  // A retry starts from a clean state: the mounts of the failed attempt go.
  if (attempt > 1) unmountBelow([NEW_ROOT, "/underlay", "/work", "/sysusr"]);

  const p = await step(signal, "cmdline", readCommandLine);
  const cfg = (config = await step(signal, "config", readConfig));
  const plan = await step(signal, "plan", () => planUsr(p, { hasUsrSquashfs: appendedUsrSquashfs, hasUsrHashList: fs.existsSync(USR_HASHES) }));
  log.info(`/usr from ${describePlan(plan)}`);
  if (appendedUsrSquashfs && p.usrUrl) log.info(`rd.usr.url= is ignored: the appended /usr.squashfs wins`);

  await breakpoint("pre-udev");
  await step(signal, "device-manager", () => startDeviceManager(p, cfg));

  // rd.usr.url= implies rd.neednet=1.
  // A network source of /usr implies it too.
  const networkUsr = plan.kind === "remote" || plan.kind === "verity-net" || plan.kind === "nfs";
  if (p.neednet || networkUsr) {
    await step(signal, "network", () => {
      // Said at once instead of after the NIC timeout: no driver could ever bind.
      if (cfg.profile === "disk") {
        const [param, what] =
          plan.kind === "remote" ? (["rd.usr.url", "rd.usr.url="] as const)
          : plan.kind === "verity-net" ? (["verity.usr", `verity.usr=${formatNetworkUsr(plan.source)}`] as const)
          : plan.kind === "nfs" ? (["mount.usr", `mount.usr=${formatNfsExport(plan.export)}`] as const)
          : (["rd.neednet", "rd.neednet=1"] as const);
        throw new BootError(`this initrd was built with --profile disk, which has no network drivers; ${what} needs one built with --profile netboot`, { param });
      }
      return bringUpNetwork(p, devices);
    });
  }
  // A second device matching the reference may still show up while verity
  // and the mounts run; it fails the boot before the switch root.
  let unique: Promise<void> = Promise.resolve();
  const usr = await findAndOpenUsr(signal, plan, p, cfg, (settled) => {
    unique = settled;
    // Awaited below; until then a rejection must not count as unhandled.
    settled.catch(() => {});
  });
  await breakpoint("pre-mount");
  await step(signal, "mount-usr", async () => {
    await baseModules;
    if (usr.kind === "image") mountSquashfsFile(usr.path, SYSUSR);
    else if (usr.kind === "device" && (plan.kind === "verity" || plan.kind === "verity-net" || plan.kind === "plain")) mountUsrDevice(usr.path, SYSUSR, plan.fsType, plan.options);
    else if (plan.kind === "nfs") await mountNfsUsr(plan, SYSUSR);
  });
  await step(signal, "full-initrd", () => {
    mountFullInitrd();
    if (usr.kind === "image") handOverPxe(usr.path);
  });
  await modules.idleWithin(30_000);
  await awaitEarlyColdplug(process.env);
  await breakpoint("pre-switch-root");
  return step(signal, "switch-root", async () => {
    await unique;
    log.info(`/usr is ${mountSourceOf(NEW_ROOT + SYSUSR)} at ${SYSUSR}`);
    signal.throwIfAborted();
    if (plan.kind === "verity-net" && plan.source.kind === "nbd") settleNbdForStage2();
    return switchRoot({ init: p.init ?? "/init", args: [], env: process.env, onCommit: () => devices.stop(), initrdTimestamp });
  });
}

function describe(e: unknown): FailureReport {
  const inner = e instanceof StepFailure ? e.cause : e;
  const step = e instanceof StepFailure ? e.step : "unknown";
  return { step, message: messageOf(inner), param: inner instanceof BootError ? inner.param : undefined };
}

async function main(): Promise<never> {
  // Our start, as systemd would record its own: now minus the time since
  // Bun's clock origin at process start, so Bun's startup counts too.
  initrdTimestamp = bestEffort("reading the clocks for the initrd timestamp", () => {
    const now = dualTimestampUsec();
    const since = BigInt(Math.round(performance.now() * 1000));
    return { realtimeUsec: now.realtimeUsec - since, monotonicUsec: now.monotonicUsec - since };
  });
  // Ctrl-Alt-Del arrives as SIGINT once the kernel is told not to reboot
  // by itself; a clean reboot syncs first.
  bestEffort("handing Ctrl-Alt-Del to init", () => reboot(RB.DISABLE_CAD));
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
    const abandon = new AbortController();
    try {
      const stray = new Promise<never>((_, reject) => (failBoot = reject));
      // Settled late (while the emergency path runs) it must not count as unhandled.
      stray.catch(() => {});
      await Promise.race([boot(attempt, abandon.signal), stray]);
    } catch (e) {
      // A stray error wins the race while boot() may still be running: the
      // abort stops its fetch at once and its next step before it starts.
      abandon.abort(new Error(`boot attempt ${attempt} was abandoned`));
      try {
        await handleFailure(describe(e), params, config?.buildId ?? "unknown");
      } catch (inner) {
        // The failure path itself failed (no shell to spawn?): the only
        // safe thing left for PID 1 is a clean reboot.
        log.err(`emergency handling failed: ${messageOf(inner)}`);
        powerAction("reboot");
      }
    }
  }
}

void main();
