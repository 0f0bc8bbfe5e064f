// /usr over NFSv4 from nfs-ganesha (Debian's userspace NFS server) on
// 127.0.0.1, with the guest kernel's own NFS client:
//   - verity.usr=nfs://: the Flatcar-layout /usr image is a file on the
//     export, attached as a read-only loop device and verified block by block;
//   - mount.usr=nfs4:HOST:/EXPORT: a plain, unverified /usr, which needs
//     rd.usr.insecure=1.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { fixtures } from "./harness/fixtures.ts";
import { expectHandover } from "./harness/handover.ts";
import { CACHE, canaryBytes } from "./harness/images.ts";
import { bootRemoteToFailure, userNic } from "./harness/remote-usr.ts";
import { GUEST_HOST, startNfsServer, type NfsServer } from "./harness/servers.ts";
import { vmSlots } from "./harness/slots.ts";
import { bootToStage2, Vm } from "./harness/vm.ts";

const BOOT_MS = 300_000;
const NIC = userNic();
const fx = fixtures();
const CANARY_SHA = createHash("sha256").update(canaryBytes()).digest("hex");

// The export holds the /usr partition image (a hard link: same bytes, no copy
// of the 1 GiB sparse file); the plain /usr export is the /usr tree itself.
const IMAGES = path.join(CACHE, "nfs-images");
fs.rmSync(IMAGES, { recursive: true, force: true });
fs.mkdirSync(IMAGES, { recursive: true });
fs.linkSync(fx.usrA.path, path.join(IMAGES, "usr-a.verity"));
const USR_TREE = path.join(CACHE, "usr-a");

let nfs: NfsServer;
beforeAll(async () => {
  nfs = await startNfsServer(path.join(CACHE, "nfs-server"), { "/images": IMAGES, "/usr-a": USR_TREE });
});
afterAll(() => nfs?.stop());

const imageUrl = () => `nfs://${GUEST_HOST}:${nfs.port}/images/usr-a.verity`;

describe("/usr over NFSv4 (nfs-ganesha)", () => {
  test("nfs: verity.usr=nfs:// boots to stage 2 on /dev/mapper/usr over a loop device on the NFS file", async () => {
    const vm = new Vm({ name: "nfs-verity", extraArgs: NIC, append: `mount.usr=/dev/mapper/usr verity.usr=${imageUrl()} verity.usrhash=${fx.usrA.rootHash}` });
    const facts = await vmSlots.run(() => bootToStage2(vm, BOOT_MS));
    expectHandover(facts, { usrLoops: ["/run/bunboot/usr-nfs/usr-a.verity"] });
    expect(facts.sysusr).toMatch(/^\/dev\/mapper\/usr squashfs ro/);
    expect(facts.verity).toMatch(/^0 \d+ verity V$/);
    expect(facts.dm_slaves).toMatch(/^loop\d+$/);
    expect(facts.verity_table).not.toContain("panic_on_corruption");
    expect(facts.slot).toBe("USR-A");
    expect(facts.canary).toStartWith(CANARY_SHA);
    expect(vm.console).toMatch(new RegExp(`mounted 10\\.0\\.2\\.2:/images \\(NFS 4\\.2, server 10\\.0\\.2\\.2:${nfs.port}\\) on /run/bunboot/usr-nfs`));
    expect(vm.console).toMatch(new RegExp(`10\\.0\\.2\\.2:/images/usr-a\\.verity \\(${fx.usrA.bytes} bytes\\) is /dev/loop\\d+, read-only`));
  }, BOOT_MS + 90_000);

  test("nfs: a file the export does not have fails the boot naming it, nothing mounted", async () => {
    const url = `nfs://${GUEST_HOST}:${nfs.port}/images/nope.verity`;
    const vm = new Vm({ name: "nfs-missing-file", extraArgs: NIC, append: `verity.usr=${url} verity.usrhash=${fx.usrA.rootHash} rd.emergency.timeout=3` });
    const out = await vmSlots.run(() => bootRemoteToFailure(vm, BOOT_MS));
    expect(out).toContain('boot failed in step "attach-usr"');
    expect(out).toContain("verity.usr: cannot open nope.verity in 10.0.2.2:/images");
    expect(out).toContain("parameter to check: verity.usr=");
  }, BOOT_MS + 90_000);

  test("nfs: mount.usr=nfs4:HOST:/EXPORT with rd.usr.insecure=1 boots an unverified /usr, and says so", async () => {
    const vm = new Vm({ name: "nfs-plain", extraArgs: NIC, append: `mount.usr=nfs4:${GUEST_HOST}:/usr-a mount.usrflags=ro,port=${nfs.port} rd.usr.insecure=1` });
    const facts = await vmSlots.run(() => bootToStage2(vm, BOOT_MS));
    expectHandover(facts);
    expect(facts.sysusr).toMatch(/^10\.0\.2\.2:\/usr-a nfs4 ro/);
    expect(facts.mapper).toBe("missing");
    expect(facts.slot).toBe("USR-A");
    expect(facts.canary).toStartWith(CANARY_SHA);
    expect(vm.console).toContain("/usr from NFS nfs4:10.0.2.2:/usr-a, unverified (rd.usr.insecure=1)");
    expect(vm.console).toContain("/usr is 10.0.2.2:/usr-a over NFS and nothing verifies it (rd.usr.insecure=1)");
  }, BOOT_MS + 90_000);

  test("nfs: the same without rd.usr.insecure=1 is refused before the network is touched", async () => {
    const vm = new Vm({ name: "nfs-plain-refused", extraArgs: NIC, append: `mount.usr=nfs4:${GUEST_HOST}:/usr-a mount.usrflags=ro,port=${nfs.port} rd.emergency.timeout=3` });
    const out = await vmSlots.run(() => bootRemoteToFailure(vm, BOOT_MS));
    expect(out).toContain('boot failed in step "plan"');
    expect(out).toContain("is an NFS /usr, which nothing verifies");
    expect(out).toContain("parameter to check: rd.usr.insecure=");
    expect(out).not.toContain("network: eth0");
  }, BOOT_MS + 90_000);
});
