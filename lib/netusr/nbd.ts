// Attaching an NBD export as a block device: our handshake over a TCP socket
// (nbd-protocol.ts), then the kernel's netlink NBD interface takes the socket
// (NBD_CMD_CONNECT). From then on the kernel owns the connection: it serves
// reads of /dev/nbdN itself, and no process of ours stays behind for it, so
// the device outlives the switch root with nothing of stage 1 left running.
// (The older ioctl interface needs a process sitting in NBD_DO_IT for as long
// as the device lives.) docs/diskless-usr.md says what happens when the
// server goes away.
import fs from "node:fs";
import { log } from "../log.ts";
import { BootError, messageOf } from "../errors.ts";
import { close, errnoName, openGenlSocket, readExact, readNetlink, sendNetlink, setBlocking, SysError, tcpConnect, writeAll } from "../sys/index.ts";
import { attrU16, attrU32, decodeAttrs, decodeNetlinkMessages, encodeGenlRequest, familyRequest, replyOf, CTRL_ATTR_FAMILY_ID, type NlAttr } from "../sys/genl.ts";
import { blockSizeFor, negotiate, NbdHandshakeError, TransportClosed, TX_FLAG, type NbdExport } from "./nbd-protocol.ts";
import { formatNetworkUsr, type NetworkUsr } from "./ref.ts";
import { resolveHost } from "./resolve.ts";

export const NBD_GENL_FAMILY = "nbd";
export const NBD_GENL_VERSION = 1;
export const NBD_CMD = { CONNECT: 1, DISCONNECT: 2, RECONFIGURE: 3 } as const;
export const NBD_ATTR = { INDEX: 1, SIZE_BYTES: 2, BLOCK_SIZE_BYTES: 3, TIMEOUT: 4, SERVER_FLAGS: 5, CLIENT_FLAGS: 6, SOCKETS: 7, DEAD_CONN_TIMEOUT: 8, BACKEND_IDENTIFIER: 10 } as const;
export const NBD_SOCK_ITEM = 1, NBD_SOCK_FD = 1;

/** The whole handshake (connect, greeting, option, replies) must finish within this. */
const HANDSHAKE_TIMEOUT_MS = 30_000;
/** Tries at the server before the boot fails: a server that is starting, or a network still settling. */
const CONNECT_TRIES = 5;
const RETRY_DELAY_MS = 2_000;
const NETLINK_TIMEOUT_MS = 5_000;
/**
 * The kernel's per-request timeout while stage 1 runs: a server that
 * finished the handshake and then stopped answering fails the read (EIO)
 * instead of hanging PID 1 in a read of the verity superblock or the mount.
 */
export const STAGE1_REQUEST_TIMEOUT_S = 30;

/**
 * The attributes of NBD_CMD_CONNECT, pure. The export is always read-only
 * here, whatever the server allows: /usr is never written, and a writable
 * /dev/nbdN in stage 2 would let any process write to an image a fleet
 * shares. No dead-connection timeout: nothing is left in stage 2 to
 * reconnect, so a connection the peer closed fails the reads at once (EIO)
 * rather than after a wait. The backend identifier shows in
 * /sys/block/nbdN/backend, where stage 2 can see where /usr comes from.
 */
export function connectAttrs(fd: number, exp: NbdExport, backend: string): NlAttr[] {
  return [
    { type: NBD_ATTR.SIZE_BYTES, u64: exp.sizeBytes },
    { type: NBD_ATTR.BLOCK_SIZE_BYTES, u64: BigInt(blockSizeFor(exp)) },
    { type: NBD_ATTR.SERVER_FLAGS, u64: BigInt(exp.flags | TX_FLAG.HAS_FLAGS | TX_FLAG.READ_ONLY) },
    { type: NBD_ATTR.TIMEOUT, u64: BigInt(STAGE1_REQUEST_TIMEOUT_S) },
    { type: NBD_ATTR.BACKEND_IDENTIFIER, str: backend },
    { type: NBD_ATTR.SOCKETS, nested: [{ type: NBD_SOCK_ITEM, nested: [{ type: NBD_SOCK_FD, u32: fd }] }] },
  ];
}

/** The device of the last attach: a retry of the boot disconnects it and connects afresh. */
let attached: { url: string; index: number } | null = null;

export async function attachNbd(src: Extract<NetworkUsr, { kind: "nbd" }>, signal?: AbortSignal): Promise<string> {
  const url = formatNetworkUsr(src);
  // Whether the old connection still works cannot be told from userspace
  // (a device whose server went away keeps its size): a fresh connection
  // is always right, and the verity step then replaces the old mapping.
  if (attached) {
    const old = attached;
    attached = null;
    try {
      disconnect(old.index);
      log.info(`disconnected /dev/nbd${old.index} of the previous attempt (${old.url})`);
    } catch (e) {
      log.warn(`could not disconnect /dev/nbd${old.index} of the previous attempt: ${messageOf(e)}`);
    }
  }
  const address = await resolveHost(src.host, "verity.usr", "NBD server");
  let lastError = "";
  for (let attempt = 1; attempt <= CONNECT_TRIES; attempt++) {
    signal?.throwIfAborted();
    let fd = -1;
    try {
      const deadline = performance.now() + HANDSHAKE_TIMEOUT_MS;
      fd = await tcpConnect(address, src.port, HANDSHAKE_TIMEOUT_MS);
      const exp = await handshake(fd, src.exportName, deadline);
      log.info(`NBD ${url}: export of ${exp.sizeBytes} bytes, ${exp.flags & TX_FLAG.READ_ONLY ? "read-only" : "writable on the server (attached read-only)"}, via ${exp.via}`);
      setBlocking(fd);
      const index = kernelConnect(fd, exp, url);
      attached = { url, index };
      const dev = `/dev/nbd${index}`;
      await waitForNode(dev);
      return dev;
    } catch (e) {
      if (e instanceof BootError) throw e;
      lastError = messageOf(e);
      // A refusal by the server itself will not change on a retry.
      if (e instanceof NbdHandshakeError) break;
      if (attempt < CONNECT_TRIES) {
        log.info(`NBD ${url}: ${lastError}; trying again in ${RETRY_DELAY_MS / 1000} s (${attempt} of ${CONNECT_TRIES})`);
        await Bun.sleep(RETRY_DELAY_MS);
      }
    } finally {
      // The kernel holds its own reference to the socket once connected.
      if (fd >= 0) close(fd);
    }
  }
  throw new BootError(`cannot attach verity.usr=${url} (server ${address}:${src.port}): ${lastError}`, { param: "verity.usr" });
}

/**
 * Before the switch root: requests of stage 2 wait for the server as long as
 * TCP keeps the connection (no per-request timeout, as an NFS hard mount),
 * so that a server that is slow for a while does not end the connection for
 * good, with no process left to make a new one. Best effort: on failure
 * stage 2 keeps the stage-1 timeout, which the log says.
 */
export function settleNbdForStage2(): void {
  if (!attached) return;
  try {
    genlRequest(NBD_CMD.RECONFIGURE, [
      { type: NBD_ATTR.INDEX, u32: attached.index },
      { type: NBD_ATTR.TIMEOUT, u64: 0n },
    ], "NBD_CMD_RECONFIGURE");
    log.debug(`/dev/nbd${attached.index}: no request timeout from now on`);
  } catch (e) {
    log.warn(`/dev/nbd${attached.index} keeps its ${STAGE1_REQUEST_TIMEOUT_S} s request timeout in stage 2: ${messageOf(e)}`);
  }
}

async function handshake(fd: number, exportName: string, deadline: number): Promise<NbdExport> {
  const transport = {
    read: async (n: number) => {
      try {
        return await readExact(fd, n, deadline, "NBD handshake");
      } catch (e) {
        if (e instanceof SysError && e.code === "ECONNRESET") throw new TransportClosed(e.message);
        throw e;
      }
    },
    write: (b: Uint8Array) => writeAll(fd, b, deadline, "NBD handshake"),
  };
  try {
    return await negotiate(transport, exportName);
  } catch (e) {
    if (e instanceof NbdHandshakeError) throw new NbdHandshakeError(`NBD handshake for export "${exportName}": ${e.message}`);
    if (e instanceof TransportClosed) throw new Error(e.message);
    throw e;
  }
}

/** The generic netlink id of the "nbd" family; the nbd module must be loaded. */
function familyId(nl: number): number {
  const seq = 1;
  sendNetlink(nl, familyRequest(NBD_GENL_FAMILY, seq), "CTRL_CMD_GETFAMILY nbd");
  const reply = collect(nl, seq, "CTRL_CMD_GETFAMILY nbd");
  if (errnoName(reply.errno) === "ENOENT") throw new BootError(`the kernel has no NBD netlink interface: the nbd module is not loaded (a modprobe warning above says why) or not in this kernel`, { param: "verity.usr" });
  if (reply.errno !== 0 || reply.genl.length === 0) throw new BootError(`looking up the nbd netlink family failed (${errnoName(reply.errno)})`, { param: "verity.usr" });
  return attrU16(decodeAttrs(reply.genl[0]!.attrs), CTRL_ATTR_FAMILY_ID, "family id");
}

/** Reads datagrams until the kernel acknowledged request `seq` (or refused it). */
function collect(nl: number, seq: number, what: string): ReturnType<typeof replyOf> {
  const genl: ReturnType<typeof replyOf>["genl"] = [];
  for (let n = 0; n < 16; n++) {
    const r = replyOf(decodeNetlinkMessages(readNetlink(nl, NETLINK_TIMEOUT_MS, what)), seq);
    genl.push(...r.genl);
    if (r.done) return { ...r, genl };
  }
  throw new BootError(`netlink ${what}: no acknowledgement after 16 replies`, { param: "verity.usr" });
}

/** One NBD netlink command on a socket of its own; a refusal throws with the errno's name. */
function genlRequest(cmd: number, attrs: NlAttr[], what: string): ReturnType<typeof replyOf> {
  const nl = openGenlSocket();
  try {
    const family = familyId(nl);
    const seq = 2;
    sendNetlink(nl, encodeGenlRequest({ family, cmd, version: NBD_GENL_VERSION, seq, attrs }), what);
    const reply = collect(nl, seq, what);
    if (reply.errno !== 0) throw new BootError(`the kernel refused ${what} (${errnoName(reply.errno)}); the kernel log says why`, { param: "verity.usr" });
    return reply;
  } finally {
    close(nl);
  }
}

function kernelConnect(fd: number, exp: NbdExport, backend: string): number {
  const reply = genlRequest(NBD_CMD.CONNECT, connectAttrs(fd, exp, backend), "NBD_CMD_CONNECT");
  const withIndex = reply.genl.find((m) => decodeAttrs(m.attrs).has(NBD_ATTR.INDEX));
  if (!withIndex) throw new BootError("the kernel connected the NBD device but did not say which (no NBD_ATTR_INDEX)", { param: "verity.usr" });
  return attrU32(decodeAttrs(withIndex.attrs), NBD_ATTR.INDEX, "device index");
}

function disconnect(index: number): void {
  genlRequest(NBD_CMD.DISCONNECT, [{ type: NBD_ATTR.INDEX, u32: index }], `NBD_CMD_DISCONNECT of /dev/nbd${index}`);
}

/** devtmpfs makes the node when the device is added; for an index beyond the preallocated ones that can take a moment. */
async function waitForNode(dev: string): Promise<void> {
  for (let i = 0; i < 50; i++) {
    if (fs.existsSync(dev)) return;
    await Bun.sleep(20);
  }
  throw new BootError(`${dev} did not appear in /dev after the NBD connect (a retry of the boot disconnects it)`, { param: "verity.usr" });
}
