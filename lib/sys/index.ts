// The only module that touches bun:ffi. Every raw syscall the init needs is
// declared here once with its C signature and wrapped in a typed function that
// throws SysError (with errno name) instead of returning -1, so callers never
// see pointers or integer error codes.
import fs from "node:fs";
import { dlopen, FFIType, ptr, read } from "bun:ffi";
import { decodeDmHeader, decodeTargets, DM_FLAG, DmError, dmRequest, encodeDmIoctl, type DmCommand, type DmHeader, type DmTarget } from "./dm.ts";

const { i32, u32, u64, ptr: P } = FFIType;

// Loaded lazily: host-side tools import modules that import this file without
// ever making a syscall, and dlopen would fail on a non-glibc host.
let libc: ReturnType<typeof open> | undefined;
function open() {
  return dlopen("libc.so.6", {
    mount: { args: [P, P, P, u64, P], returns: i32 },
    umount2: { args: [P, i32], returns: i32 },
    chroot: { args: [P], returns: i32 },
    socket: { args: [i32, i32, i32], returns: i32 },
    bind: { args: [i32, P, u32], returns: i32 },
    connect: { args: [i32, P, u32], returns: i32 },
    getsockopt: { args: [i32, i32, i32, P, P], returns: i32 },
    read: { args: [i32, P, u64], returns: FFIType.i64 },
    write: { args: [i32, P, u64], returns: FFIType.i64 },
    // Variadic in C; the one int argument passes as on a fixed signature on x86-64 and arm64.
    fcntl: { args: [i32, i32, u64], returns: i32 },
    setsockopt: { args: [i32, i32, i32, P, u32], returns: i32 },
    poll: { args: [P, u64, i32], returns: i32 },
    close: { args: [i32], returns: i32 },
    ioctl: { args: [i32, u64, u64], returns: i32 },
    reboot: { args: [i32], returns: i32 },
    sync: { args: [], returns: FFIType.void },
    mknod: { args: [P, u32, u64], returns: i32 },
    getpid: { args: [], returns: i32 },
    setsid: { args: [], returns: i32 },
    waitpid: { args: [i32, P, i32], returns: i32 },
    memfd_create: { args: [P, u32], returns: i32 },
    clock_gettime: { args: [i32, P], returns: i32 },
    execve: { args: [P, P, P], returns: i32 },
    __errno_location: { args: [], returns: P },
    // Generic syscall(2), for calls glibc has no wrapper for (kexec_file_load).
    syscall: { args: [FFIType.i64, FFIType.i64, FFIType.i64, u64, P, u64], returns: FFIType.i64 },
  });
}
function c() {
  libc ??= open();
  return libc.symbols;
}

/**
 * Linux errno values by name: asm-generic/errno-base.h and errno.h, which
 * x86_64 and arm64 use. Aliases are left out (EWOULDBLOCK is EAGAIN,
 * EDEADLOCK is EDEADLK, glibc's ENOTSUP is EOPNOTSUPP), so that each number
 * has one name and a comparison with an alias cannot silently never match.
 */
export const ERRNO = {
  EPERM: 1, ENOENT: 2, ESRCH: 3, EINTR: 4, EIO: 5, ENXIO: 6, E2BIG: 7, ENOEXEC: 8, EBADF: 9, ECHILD: 10, EAGAIN: 11,
  ENOMEM: 12, EACCES: 13, EFAULT: 14, ENOTBLK: 15, EBUSY: 16, EEXIST: 17, EXDEV: 18, ENODEV: 19, ENOTDIR: 20,
  EISDIR: 21, EINVAL: 22, ENFILE: 23, EMFILE: 24, ENOTTY: 25, ETXTBSY: 26, EFBIG: 27, ENOSPC: 28, ESPIPE: 29,
  EROFS: 30, EMLINK: 31, EPIPE: 32, EDOM: 33, ERANGE: 34, EDEADLK: 35, ENAMETOOLONG: 36, ENOLCK: 37, ENOSYS: 38,
  ENOTEMPTY: 39, ELOOP: 40, ENOMSG: 42, EIDRM: 43, ECHRNG: 44, EL2NSYNC: 45, EL3HLT: 46, EL3RST: 47, ELNRNG: 48,
  EUNATCH: 49, ENOCSI: 50, EL2HLT: 51, EBADE: 52, EBADR: 53, EXFULL: 54, ENOANO: 55, EBADRQC: 56, EBADSLT: 57,
  EBFONT: 59, ENOSTR: 60, ENODATA: 61, ETIME: 62, ENOSR: 63, ENONET: 64, ENOPKG: 65, EREMOTE: 66, ENOLINK: 67,
  EADV: 68, ESRMNT: 69, ECOMM: 70, EPROTO: 71, EMULTIHOP: 72, EDOTDOT: 73, EBADMSG: 74, EOVERFLOW: 75, ENOTUNIQ: 76,
  EBADFD: 77, EREMCHG: 78, ELIBACC: 79, ELIBBAD: 80, ELIBSCN: 81, ELIBMAX: 82, ELIBEXEC: 83, EILSEQ: 84,
  ERESTART: 85, ESTRPIPE: 86, EUSERS: 87, ENOTSOCK: 88, EDESTADDRREQ: 89, EMSGSIZE: 90, EPROTOTYPE: 91,
  ENOPROTOOPT: 92, EPROTONOSUPPORT: 93, ESOCKTNOSUPPORT: 94, EOPNOTSUPP: 95, EPFNOSUPPORT: 96, EAFNOSUPPORT: 97,
  EADDRINUSE: 98, EADDRNOTAVAIL: 99, ENETDOWN: 100, ENETUNREACH: 101, ENETRESET: 102, ECONNABORTED: 103,
  ECONNRESET: 104, ENOBUFS: 105, EISCONN: 106, ENOTCONN: 107, ESHUTDOWN: 108, ETOOMANYREFS: 109, ETIMEDOUT: 110,
  ECONNREFUSED: 111, EHOSTDOWN: 112, EHOSTUNREACH: 113, EALREADY: 114, EINPROGRESS: 115, ESTALE: 116, EUCLEAN: 117,
  ENOTNAM: 118, ENAVAIL: 119, EISNAM: 120, EREMOTEIO: 121, EDQUOT: 122, ENOMEDIUM: 123, EMEDIUMTYPE: 124,
  ECANCELED: 125, ENOKEY: 126, EKEYEXPIRED: 127, EKEYREVOKED: 128, EKEYREJECTED: 129, EOWNERDEAD: 130,
  ENOTRECOVERABLE: 131, ERFKILL: 132, EHWPOISON: 133,
} as const;
export type ErrnoName = keyof typeof ERRNO;
/** What SysError.code holds: the name, or the number for one outside the table. */
export type ErrnoCode = ErrnoName | `errno ${number}`;

const ERRNO_NAME_OF = new Map<number, ErrnoName>(Object.entries(ERRNO).map(([name, n]) => [n, name as ErrnoName]));

/** The name of an errno number, or "errno N" for one outside the table. */
export function errnoName(n: number): ErrnoCode {
  return ERRNO_NAME_OF.get(n) ?? `errno ${n}`;
}

/** The errno name a failed call carries: a SysError's, or the `code` of a Node fs or socket error. */
export function errnoNameOf(e: unknown): ErrnoName | undefined {
  const code = e instanceof SysError ? e.code : (e as NodeJS.ErrnoException | null)?.code;
  return typeof code === "string" && Object.hasOwn(ERRNO, code) ? (code as ErrnoName) : undefined;
}

/** Human texts for the errors a boot is likely to meet; the others show their name only. */
const ERRNO_TEXT: Partial<Record<ErrnoName, string>> = {
  EPERM: "operation not permitted", ENOENT: "no such file or directory", EIO: "input/output error",
  ENXIO: "no such device or address", EBUSY: "device or resource busy", ENODEV: "no such device (filesystem type or driver not available)",
  EINVAL: "invalid argument", ENOTDIR: "not a directory", EACCES: "permission denied", ENOMEM: "out of memory",
  ENOSPC: "no space left on device", EROFS: "read-only file system", EEXIST: "file exists", ENOTTY: "inappropriate ioctl for device",
  EBADMSG: "bad message (corrupt data)", EUCLEAN: "structure needs cleaning (corrupt filesystem)", ENOSYS: "function not implemented",
};

export class SysError extends Error {
  readonly code: ErrnoCode;
  constructor(
    readonly call: string,
    readonly errno: number,
    readonly detail: string,
  ) {
    const name = ERRNO_NAME_OF.get(errno);
    const code = name ?? `errno ${errno}`;
    super(`${call}(${detail}): ${(name && ERRNO_TEXT[name]) ?? code} (${code})`);
    this.code = code;
  }
}

function errno(): number {
  const p = c().__errno_location();
  return p === null ? 0 : read.i32(p, 0);
}

function check(ret: number | bigint, call: string, detail: string): number {
  const n = Number(ret);
  if (n < 0) throw new SysError(call, errno(), detail);
  return n;
}

// NUL-terminated copy of a JS string for C; kept referenced by the caller's
// frame for the duration of the call.
function cstr(s: string): Buffer {
  return Buffer.from(s + "\0", "utf8");
}

export { MS_FLAGS as MS } from "../msflags.ts";

export function mount(source: string, target: string, fstype: string | null, flags: number, data: string | null): void {
  const s = cstr(source), t = cstr(target), f = fstype === null ? null : cstr(fstype), d = data === null ? null : cstr(data);
  check(
    c().mount(ptr(s), ptr(t), f === null ? null : ptr(f), flags, d === null ? null : ptr(d)),
    "mount",
    `${source} on ${target}${fstype ? ` type ${fstype}` : ""}${data ? ` -o ${data}` : ""}`,
  );
}

export const MNT_DETACH = 2;
export function umount(target: string, flags = 0): void {
  const t = cstr(target);
  check(c().umount2(ptr(t), flags), "umount", target);
}

export function chroot(path: string): void {
  const p = cstr(path);
  check(c().chroot(ptr(p)), "chroot", path);
}

export function close(fd: number): void {
  c().close(fd);
}

export function sync(): void {
  c().sync();
}

export function getpid(): number {
  return c().getpid();
}

export function setsid(): number {
  return check(c().setsid(), "setsid", "");
}

const S_IFCHR = 0o020000, S_IFBLK = 0o060000;
export function mknod(path: string, kind: "char" | "block", mode: number, major: number, minor: number): void {
  const p = cstr(path);
  // glibc's makedev() encoding of dev_t.
  const dev = (BigInt(major & 0xfff) << 8n) | BigInt(minor & 0xff) | (BigInt(minor & ~0xff) << 12n) | (BigInt(major & ~0xfff) << 32n);
  check(c().mknod(ptr(p), (kind === "char" ? S_IFCHR : S_IFBLK) | mode, dev), "mknod", path);
}

// ioctl with an integer argument or a pointer to a buffer the kernel reads/writes.
export function ioctl(fd: number, request: number, arg: number | Uint8Array, what: string): number {
  const a = typeof arg === "number" ? arg : ptr(arg);
  return check(c().ioctl(fd, request, a), "ioctl", what);
}

// --- terminal echo (termios) ---
// TCGETS/TCSETS and the c_lflag offset are the same on x86-64 and arm64
// (asm-generic); the buffer is larger than the kernel's struct termios.
const TCGETS = 0x5401, TCSETS = 0x5402, TCFLSH = 0x540b, TCIFLUSH = 0, LFLAG_OFFSET = 12, ECHO = 0o10;
/**
 * Turns echo of typed characters on or off (for a password prompt); returns
 * whether echo was on before, or null when fd is not a terminal.
 */
export function setEcho(fd: number, on: boolean): boolean | null {
  const t = new Uint8Array(64);
  const v = new DataView(t.buffer);
  if (Number(c().ioctl(fd, TCGETS, ptr(t))) < 0) return null;
  const lflag = v.getUint32(LFLAG_OFFSET, true);
  v.setUint32(LFLAG_OFFSET, on ? lflag | ECHO : lflag & ~ECHO, true);
  if (Number(c().ioctl(fd, TCSETS, ptr(t))) < 0) return null;
  return (lflag & ECHO) !== 0;
}

/** Drops input typed but not yet read (tcflush TCIFLUSH); false when fd is not a terminal. */
export function discardInput(fd: number): boolean {
  return Number(c().ioctl(fd, TCFLSH, TCIFLUSH)) >= 0;
}

const WNOHANG = 1;
/** Reaps one specific child if it has exited; returns whether it did. */
export function reapIfExited(pid: number): boolean {
  const status = new Uint8Array(4);
  return Number(c().waitpid(pid, ptr(status), WNOHANG)) === pid;
}

// --- reboot(2) ---
export const RB = {
  AUTOBOOT: 0x01234567,
  HALT_SYSTEM: 0xcdef0123,
  POWER_OFF: 0x4321fedc,
  DISABLE_CAD: 0,
  ENABLE_CAD: 0x89abcdef | 0,
  /** Jump into the kernel loaded by kexec_file_load (LINUX_REBOOT_CMD_KEXEC). */
  KEXEC: 0x45584543,
} as const;
export function reboot(cmd: number): void {
  check(c().reboot(cmd | 0), "reboot", `0x${(cmd >>> 0).toString(16)}`);
}

// --- poll(2) ---
export const POLLIN = 1;
/** Waits until fd is readable; false on timeout. */
export function pollIn(fd: number, timeoutMs: number): boolean {
  return pollFor(fd, POLLIN, timeoutMs);
}

/**
 * Waits until fd has one of `events`; false on timeout (a negative timeout
 * waits for good). A signal (EINTR) resumes the wait for the time left.
 */
function pollFor(fd: number, events: number, timeoutMs: number): boolean {
  const pfd = new Uint8Array(8);
  const v = new DataView(pfd.buffer);
  v.setInt32(0, fd, true);
  v.setInt16(4, events, true);
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const left = timeoutMs < 0 ? -1 : Math.max(0, Math.ceil(deadline - performance.now()));
    const n = Number(c().poll(ptr(pfd), 1, left));
    if (n >= 0) return n > 0;
    const e = errno();
    if (e !== ERRNO.EINTR) throw new SysError("poll", e, `fd ${fd}`);
  }
}

// --- netlink kobject uevents ---
const AF_NETLINK = 16, SOCK_DGRAM = 2, SOCK_CLOEXEC = 0o2000000;
const NETLINK_KOBJECT_UEVENT = 15, SOL_SOCKET = 1, SO_RCVBUFFORCE = 33;

/**
 * Opens a blocking netlink socket subscribed to kernel uevents (multicast
 * group 1). It is blocking on purpose: the caller reads it with async
 * fs.read, which Bun runs on its thread pool, so the JS thread is woken by
 * each datagram instead of polling.
 */
export function openUeventSocket(): number {
  const fd = check(c().socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_KOBJECT_UEVENT), "socket", "NETLINK_KOBJECT_UEVENT");
  // A coldplug burst can queue thousands of events; the default buffer would
  // drop some and a lost disk "add" would leave us waiting for nothing.
  const size = new Uint8Array(4);
  new DataView(size.buffer).setInt32(0, 8 * 1024 * 1024, true);
  check(c().setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, ptr(size), 4), "setsockopt", "SO_RCVBUFFORCE");
  // struct sockaddr_nl { u16 family; u16 pad; u32 pid; u32 groups; }
  const addr = new Uint8Array(12);
  const v = new DataView(addr.buffer);
  v.setUint16(0, AF_NETLINK, true);
  v.setUint32(4, 0, true);
  v.setUint32(8, 1, true);
  check(c().bind(fd, ptr(addr), 12), "bind", "netlink uevent group 1");
  return fd;
}

// --- TCP and generic netlink, for handing a socket to the NBD driver ---
// The socket must be a real fd the kernel can take over (NBD_ATTR_SOCKETS), so
// it is made here rather than by Bun's networking, which keeps its fds to
// itself.
const AF_INET = 2, SOCK_STREAM = 1, SOCK_RAW = 3, SOCK_NONBLOCK = 0o4000, NETLINK_GENERIC = 16;
const F_GETFL = 3, F_SETFL = 4, O_NONBLOCK = 0o4000, SO_ERROR = 4, POLLOUT = 4;


// The handshake's reads and writes wait without blocking the event loop:
// a non-blocking attempt, then a short sleep (growing to 20 ms), so that PID
// 1's signal handlers, timers and log keep running while a server is slow.
const IO_WAIT_MIN_MS = 1, IO_WAIT_MAX_MS = 20;

/**
 * A TCP connection to an IPv4 address, made within `timeoutMs`; the fd is
 * non-blocking until handed on (setBlocking). ETIMEDOUT when the server does
 * not answer in time.
 */
export async function tcpConnect(ipv4: string, port: number, timeoutMs: number): Promise<number> {
  const octets = ipv4.split(".").map(Number);
  if (octets.length !== 4 || octets.some((o) => !Number.isInteger(o) || o < 0 || o > 255)) throw new SysError("connect", ERRNO.EINVAL, `${ipv4}:${port} is not an IPv4 address`);
  const fd = check(c().socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), "socket", "AF_INET stream");
  try {
    // struct sockaddr_in { u16 family; u16 port (network order); u8 addr[4]; u8 zero[8]; }
    const addr = new Uint8Array(16);
    const v = new DataView(addr.buffer);
    v.setUint16(0, AF_INET, true);
    v.setUint16(2, port, false);
    addr.set(octets, 4);
    if (c().connect(fd, ptr(addr), 16) < 0) {
      const e = errno();
      if (e !== ERRNO.EINPROGRESS) throw new SysError("connect", e, `${ipv4}:${port}`);
      // Waited for as readExact waits, without blocking the event loop.
      const deadline = performance.now() + timeoutMs;
      for (let wait = IO_WAIT_MIN_MS; !pollFor(fd, POLLOUT, 0); wait = Math.min(IO_WAIT_MAX_MS, wait * 2)) {
        if (performance.now() >= deadline) throw new SysError("connect", ERRNO.ETIMEDOUT, `${ipv4}:${port}, no answer within ${timeoutMs} ms`);
        await Bun.sleep(wait);
      }
      const err = new Uint8Array(4), len = new Uint8Array(4);
      new DataView(len.buffer).setUint32(0, 4, true);
      check(c().getsockopt(fd, SOL_SOCKET, SO_ERROR, ptr(err), ptr(len)), "getsockopt", "SO_ERROR");
      const soError = new DataView(err.buffer).getInt32(0, true);
      if (soError !== 0) throw new SysError("connect", soError, `${ipv4}:${port}`);
    }
    return fd;
  } catch (e) {
    close(fd);
    throw e;
  }
}

/** Clears O_NONBLOCK, so that a kernel user of the socket (the NBD driver) waits as it expects to. */
export function setBlocking(fd: number): void {
  const flags = check(c().fcntl(fd, F_GETFL, 0), "fcntl", "F_GETFL");
  check(c().fcntl(fd, F_SETFL, flags & ~O_NONBLOCK), "fcntl", "F_SETFL");
}

/**
 * Reads exactly n bytes from a non-blocking fd before `deadline`
 * (performance.now()). ETIMEDOUT past the deadline; ECONNRESET when the peer
 * closed the connection (read returned 0).
 */
export async function readExact(fd: number, n: number, deadline: number, what: string): Promise<Uint8Array> {
  const buf = new Uint8Array(n);
  let got = 0;
  let wait = IO_WAIT_MIN_MS;
  while (got < n) {
    const r = Number(c().read(fd, ptr(buf, got), n - got));
    if (r > 0) {
      got += r;
      wait = IO_WAIT_MIN_MS;
      continue;
    }
    if (r === 0) throw new SysError("read", ERRNO.ECONNRESET, `${what}: the peer closed the connection after ${got} of ${n} bytes`);
    const e = errno();
    if (e !== ERRNO.EAGAIN && e !== ERRNO.EINTR) throw new SysError("read", e, what);
    if (performance.now() >= deadline) throw new SysError("read", ERRNO.ETIMEDOUT, `${what}: ${got} of ${n} bytes before the deadline`);
    await Bun.sleep(wait);
    wait = Math.min(IO_WAIT_MAX_MS, wait * 2);
  }
  return buf;
}

/** Writes all of `data` to a non-blocking fd before `deadline`, waiting as readExact does. */
export async function writeAll(fd: number, data: Uint8Array, deadline: number, what: string): Promise<void> {
  let sent = 0;
  let wait = IO_WAIT_MIN_MS;
  while (sent < data.length) {
    const r = Number(c().write(fd, ptr(data, sent), data.length - sent));
    if (r > 0) {
      sent += r;
      wait = IO_WAIT_MIN_MS;
      continue;
    }
    const e = r < 0 ? errno() : ERRNO.EAGAIN;
    if (e !== ERRNO.EAGAIN && e !== ERRNO.EINTR) throw new SysError("write", e, what);
    if (performance.now() >= deadline) throw new SysError("write", ERRNO.ETIMEDOUT, `${what}: ${sent} of ${data.length} bytes before the deadline`);
    await Bun.sleep(wait);
    wait = Math.min(IO_WAIT_MAX_MS, wait * 2);
  }
}

/** A generic netlink socket (to the kernel; non-blocking, read with readNetlink). */
export function openGenlSocket(): number {
  return check(c().socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_GENERIC), "socket", "NETLINK_GENERIC");
}

/** Sends one netlink message to the kernel (an unconnected netlink socket sends to port 0, the kernel). */
export function sendNetlink(fd: number, msg: Uint8Array, what: string): void {
  const r = Number(c().write(fd, ptr(msg), msg.length));
  if (r < 0) throw new SysError("write", errno(), `netlink ${what}`);
  if (r !== msg.length) throw new SysError("write", ERRNO.EMSGSIZE, `netlink ${what}: ${r} of ${msg.length} bytes sent`);
}

/** Reads one netlink datagram within timeoutMs; ETIMEDOUT when none comes. */
export function readNetlink(fd: number, timeoutMs: number, what: string): Uint8Array {
  // A reply to our small requests is a few hundred bytes; 64 KiB holds any datagram.
  const buf = new Uint8Array(65536);
  for (;;) {
    if (!pollFor(fd, POLLIN, timeoutMs)) throw new SysError("read", ERRNO.ETIMEDOUT, `netlink ${what}: no reply within ${timeoutMs} ms`);
    const r = Number(c().read(fd, ptr(buf), buf.length));
    if (r >= 0) return buf.subarray(0, r);
    const e = errno();
    if (e !== ERRNO.EAGAIN && e !== ERRNO.EINTR) throw new SysError("read", e, `netlink ${what}`);
  }
}

// --- loop devices ---
const LOOP_CTL_GET_FREE = 0x4c82, LOOP_CONFIGURE = 0x4c0a;
const LO_FLAGS_READ_ONLY = 1, LO_FLAGS_AUTOCLEAR = 4;

/**
 * Attaches a file read-only to a free loop device. AUTOCLEAR detaches the
 * device on its last close, so a failed boot attempt leaves no loop device
 * behind; it also means the returned fd must stay open until the mount holds
 * the device, or the kernel detaches it at once.
 */
export function attachLoop(fileFd: number, backingPath: string, openDev: (path: string) => number): { dev: string; fd: number } {
  const ctl = openDev("/dev/loop-control");
  let n: number;
  try {
    n = ioctl(ctl, LOOP_CTL_GET_FREE, 0, "LOOP_CTL_GET_FREE");
  } finally {
    close(ctl);
  }
  const dev = `/dev/loop${n}`;
  const loopFd = openDev(dev);
  try {
    // struct loop_config { u32 fd; u32 block_size; struct loop_info64 info (232 bytes); u64 reserved[8]; }
    const cfg = new Uint8Array(4 + 4 + 232 + 64);
    const v = new DataView(cfg.buffer);
    v.setUint32(0, fileFd, true);
    // loop_info64: lo_flags at offset 52 within the struct.
    v.setUint32(8 + 52, LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR, true);
    // lo_file_name[64] at offset 56: informational, shown by losetup.
    cfg.set(Buffer.from(backingPath.slice(0, 63)), 8 + 56);
    ioctl(loopFd, LOOP_CONFIGURE, cfg, `LOOP_CONFIGURE ${dev} <- ${backingPath}`);
  } catch (e) {
    close(loopFd);
    throw e;
  }
  return { dev, fd: loopFd };
}

// --- device-mapper ---
// The buffers are encoded and decoded in lib/sys/dm.ts (pure, tested); these
// wrappers only make the ioctls on an fd of /dev/mapper/control.
export const DM_CONTROL = "/dev/mapper/control";

function dmCall(fd: number, cmd: DmCommand, buf: Uint8Array, what: string): DmHeader {
  ioctl(fd, dmRequest(cmd), buf, `DM_${cmd} ${what}`);
  return decodeDmHeader(buf);
}

/** Creates an empty, suspended mapped device; the reply's dev is its device number. */
export function dmCreate(fd: number, name: string, uuid: string, flags: number): DmHeader {
  return dmCall(fd, "DEV_CREATE", encodeDmIoctl({ name, uuid, flags }), name);
}

/** Loads a table into the device's inactive slot; dmResume makes it live. */
export function dmLoadTable(fd: number, name: string, targets: readonly DmTarget[], flags: number): DmHeader {
  return dmCall(fd, "TABLE_LOAD", encodeDmIoctl({ name, targets, flags }), name);
}

/** Resumes the device, swapping in a loaded table first. */
export function dmResume(fd: number, name: string): DmHeader {
  return dmCall(fd, "DEV_SUSPEND", encodeDmIoctl({ name }), `${name} (resume)`);
}

export function dmRemove(fd: number, name: string): void {
  dmCall(fd, "DEV_REMOVE", encodeDmIoctl({ name }), name);
}

// Far more than one verity line needs (~300 bytes); the cap only bounds the
// retries should a reply keep saying the buffer was too small.
const DM_TABLE_BUFFER = 16 * 1024, DM_TABLE_BUFFER_MAX = 1024 * 1024;

/**
 * The live table of a device: each target's status, or with `table` its table
 * line (DM_TABLE_STATUS, with DM_STATUS_TABLE_FLAG for the table). Null when
 * no device has that name (ENXIO).
 */
export function dmTargets(fd: number, name: string, kind: "status" | "table"): { header: DmHeader; targets: DmTarget[] } | null {
  const flags = kind === "table" ? DM_FLAG.STATUS_TABLE : 0;
  for (let size = DM_TABLE_BUFFER; ; size *= 2) {
    const buf = encodeDmIoctl({ name, flags, bufferSize: size });
    try {
      ioctl(fd, dmRequest("TABLE_STATUS"), buf, `DM_TABLE_STATUS ${name}${kind === "table" ? " (table)" : ""}`);
    } catch (e) {
      if (e instanceof SysError && e.code === "ENXIO") return null;
      throw e;
    }
    const reply = decodeTargets(buf);
    if (reply.kind === "ok") return reply;
    if (size >= DM_TABLE_BUFFER_MAX) throw new DmError(`the ${kind} of ${name} does not fit in ${DM_TABLE_BUFFER_MAX} bytes`);
  }
}

// --- memfd_create(2), clock_gettime(2) ---
/**
 * An anonymous in-memory file holding `data`, for handing state to the next
 * init across execve. Deliberately without MFD_CLOEXEC (unlike every other fd
 * here): surviving the exec is its purpose. The data is written with pwrite
 * at offset 0, so the file offset stays at 0 and the reader starts at the top.
 */
export function memfdWithData(name: string, data: Uint8Array): number {
  const n = cstr(name);
  const fd = check(c().memfd_create(ptr(n), 0), "memfd_create", name);
  try {
    let done = 0;
    // pwrite (a position is given): the fd offset does not move.
    while (done < data.length) done += fs.writeSync(fd, data, done, data.length - done, done);
  } catch (e) {
    close(fd);
    throw e;
  }
  return fd;
}

const CLOCK_REALTIME = 0, CLOCK_MONOTONIC = 1;
function clockUsec(clock: number, what: string): bigint {
  // struct timespec { i64 tv_sec; i64 tv_nsec; }
  const ts = new BigInt64Array(2);
  check(c().clock_gettime(clock, ptr(ts)), "clock_gettime", what);
  return ts[0]! * 1_000_000n + ts[1]! / 1000n;
}
/** CLOCK_REALTIME and CLOCK_MONOTONIC in microseconds, as systemd's dual timestamps. */
export function dualTimestampUsec(): { realtimeUsec: bigint; monotonicUsec: bigint } {
  return { realtimeUsec: clockUsec(CLOCK_REALTIME, "CLOCK_REALTIME"), monotonicUsec: clockUsec(CLOCK_MONOTONIC, "CLOCK_MONOTONIC") };
}

// --- kexec_file_load(2) ---
export const KEXEC_FILE_UNLOAD = 0x1;
export const KEXEC_FILE_NO_INITRAMFS = 0x4;
// The syscall number differs per architecture; glibc has no wrapper.
const KEXEC_FILE_LOAD_NR: Partial<Record<string, number>> = { x64: 320, arm64: 294 };

/**
 * Loads `kernelFd` (and `initrdFd`, or null with KEXEC_FILE_NO_INITRAMFS) for a later
 * reboot(RB.KEXEC). The command line length passed includes its NUL, as the kernel requires.
 */
export function kexecFileLoad(kernelFd: number, initrdFd: number | null, cmdline: string, flags: number): void {
  const nr = KEXEC_FILE_LOAD_NR[process.arch];
  if (nr === undefined) throw new SysError("kexec_file_load", 38, `no syscall number for ${process.arch}`);
  const c0 = cstr(cmdline);
  check(c().syscall(nr, kernelFd, initrdFd ?? -1, c0.length, ptr(c0), flags), "kexec_file_load", `kernel fd ${kernelFd}, ${initrdFd === null ? "no initrd" : `initrd fd ${initrdFd}`}, flags 0x${flags.toString(16)}`);
}

/** Drops a loaded kexec image (after a failure between loading and rebooting). */
export function kexecFileUnload(): void {
  const empty = cstr("");
  check(c().syscall(KEXEC_FILE_LOAD_NR[process.arch] ?? -1, -1, -1, 0, ptr(empty), KEXEC_FILE_UNLOAD), "kexec_file_load", "unload");
}

// --- execve(2) ---
/**
 * execve through libc, for when an fd must survive the exec: Bun's
 * process.execve closes every fd above 2 (measured with Bun 1.4.5), which
 * would drop the memfd handed to systemd. Returns only by throwing.
 */
export function execveKeepFds(file: string, argv: string[], env: Record<string, string | undefined>): never {
  const keep: Buffer[] = [];
  const array = (items: string[]) => {
    const a = new BigUint64Array(items.length + 1);
    items.forEach((it, i) => {
      const b = cstr(it);
      keep.push(b);
      a[i] = BigInt(ptr(b));
    });
    return a;
  };
  const f = cstr(file);
  const av = array(argv);
  const ev = array(Object.entries(env).filter(([, v]) => v !== undefined).map(([k, v]) => `${k}=${v}`));
  c().execve(ptr(f), ptr(av), ptr(ev));
  throw new SysError("execve", errno(), file);
}
