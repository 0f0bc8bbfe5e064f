// The diskless /usr boot that several scenario files share (remote.test.ts
// over every protocol, nics.test.ts over every NIC model): the fixture image,
// its stream-hash list and an initrd carrying it, the QEMU user-network NIC,
// and what a good diskless boot must have printed in stage 2.
import { expect } from "bun:test";
import fs from "node:fs";
import { createHash } from "node:crypto";
import { formatStreamHashList, StreamHasher } from "../../lib/streamhash.ts";
import type { TestServer } from "../../lib/testing/testserver.ts";
import { fixtures, initrdWith } from "./fixtures.ts";
import { GUEST_HOST } from "./servers.ts";
import { bootToStage2, type Vm } from "./vm.ts";

/** The chunk size of the stream-hash list the initrd carries. */
export const CHUNK = 256 * 1024;
export const DEFAULT_MAC = "52:54:00:12:34:56";

export interface RemoteUsr {
  /** The /usr squashfs served to the guest, and its bytes. */
  path: string;
  image: Buffer;
  sha256: string;
  hashList: string;
}

let cached: RemoteUsr | null = null;

export function remoteUsr(): RemoteUsr {
  if (cached) return cached;
  const file = fixtures().usrSquashfs;
  const image = fs.readFileSync(file);
  cached = { path: file, image, sha256: createHash("sha256").update(image).digest("hex"), hashList: streamHashListOf(image) };
  return cached;
}

/** The stream-hash list of an image, in CHUNK-byte chunks. */
export function streamHashListOf(image: Uint8Array): string {
  const hasher = new StreamHasher(CHUNK);
  hasher.update(image);
  return formatStreamHashList(hasher.finish());
}

/** dist/initrd.img plus a stream-hash list (as an appended cpio, named `name`): rd.usr.url= alone is then verified. */
export function initrdWithHashListText(name: string, hashList: string): string {
  return initrdWith(name, [{ path: "etc/bunboot/usr.hashes", data: new TextEncoder().encode(hashList) }]);
}

/** dist/initrd.img plus the stream-hash list of remoteUsr(). */
export function initrdWithHashList(): string {
  return initrdWithHashListText("hashlist", remoteUsr().hashList);
}

/** A URL on a loopback test server as the guest reaches it through QEMU's user network. */
export function guestUrl(server: TestServer, urlPath: string): string {
  return `${server.url.replace("127.0.0.1", GUEST_HOST)}${urlPath}`;
}

/**
 * One NIC of the given QEMU model on a user-mode network (DHCP server at
 * 10.0.2.2, host loopback as 10.0.2.2). With `tftpDir`, QEMU's own TFTP
 * server answers on 10.0.2.2:69 with the files of that directory.
 */
export function userNic(model = "virtio-net-pci", mac = DEFAULT_MAC, tftpDir?: string): string[] {
  if (tftpDir !== undefined && /[,\s]/.test(tftpDir)) throw new Error(`a TFTP directory for QEMU's -netdev may not contain commas or blanks: ${tftpDir}`);
  return ["-netdev", `user,id=n0${tftpDir !== undefined ? `,tftp=${tftpDir}` : ""}`, "-device", `${model},netdev=n0,mac=${mac}`];
}

/** Waits for stage 2 of a diskless boot and checks it runs on the fetched image; its facts. */
/** A diskless boot that must fail: the emergency prompt, power off, and nothing of /usr mounted. */
export async function bootRemoteToFailure(vm: Vm, bootMs: number): Promise<string> {
  try {
    await vm.expect("Press Enter for emergency shell", bootMs);
    await vm.waitExit(60_000);
  } finally {
    vm.kill();
  }
  expect(vm.console).not.toContain("STAGE2:");
  expect(vm.console).not.toMatch(/mounted .* on \/sysusr\/usr/);
  return vm.console;
}

export async function bootRemoteToStage2(vm: Vm, bootMs: number): Promise<Record<string, string>> {
  const facts = await bootToStage2(vm, bootMs);
  expect(facts.pid).toBe("1");
  expect(facts.sysusr).toMatch(/^\/dev\/loop\d+ squashfs ro/);
  expect(facts.slot).toBe("USR-A");
  expect(facts.usr_squashfs).toBe("present");
  return facts;
}
