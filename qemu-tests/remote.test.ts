// Diskless boots: /usr fetched over HTTP(S) and SFTP from real servers on
// this machine's loopback (the guest reaches it as 10.0.2.2 through QEMU's
// user network), verified while it streams.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { createHash } from "node:crypto";
import { encodeNewc } from "../lib/initrd/cpio.ts";
import { startTestServer, type TestServer } from "../lib/testing/testserver.ts";
import { fixtures, initrdWith, requireInitrd } from "./harness/fixtures.ts";
import { CACHE, concatInitrds, cpioArchive } from "./harness/images.ts";
import { bootRemoteToFailure, bootRemoteToStage2, CHUNK, guestUrl as guest, initrdWithHashList as withHashList, remoteUsr, userNic } from "./harness/remote-usr.ts";
import { freePort, GUEST_HOST, startSshd, type Sshd } from "./harness/servers.ts";
import { Vm } from "./harness/vm.ts";

const BOOT_MS = 300_000;
const NIC = userNic();

const fx = fixtures();
const { image, sha256: sha, hashList } = remoteUsr();
const tamperedPath = path.join(CACHE, "usr-tampered.squashfs");
const TAMPER_AT = 5 * CHUNK + 100;
{
  const t = Buffer.from(image);
  t[TAMPER_AT]! ^= 0xff;
  fs.writeFileSync(tamperedPath, t);
}
// 116 bytes of newc whose filesize field is "-0000070": a reader that takes
// a signed number would step backwards and spin forever.
const negativeCpio = path.join(CACHE, "negative-size.cpio");
fs.writeFileSync(
  negativeCpio,
  "070701" + ["00000000", "000081A4", "00000000", "00000000", "00000000", "00000000", "-0000070", "00000000", "00000000", "00000000", "00000000", "00000002", "00000000"].join("") + "a\0pad!",
);
const pxeCpio = path.join(CACHE, "usr-pxe.cpio");
fs.writeFileSync(pxeCpio, Buffer.concat(encodeNewc([{ kind: "file", path: "usr.squashfs", data: image }])));

let http: TestServer;
let httpsServer: TestServer;
let sshd: Sshd;
beforeAll(async () => {
  http = await startTestServer({
    "/usr.squashfs": { path: fx.usrSquashfs },
    "/chunked.squashfs": { path: fx.usrSquashfs, chunked: true },
    "/drop.squashfs": { path: fx.usrSquashfs, dropAfter: 3 * CHUNK + 5000 },
    "/tampered.squashfs": { path: tamperedPath },
    "/usr.cpio": { path: pxeCpio },
    "/negative.cpio": { path: negativeCpio },
  });
  const key = path.join(CACHE, "tls.key");
  const cert = path.join(CACHE, "tls.crt");
  const r = Bun.spawnSync(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=10.0.2.2"]);
  if (r.exitCode !== 0) throw new Error(`openssl: ${r.stderr}`);
  httpsServer = await startTestServer({ "/usr.squashfs": { path: fx.usrSquashfs } }, { tls: { cert: fs.readFileSync(cert, "utf8"), key: fs.readFileSync(key, "utf8") } });
  sshd = await startSshd(path.join(CACHE, "sshd"));
});
afterAll(async () => {
  await http?.stop();
  await httpsServer?.stop();
  sshd?.stop();
});

const bootToStage2 = (vm: Vm) => bootRemoteToStage2(vm, BOOT_MS);

const bootToFailure = (vm: Vm) => bootRemoteToFailure(vm, BOOT_MS);

describe("diskless /usr over the network", () => {
  test("HTTP via DHCP, verified by the initrd's stream-hash list", async () => {
    const vm = new Vm({ name: "remote-http-dhcp", initrd: withHashList(), extraArgs: NIC, append: `rd.usr.url=${guest(http, "/usr.squashfs")}` });
    await bootToStage2(vm);
    expect(vm.console).toMatch(/network: eth0 10\.0\.2\.15\/24 via 10\.0\.2\.2 \(dhcp\)/);
    expect(vm.console).toContain(`verified by stream-hash list (${Math.ceil(image.length / CHUNK)} chunks of ${CHUNK} bytes)`);
    expect(vm.console).toMatch(new RegExp(`fetched /usr: ${image.length} bytes verified`));
  }, BOOT_MS + 90_000);

  test("HTTP via static ip=, no Content-Length, whole-image rd.usr.hash", async () => {
    const vm = new Vm({
      name: "remote-http-static-chunked",
      extraArgs: NIC,
      append: `ip=10.0.2.20::10.0.2.2:255.255.255.0:node:eth0:none:10.0.2.3 rd.usr.url=${guest(http, "/chunked.squashfs")} rd.usr.hash=sha256:${sha}`,
    });
    await bootToStage2(vm);
    expect(vm.console).toMatch(/network: eth0 10\.0\.2\.20\/24 via 10\.0\.2\.2 \(static\), dns 10\.0\.2\.3/);
    expect(vm.console).toContain(`verified by sha256 of the whole image (${sha})`);
  }, BOOT_MS + 90_000);

  test("HTTPS with a self-signed certificate, accepted because the hash is pinned", async () => {
    const vm = new Vm({ name: "remote-https", extraArgs: NIC, append: `rd.usr.url=${guest(httpsServer, "/usr.squashfs")} rd.usr.hash=sha256:${sha}` });
    await bootToStage2(vm);
    expect(vm.console).toContain("TLS certificate checks are skipped for the /usr download: its content is verified against the pinned hash instead");
  }, BOOT_MS + 90_000);

  test("SFTP from OpenSSH's sshd with a key and a pinned host key", async () => {
    const initrd = initrdWith("sftp", [
      { path: "etc/bunboot/usr.hashes", data: new TextEncoder().encode(hashList) },
      { path: "etc/bunboot/sftp/id", data: new TextEncoder().encode(sshd.clientKey) },
      { path: "etc/bunboot/sftp/hostkey", data: new TextEncoder().encode(sshd.hostKeyFingerprint + "\n") },
    ]);
    const vm = new Vm({ name: "remote-sftp", initrd, extraArgs: NIC, append: `rd.usr.url=sftp://root@${GUEST_HOST}:${sshd.port}${fx.usrSquashfs}` });
    await bootToStage2(vm);
    expect(vm.console).toMatch(new RegExp(`fetched /usr: ${image.length} bytes verified`));
  }, BOOT_MS + 90_000);

  test("a connection dropped mid-transfer resumes from the last verified chunk", async () => {
    const vm = new Vm({ name: "remote-resume", initrd: withHashList(), extraArgs: NIC, append: `rd.usr.url=${guest(http, "/drop.squashfs")}` });
    await bootToStage2(vm);
    expect(vm.console).toMatch(/connection dropped after \d+ verified bytes .*; resuming from byte \d+ \(attempt 2 of 6\)/);
    expect(vm.console).toMatch(/resumed 1 time\(s\)/);
    expect(http.requests.filter((r) => r.path === "/drop.squashfs").at(-1)?.range).toMatch(/^bytes=\d+-$/);
  }, BOOT_MS + 90_000);

  test("a PXE cpio holding usr.squashfs is unwrapped while it streams", async () => {
    const vm = new Vm({ name: "remote-cpio", extraArgs: NIC, append: `rd.usr.url=${guest(http, "/usr.cpio")} rd.usr.hash=sha256:${createHash("sha256").update(fs.readFileSync(pxeCpio)).digest("hex")}` });
    await bootToStage2(vm);
    expect(vm.console).toMatch(/bytes of squashfs \(cpio\)/);
  }, BOOT_MS + 90_000);

  test("a tampered image fails at the right offset, reaches the prompt, mounts nothing", async () => {
    const vm = new Vm({ name: "remote-tampered", initrd: withHashList(), extraArgs: NIC, append: `rd.usr.url=${guest(http, "/tampered.squashfs")} rd.emergency.timeout=3` });
    const out = await bootToFailure(vm);
    const chunk = Math.floor(TAMPER_AT / CHUNK);
    expect(out).toContain('boot failed in step "fetch-usr"');
    expect(out).toContain(guest(http, "/tampered.squashfs"));
    expect(out).toContain(`verification failed at byte ${chunk * CHUNK}: hash mismatch in chunk ${chunk} (bytes ${chunk * CHUNK} to ${(chunk + 1) * CHUNK - 1})`);
    expect(out).toContain("nothing was mounted");
  }, BOOT_MS + 90_000);

  test("404: the status is the message, not a hash error", async () => {
    const vm = new Vm({ name: "remote-404", initrd: withHashList(), extraArgs: NIC, append: `rd.usr.url=${guest(http, "/nope.squashfs")} rd.emergency.timeout=3` });
    const out = await bootToFailure(vm);
    expect(out).toContain("HTTP 404 Not Found");
    expect(out).not.toContain("hash mismatch");
    expect(out).toContain("parameter to check: rd.usr.url=");
  }, BOOT_MS + 90_000);

  test("an appended /usr.squashfs wins over rd.usr.url", async () => {
    const before = http.requests.length;
    const initrd = concatInitrds(path.join(CACHE, "initrd-appended-url.img"), [requireInitrd(), cpioArchive(path.join(CACHE, "usr-appended.cpio"), [{ path: "usr.squashfs", hostFile: fx.usrSquashfs }])]);
    const vm = new Vm({ name: "remote-appended-wins", initrd, extraArgs: NIC, append: `rd.usr.url=${guest(http, "/tampered.squashfs")} rd.usr.hash=sha256:${sha}` });
    await bootToStage2(vm);
    expect(vm.console).toContain("rd.usr.url= is ignored: the appended /usr.squashfs wins");
    expect(http.requests.length).toBe(before);
  }, BOOT_MS + 90_000);

  test("a hostile cpio (negative file size) with only a whole-image hash: the hash is checked first, the prompt comes", async () => {
    // Anyone on the path can serve this: the hash is of the real image, so it must fail as a mismatch before any unwrapping.
    const vm = new Vm({ name: "remote-negative-cpio", extraArgs: NIC, append: `rd.usr.url=${guest(http, "/negative.cpio")} rd.usr.hash=sha256:${sha} rd.emergency.timeout=3` });
    const out = await bootToFailure(vm);
    expect(out).toContain('boot failed in step "fetch-usr"');
    expect(out).toContain("parameter to check: rd.usr.hash=");
    expect(out).toContain("nothing was mounted");
  }, BOOT_MS + 90_000);

  test("the same cpio with its own hash pinned: the unwrapper refuses the header instead of spinning", async () => {
    const own = createHash("sha256").update(fs.readFileSync(negativeCpio)).digest("hex");
    const vm = new Vm({ name: "remote-negative-cpio-pinned", extraArgs: NIC, append: `rd.usr.url=${guest(http, "/negative.cpio")} rd.usr.hash=sha256:${own} rd.emergency.timeout=3` });
    const out = await bootToFailure(vm);
    expect(out).toContain('boot failed in step "fetch-usr"');
    expect(out).toMatch(/cpio: .*(filesize|header)/);
    expect(out).toContain("nothing was mounted");
  }, BOOT_MS + 90_000);

  test("SFTP with a password but no pinned host key: refused before any connection, so the password goes nowhere", async () => {
    // A listener standing in for a rogue server: it must never be contacted.
    const port = await freePort();
    let contacted = 0;
    const rogue = net.createServer((c) => {
      contacted++;
      c.destroy();
    });
    await new Promise<void>((resolve) => rogue.listen(port, "127.0.0.1", resolve));
    try {
      const initrd = initrdWith("sftp-password-unpinned", [{ path: "etc/bunboot/sftp/password", data: new TextEncoder().encode("fleet-secret-pw\n") }]);
      const vm = new Vm({ name: "remote-sftp-password-unpinned", initrd, extraArgs: NIC, append: `rd.usr.url=sftp://root@${GUEST_HOST}:${port}/usr.squashfs rd.usr.insecure=1 rd.emergency.timeout=3` });
      const out = await bootToFailure(vm);
      expect(out).toContain('boot failed in step "fetch-usr"');
      expect(out).toContain("--sftp-host-key");
      expect(out).not.toContain("fleet-secret-pw");
    } finally {
      rogue.close();
    }
    expect(contacted).toBe(0);
  }, BOOT_MS + 90_000);
});
