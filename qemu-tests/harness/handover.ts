// What every scenario that reaches stage 2 checks about the hand-over, on the
// facts the stage-2 test init printed (harness/images.ts, STAGE2_INIT).
import { expect } from "bun:test";

export function expectHandover(facts: Record<string, string>, opts: { usrLoops?: string[] } = {}): void {
  // The full initrd runs as PID 1 on the overlay, and no stage-1 process is left.
  expect(facts.pid).toBe("1");
  expect(facts.root).toBe("overlay");
  expect(facts.stage1_procs).toBe("");
  // The old initramfs was emptied: its ~100 MiB Bun executable no longer
  // holds RAM (rootfs is a tmpfs, so its files count as Shmem).
  expect(Number(facts.shmem_kib)).toBeLessThan(40 * 1024);
  // The boot log survived in /run for stage 2.
  expect(Number(facts.bootlog)).toBeGreaterThan(0);
  // Nothing of the first stage stays attached: the full initrd's own loop
  // device is the only one (a payload image would show up here), beside a
  // loop device under /usr itself (an image file on NFS).
  expect(facts.loops!.trim().split(/\s+/).sort()).toEqual([...(opts.usrLoops ?? []), "/sysusr/usr/lib/flatcar/bootengine.img"].sort());
  expect(facts.payload_mounts).toBe("0");
}

/**
 * What the verity boot of the Flatcar-layout disk (USR-A by PARTUUID, the
 * default payload layout) shows, on any architecture: the hand-over, /usr
 * on the verity mapping, and the console lines that name the device and
 * the layout.
 */
export function expectVerityBootFromUsrA(facts: Record<string, string>, consoleText: string, opts: { rootHash: string; usrPartUuid: string; usrDevice: string }): void {
  expectHandover(facts);
  expect(facts.sysusr).toMatch(/^\/dev\/mapper\/usr squashfs ro/);
  expect(facts.verity).toMatch(/^0 \d+ verity V$/);
  expect(facts.mapper).toBe("block");
  expect(facts.slot).toBe("USR-A");
  expect(facts.cmdline).toContain(`verity.usrhash=${opts.rootHash}`);
  expect(consoleText).toContain(`verity.usr=PARTUUID=${opts.usrPartUuid} is ${opts.usrDevice}`);
  // The default layout: the init ran from the squashfs payload, which the hand-over checks freed.
  expect(consoleText).toContain("bunboot starting (PID 1, running from the payload image /.payload.img)");
}
