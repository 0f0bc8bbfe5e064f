// Diskless verity /usr block by block over NBD, from Debian's nbd-server on
// 127.0.0.1: the Flatcar-layout /usr partition image (verity tree at the
// configured offset) is the export, and dm-verity checks every block as the
// guest reads it, with nothing of /usr held in RAM but the page cache.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { startTestServer, type TestServer } from "../lib/testing/testserver.ts";
import { fixtures } from "./harness/fixtures.ts";
import { expectHandover } from "./harness/handover.ts";
import { CACHE, canaryBytes, sh, usrWithFiller } from "./harness/images.ts";
import { bootRemoteToFailure, bootRemoteToStage2, guestUrl, initrdWithHashListText, streamHashListOf, userNic } from "./harness/remote-usr.ts";
import { freePort, GUEST_HOST, startNbdServer, type NbdServer } from "./harness/servers.ts";
import { greeting, infoExport, reply } from "../lib/testing/nbd-script.ts";
import { REP, TX_FLAG } from "../lib/netusr/nbd-protocol.ts";
import { vmSlots } from "./harness/slots.ts";
import { bootToStage2, stage2Facts, Vm } from "./harness/vm.ts";

const BOOT_MS = 300_000;
const NIC = userNic();
const fx = fixtures();
const canary = canaryBytes();
const CANARY_SHA = createHash("sha256").update(canary).digest("hex");

/**
 * The /usr image with one byte of the canary file changed after
 * veritysetup format: the hash tree still describes the original. Where the
 * canary sits is found in the squashfs (stored as it is: incompressible).
 */
function tamperedImage(): { path: string; offset: number } {
  const squashfs = fs.readFileSync(fx.usrSquashfs);
  const at = squashfs.indexOf(canary.subarray(0, 4096));
  if (at < 0) throw new Error("the canary file is not stored verbatim in the /usr squashfs");
  const out = path.join(CACHE, "usr-a-tampered.verity");
  fs.rmSync(out, { force: true });
  sh(["cp", "--sparse=always", fx.usrA.path, out], "copying the /usr image");
  const offset = at + 100_000;
  const fd = fs.openSync(out, "r+");
  try {
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, offset);
    b[0]! ^= 0xff;
    fs.writeSync(fd, b, 0, 1, offset);
  } finally {
    fs.closeSync(fd);
  }
  return { path: out, offset };
}

const tampered = tamperedImage();
// A /usr of some size for the RAM comparison: 96 MiB of incompressible filler.
const big = usrWithFiller("usr-big", 96, fx.bootengine);
const bigHashListInitrd = initrdWithHashListText("big-hashlist", streamHashListOf(fs.readFileSync(big.squashfs)));
let nbd: NbdServer;
let http: TestServer;

beforeAll(async () => {
  nbd = await startNbdServer(path.join(CACHE, "nbd-server"), { usr: fx.usrA.path, tampered: tampered.path, big: big.verity.path });
  http = await startTestServer({ "/big.squashfs": { path: big.squashfs } });
});
afterAll(async () => {
  nbd?.stop();
  await http?.stop();
});

const nbdUrl = (server: NbdServer, name: string) => `nbd://${GUEST_HOST}:${server.port}/${name}`;

function verityOverNbd(server: NbdServer, name: string, extra = ""): string {
  const rootHash = name === "big" ? big.verity.rootHash : fx.usrA.rootHash;
  return `mount.usr=/dev/mapper/usr verity.usr=${nbdUrl(server, name)} verity.usrhash=${rootHash} ${extra}`.trim();
}

describe("diskless verity /usr over NBD (Debian's nbd-server)", () => {
  test("nbd: boots to stage 2 on /dev/mapper/usr over /dev/nbd0, with more RAM left than the same image fetched over HTTP into RAM", async () => {
    const [viaNbd, viaHttp] = await Promise.all([
      vmSlots.run(async () => {
        const vm = new Vm({ name: "nbd-usr", extraArgs: NIC, append: verityOverNbd(nbd, "big", "") });
        return { vm, facts: await bootToStage2(vm, BOOT_MS) };
      }),
      vmSlots.run(async () => {
        const vm = new Vm({ name: "nbd-compare-http", initrd: bigHashListInitrd, extraArgs: NIC, append: `rd.usr.url=${guestUrl(http, "/big.squashfs")}` });
        return { vm, facts: await bootRemoteToStage2(vm, BOOT_MS) };
      }),
    ]);
    const { vm, facts } = viaNbd;
    expectHandover(facts);
    expect(facts.sysusr).toMatch(/^\/dev\/mapper\/usr squashfs ro/);
    expect(facts.verity).toMatch(/^0 \d+ verity V$/);
    expect(facts.mapper).toBe("block");
    expect(facts.slot).toBe("USR-A");
    expect(facts.usr_squashfs).toBe("absent");
    expect(facts.dm_slaves).toBe("nbd0");
    expect(facts.nbd_backends).toBe(nbdUrl(nbd, "big"));
    // A network source fails a corrupt block with EIO rather than panicking.
    expect(facts.verity_table).toMatch(/^0 \d+ verity 1 43:0 43:0 4096 4096 \d+ \d+ sha256 [0-9a-f]{64} [0-9a-f]+$/);
    expect(facts.canary).toStartWith(CANARY_SHA);
    expect(vm.console).toMatch(new RegExp(`NBD ${nbdUrl(nbd, "big").replaceAll(".", "\\.")}: export of ${big.verity.bytes} bytes, read-only, via NBD_OPT_GO`));
    expect(vm.console).toContain(`/usr from dm-verity over ${nbdUrl(nbd, "big")}, read block by block`);
    expect(vm.console).toMatch(/network: eth0 10\.0\.2\.15\/24 via 10\.0\.2\.2 \(dhcp\)/);

    const ramNbd = Number(facts.mem_available_kib);
    const ramHttp = Number(viaHttp.facts.mem_available_kib);
    const image = fs.statSync(big.squashfs).size;
    console.log(`MemAvailable in stage 2: NBD ${ramNbd} KiB, HTTP-to-RAM ${ramHttp} KiB (the /usr squashfs is ${Math.round(image / 1024)} KiB)`);
    // The fetched image sits in RAM for as long as the system runs; over NBD
    // only the blocks read are cached, and the cache can be reclaimed. Other
    // uses of RAM vary by some 25 MiB between boots, so the image is large
    // enough for the difference to be its own.
    expect(ramNbd - ramHttp).toBeGreaterThan((image / 1024) * 0.6);
  }, 2 * BOOT_MS + 120_000);

  test("nbd: a block changed after formatting is never served: reading it fails with EIO, the system stays up", async () => {
    const vm = new Vm({ name: "nbd-tampered", extraArgs: NIC, append: verityOverNbd(nbd, "tampered") });
    const facts = await bootToStage2(vm, BOOT_MS);
    expectHandover(facts);
    expect(facts.sysusr).toMatch(/^\/dev\/mapper\/usr squashfs ro/);
    // busybox prints the error in place of a hash, never the hash of changed data.
    expect(facts.canary).toMatch(/(Input\/output|I\/O) error/);
    expect(facts.canary).not.toMatch(/^[0-9a-f]{64}/);
    expect(vm.console).toMatch(new RegExp(`device-mapper: verity: 43:0: data block ${Math.floor(tampered.offset / 4096)} is corrupted`));
    expect(vm.console).not.toContain("Kernel panic");
  }, BOOT_MS + 90_000);

  test("nbd: a wrong verity.usrhash fails before any mapping, as on disk", async () => {
    const wrong = fx.usrA.rootHash.replace(/^./, (c) => (c === "0" ? "1" : "0"));
    const vm = new Vm({ name: "nbd-wrong-hash", extraArgs: NIC, append: `verity.usr=${nbdUrl(nbd, "usr")} verity.usrhash=${wrong} rd.emergency.timeout=3` });
    const out = await bootRemoteToFailure(vm, BOOT_MS);
    expect(out).toContain('boot failed in step "verity"');
    expect(out).toContain("verity.usrhash does not match the hash tree on /dev/nbd0");
    expect(out).toContain(`expected (verity.usrhash=): ${wrong}`);
    expect(out).toContain(`found on disk:              ${fx.usrA.rootHash}`);
    expect(out).toContain("parameter to check: verity.usrhash=");
    expect(out).not.toContain("dm-verity /dev/mapper/usr:");
  }, BOOT_MS + 90_000);

  test("nbd: an export the server does not have is named in the failure, with the server's answer", async () => {
    const vm = new Vm({ name: "nbd-unknown-export", extraArgs: NIC, append: `verity.usr=${nbdUrl(nbd, "nope")} verity.usrhash=${fx.usrA.rootHash} rd.emergency.timeout=3` });
    const out = await bootRemoteToFailure(vm, BOOT_MS);
    expect(out).toContain('boot failed in step "attach-usr"');
    expect(out).toContain(`cannot attach verity.usr=${nbdUrl(nbd, "nope")}`);
    expect(out).toMatch(/NBD handshake for export "nope": the server (has no export of that name|refused it)/);
    expect(out).toContain("parameter to check: verity.usr=");
  }, BOOT_MS + 90_000);

  test("nbd: after the switch root the server goes away: a block never read fails with EIO at once, nothing hangs", async () => {
    // A server of its own, so that stopping it touches no other scenario.
    const own = await startNbdServer(path.join(CACHE, "nbd-server-outage"), { usr: fx.usrA.path });
    try {
      const vm = new Vm({ name: "nbd-outage", extraArgs: NIC, append: verityOverNbd(own, "usr", "bunboot_test.outage") });
      try {
        await vm.expect("STAGE2: waiting for the server to go away", BOOT_MS);
        own.stop();
        await Bun.sleep(1000);
        vm.send("\n");
        await vm.expect("STAGE2: done", 120_000);
        await vm.waitExit(60_000);
      } finally {
        vm.kill();
      }
      const facts = stage2Facts(vm.console);
      expect(facts.after_outage).toMatch(/(Input\/output|I\/O) error/);
      expect(Number(facts.outage_read_s)).toBeLessThan(30);
    } finally {
      own.stop();
    }
  }, BOOT_MS + 200_000);

  test("nbd: a server that answers the handshake and then no read fails the boot within the request timeout, no hang", async () => {
    // Ours, on loopback: a correct NBD_OPT_GO answer for a 1 GiB export, then silence.
    const port = await freePort();
    const server = Bun.listen<{ got: number }>({
      hostname: "127.0.0.1",
      port,
      socket: {
        open(sock) {
          sock.data = { got: 0 };
          sock.write(greeting());
        },
        data(sock, bytes) {
          const before = sock.data.got;
          sock.data.got += bytes.length;
          // Client flags (4) + option header (16) + NBD_OPT_GO data (3 + 4 + 2 + 2 for "usr"): answer once.
          if (before < 31 && sock.data.got >= 31) {
            sock.write(reply(REP.INFO, infoExport(BigInt(fx.usrA.bytes), TX_FLAG.HAS_FLAGS | TX_FLAG.READ_ONLY)));
            sock.write(reply(REP.ACK, new Uint8Array(0)));
          }
        },
      },
    });
    try {
      const vm = new Vm({ name: "nbd-stalled", extraArgs: NIC, append: `verity.usr=nbd://${GUEST_HOST}:${port}/usr verity.usrhash=${fx.usrA.rootHash} rd.emergency.timeout=3` });
      const out = await bootRemoteToFailure(vm, BOOT_MS);
      expect(out).toContain("via NBD_OPT_GO");
      expect(out).toContain('boot failed in step "verity"');
      expect(out).toMatch(/no dm-verity hash tree on \/dev\/nbd0 at byte offset \d+ .*EIO/);
      expect(out).toMatch(/nbd0: (Connection timed out|Dead connection)/);
      // Failed by the 30 s request timeout, not by a hang broken only by the test's own limit.
      const attached = Number(out.match(/\[\s*([0-9.]+)\] bunboot\[attach-usr\]: step attach-usr: done/)![1]);
      const failed = Number(out.match(/\[\s*([0-9.]+)\] bunboot\[init\]: boot failed in step "verity"/)![1]);
      expect(failed - attached).toBeLessThan(75);
    } finally {
      server.stop(true);
    }
  }, BOOT_MS + 120_000);

  test("nbd: the server restarts while the boot waits in a shell: the retry connects afresh and boots", async () => {
    const dir = path.join(CACHE, "nbd-server-restart");
    let own = await startNbdServer(dir, { usr: fx.usrA.path });
    try {
      const vm = new Vm({ name: "nbd-restart", extraArgs: NIC, append: verityOverNbd(own, "usr", "rd.break=pre-mount rd.emergency.timeout=120") });
      try {
        await vm.expect("breakpoint pre-mount: rd.break=pre-mount", BOOT_MS);
        await vm.expect("bunboot# ", 60_000);
        // The connection /dev/nbd0 has closes; a new server answers on the same port.
        own.stop();
        own = await startNbdServer(dir, { usr: fx.usrA.path }, own.port);
        const mark = vm.console.length;
        vm.send("exit\n");
        await vm.expect("Press Enter for emergency shell", BOOT_MS, mark);
        vm.send("\n");
        await vm.expect("bunboot# ", 60_000, mark);
        vm.send("exit\n");
        const second = mark + (await vm.expect("boot attempt 2", 60_000, mark)).index!;
        // rd.break=pre-mount stops the second attempt too.
        await vm.expect("breakpoint pre-mount: rd.break=pre-mount", BOOT_MS, second);
        await vm.expect("bunboot# ", 60_000, second);
        vm.send("exit\n");
        await vm.expect("STAGE2: done", BOOT_MS, second);
        await vm.waitExit(60_000);
      } finally {
        vm.kill();
      }
      const out = vm.console;
      expect(out).toContain('boot failed in step "mount-usr"');
      expect(out).toContain("cannot read the start of /dev/mapper/usr to find its filesystem type: EIO");
      expect(out).toContain(`disconnected /dev/nbd0 of the previous attempt (${nbdUrl(own, "usr")})`);
      expect(out).toMatch(/replacing the existing \/dev\/mapper\/usr mapping/);
      const facts = stage2Facts(out);
      expectHandover(facts);
      expect(facts.sysusr).toMatch(/^\/dev\/mapper\/usr squashfs ro/);
      expect(facts.dm_slaves).toMatch(/^nbd[1-9]\d*$/);
      expect(facts.canary).toStartWith(CANARY_SHA);
    } finally {
      own.stop();
    }
  }, 2 * BOOT_MS + 120_000);
});
