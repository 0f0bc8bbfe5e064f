// Diskless boots with /usr over TFTP from QEMU's built-in server
// (-netdev user,tftp=DIR: libslirp's, which nobody here wrote), verified
// by the initrd's stream-hash list while it streams.
import { describe, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { CACHE } from "./harness/images.ts";
import { bootRemoteToFailure, bootRemoteToStage2, CHUNK, initrdWithHashList as withHashList, remoteUsr, userNic } from "./harness/remote-usr.ts";
import { Vm } from "./harness/vm.ts";

const BOOT_MS = 300_000;
const { image } = remoteUsr();

// The directory QEMU serves: the image, and a copy with one byte flipped.
const TFTP_DIR = path.join(CACHE, "tftp");
fs.mkdirSync(TFTP_DIR, { recursive: true });
fs.writeFileSync(path.join(TFTP_DIR, "usr.squashfs"), image);
const TAMPER_AT = 5 * CHUNK + 100;
{
  const t = Buffer.from(image);
  t[TAMPER_AT]! ^= 0xff;
  fs.writeFileSync(path.join(TFTP_DIR, "tampered.squashfs"), t);
}
const NIC = userNic(undefined, undefined, TFTP_DIR);

const bootToFailure = (vm: Vm) => bootRemoteToFailure(vm, BOOT_MS);

describe("diskless /usr over TFTP (QEMU's server)", () => {
  test("tftp: boots to stage 2 from rd.usr.url=tftp://10.0.2.2/usr.squashfs, verified by the stream-hash list", async () => {
    const vm = new Vm({ name: "tftp-usr", initrd: withHashList(), extraArgs: NIC, append: "rd.usr.url=tftp://10.0.2.2/usr.squashfs" });
    await bootRemoteToStage2(vm, BOOT_MS);
    expect(vm.console).toMatch(/network: eth0 10\.0\.2\.15\/24 via 10\.0\.2\.2 \(dhcp\)/);
    expect(vm.console).toContain(`fetching /usr from tftp://10.0.2.2/usr.squashfs (verified by stream-hash list (${Math.ceil(image.length / CHUNK)} chunks of ${CHUNK} bytes))`);
    expect(vm.console).toMatch(new RegExp(`fetched /usr: ${image.length} bytes verified, ${image.length} bytes of squashfs \\(squashfs\\) in [0-9.]+ s\\n`));
    expect(vm.console).not.toContain("resum");
    // QEMU's server (libslirp) grants blksize up to 1428 and tsize, and ignores windowsize.
    expect(vm.console).toContain(`TFTP 10.0.2.2:69: options acknowledged: blksize 1428, windowsize 1, tsize ${image.length}`);
  }, BOOT_MS + 90_000);

  test("tftp: a tampered image is refused at the first byte of the bad chunk, nothing is mounted", async () => {
    const vm = new Vm({ name: "tftp-tampered", initrd: withHashList(), extraArgs: NIC, append: "rd.usr.url=tftp://10.0.2.2/tampered.squashfs rd.emergency.timeout=3" });
    const out = await bootToFailure(vm);
    const chunk = Math.floor(TAMPER_AT / CHUNK);
    expect(out).toContain('boot failed in step "fetch-usr"');
    expect(out).toContain("tftp://10.0.2.2/tampered.squashfs");
    expect(out).toContain(`verification failed at byte ${chunk * CHUNK}: hash mismatch in chunk ${chunk} (bytes ${chunk * CHUNK} to ${(chunk + 1) * CHUNK - 1})`);
    expect(out).toContain(`at byte offset ${chunk * CHUNK}`);
    expect(out).toContain("parameter to check: rd.usr.url=");
    expect(out).toContain("nothing was mounted");
  }, BOOT_MS + 90_000);

  test("tftp: a missing file is the server's ERROR 1, final, not a timeout", async () => {
    const vm = new Vm({ name: "tftp-missing", initrd: withHashList(), extraArgs: NIC, append: "rd.usr.url=tftp://10.0.2.2/nope.squashfs rd.emergency.timeout=3" });
    const out = await bootToFailure(vm);
    expect(out).toMatch(/TFTP 10\.0\.2\.2:69: the server answered ERROR 1 for "nope\.squashfs": /);
    expect(out).not.toContain("timed out");
    expect(out).toContain("parameter to check: rd.usr.url=");
  }, BOOT_MS + 90_000);
});
