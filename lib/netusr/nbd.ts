// Attaching an NBD export as a block device: our handshake over a TCP socket
// (nbd-protocol.ts), then the kernel's netlink NBD interface takes the socket
// (NBD_CMD_CONNECT). From then on the kernel owns the connection: it serves
// reads of /dev/nbdN itself, and no process of ours stays behind for it, so
// the device outlives the switch root with nothing of stage 1 left running.
// (The older ioctl interface needs a process sitting in NBD_DO_IT for as long
// as the device lives.) docs/diskless-usr.md says what happens when the
// server goes away.
import fs from "node:fs";
import { lookup } from "node:dns/promises";
import { log } from "../log.ts";
import { BootError, messageOf } from "../errors.ts";
import { close, errnoNameOf, ERRNO, openGenlSocket, readExact, readNetlink, sendNetlink, setBlocking, tcpConnect, writeAll } from "../sys/index.ts";
import { attrU16, attrU32, decodeAttrs, decodeNetlinkMessages, encodeGenlRequest, familyRequest, replyOf, CTRL_ATTR_FAMILY_ID, type NlAttr } from "../sys/genl.ts";
import { blockSizeFor, negotiate, NbdHandshakeError, TX_FLAG, type NbdExport } from "./nbd-protocol.ts";
import { formatNetworkUsr, type NetworkUsr } from "./ref.ts";

export const NBD_GENL_FAMILY = "nbd";
const NBD_GENL_VERSION = 1;
const NBD_CMD_CONNECT = 1;
export const NBD_ATTR = { INDEX: 1, SIZE_BYTES: 2, BLOCK_SIZE_BYTES: 3, TIMEOUT: 4, SERVER_FLAGS: 5, CLIENT_FLAGS: 6, SOCKETS: 7, DEAD_CONN_TIMEOUT: 8, BACKEND_IDENTIFIER: 10 } as const;
const NBD_SOCK_ITEM = 1, NBD_SOCK_FD = 1;

/** Each handshake step (connect, a read, a write) must finish within this. */
const HANDSHAKE_TIMEOUT_MS = 10_000;
/** Tries at the server before the boot fails: a server that is starting, or a network still settling. */
const CONNECT_TRIES = 5;
const RETRY_DELAY_MS = 2_000;
const NETLINK_TIMEOUT_MS = 5_000;

/**
 * The attributes of NBD_CMD_CONNECT, pure. No NBD_ATTR_TIMEOUT: a request
 * then waits for the server for as long as TCP keeps the connection (as an
 * NFS hard mount does), instead of failing reads of /usr after a set time of
 * a slow or briefly unreachable server. No dead-connection timeout: nothing
 * is left in stage 2 to reconnect, so a connection the peer closed fails the
 * reads at once (EIO) rather than after a wait. The backend identifier shows
 * in /sys/block/nbdN/backend, where stage 2 can see where /usr comes from.
 */
export function connectAttrs(fd: number, exp: NbdExport, backend: string): NlAttr[] {
  return [
    { type: NBD_ATTR.SIZE_BYTES, u64: exp.sizeBytes },
    { type: NBD_ATTR.BLOCK_SIZE_BYTES, u64: BigInt(blockSizeFor(exp)) },
    { type: NBD_ATTR.SERVER_FLAGS, u64: BigInt(exp.flags) },
    { type: NBD_ATTR.BACKEND_IDENTIFIER, str: backend },
    { type: NBD_ATTR.SOCKETS, nested: [{ type: NBD_SOCK_ITEM, nested: [{ type: NBD_SOCK_FD, u32: fd }] }] },
  ];
}

/** The device of the last attach, reused by a retry of the boot while it is still connected. */
let attached: { url: string; dev: string } | null = null;

export async function attachNbd(src: Extract<NetworkUsr, { kind: "nbd" }>, signal?: AbortSignal): Promise<string> {
  const url = formatNetworkUsr(src);
  if (attached?.url === url && isConnected(attached.dev)) {
    log.info(`reusing ${attached.dev}, still connected to ${url} from the previous attempt`);
    return attached.dev;
  }
  const address = await resolve(src.host);
  let lastError = "";
  for (let attempt = 1; attempt <= CONNECT_TRIES; attempt++) {
    signal?.throwIfAborted();
    let fd = -1;
    try {
      fd = tcpConnect(address, src.port, HANDSHAKE_TIMEOUT_MS);
      const exp = handshake(fd, src.exportName);
      log.info(
        `NBD ${url}: export of ${exp.sizeBytes} bytes, ${exp.flags & TX_FLAG.READ_ONLY ? "read-only" : "writable (opened read-only here)"}, via ${exp.via}`,
      );
      setBlocking(fd);
      const index = kernelConnect(fd, exp, url);
      const dev = `/dev/nbd${index}`;
      await waitForNode(dev);
      attached = { url, dev };
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

async function resolve(host: string): Promise<string> {
  if (/^\d+\.\d+\.\d+\.\d+$/.test(host)) return host;
  try {
    return (await lookup(host, { family: 4 })).address;
  } catch (e) {
    throw new BootError(`verity.usr: cannot resolve the NBD server name ${host}: ${messageOf(e)} (no DNS server from DHCP or nameserver=?)`, { param: "verity.usr" });
  }
}

function handshake(fd: number, exportName: string): NbdExport {
  const step = () => performance.now() + HANDSHAKE_TIMEOUT_MS;
  try {
    return negotiate({ read: (n) => readExact(fd, n, step(), "NBD handshake"), write: (b) => writeAll(fd, b, step(), "NBD handshake") }, exportName);
  } catch (e) {
    if (e instanceof NbdHandshakeError) throw new NbdHandshakeError(`NBD handshake for export "${exportName}": ${e.message}`);
    throw e;
  }
}

/** The generic netlink id of the "nbd" family; the nbd module must be loaded. */
function familyId(nl: number): number {
  const seq = 1;
  sendNetlink(nl, familyRequest(NBD_GENL_FAMILY, seq), "CTRL_CMD_GETFAMILY nbd");
  const reply = collect(nl, seq, "CTRL_CMD_GETFAMILY nbd");
  if (reply.errno === ERRNO.ENOENT) throw new BootError(`the kernel has no NBD netlink interface: the nbd module is not loaded (a modprobe warning above says why) or not in this kernel`, { param: "verity.usr" });
  if (reply.errno !== 0 || reply.genl.length === 0) throw new BootError(`looking up the nbd netlink family failed (errno ${reply.errno})`, { param: "verity.usr" });
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

function kernelConnect(fd: number, exp: NbdExport, backend: string): number {
  const nl = openGenlSocket();
  try {
    const family = familyId(nl);
    const seq = 2;
    sendNetlink(nl, encodeGenlRequest({ family, cmd: NBD_CMD_CONNECT, version: NBD_GENL_VERSION, seq, attrs: connectAttrs(fd, exp, backend) }), "NBD_CMD_CONNECT");
    const reply = collect(nl, seq, "NBD_CMD_CONNECT");
    if (reply.errno !== 0) {
      const name = Object.entries(ERRNO).find(([, n]) => n === reply.errno)?.[0] ?? `errno ${reply.errno}`;
      throw new BootError(`the kernel refused the NBD connection (NBD_CMD_CONNECT: ${name}); the kernel log says why`, { param: "verity.usr" });
    }
    const withIndex = reply.genl.find((m) => decodeAttrs(m.attrs).has(NBD_ATTR.INDEX));
    if (!withIndex) throw new BootError("the kernel connected the NBD device but did not say which (no NBD_ATTR_INDEX)", { param: "verity.usr" });
    return attrU32(decodeAttrs(withIndex.attrs), NBD_ATTR.INDEX, "device index");
  } finally {
    close(nl);
  }
}

/** devtmpfs makes the node when the device is added; for an index beyond the preallocated ones that can take a moment. */
async function waitForNode(dev: string): Promise<void> {
  for (let i = 0; i < 50; i++) {
    if (fs.existsSync(dev)) return;
    await Bun.sleep(20);
  }
  throw new BootError(`${dev} did not appear in /dev after the NBD connect`, { param: "verity.usr" });
}

/** A connected NBD device has a size; a disconnected one reads as 0 sectors. */
function isConnected(dev: string): boolean {
  try {
    return Number(fs.readFileSync(`/sys/block/${dev.slice("/dev/".length)}/size`, "utf8")) > 0;
  } catch (e) {
    if (errnoNameOf(e) !== "ENOENT") log.debug(`reading the size of ${dev}: ${messageOf(e)}`);
    return false;
  }
}
