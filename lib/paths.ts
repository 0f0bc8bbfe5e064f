// Every path inside the initrd that the builder writes and the init (or the
// shim) reads, in one place: a rename on one side only would otherwise be
// found at boot, on every machine.

/** The compiled Bun init; the shim execs it. */
export const INIT_PATH = "/bin/bunboot-init";
/** The busybox shim the kernel runs (see lib/initrd/initrd.ts). */
export const SHIM_PATH = "/init";
/** Static busybox: the shim's interpreter, the emergency shell, udhcpc. */
export const BUSYBOX = "/bin/busybox";
/** Facts the builder bakes in (lib/config.ts). */
export const CONFIG_PATH = "/etc/bunboot/config.json";
/** The stream-hash list of the rd.usr.url= image (build.ts --usr-hashes). */
export const USR_HASHES = "/etc/bunboot/usr.hashes";
/** SFTP credentials: the key (--sftp-key), the pinned host key (--sftp-host-key), a password from an appended cpio. */
export const SFTP_KEY = "/etc/bunboot/sftp/id";
export const SFTP_HOST_KEY = "/etc/bunboot/sftp/hostkey";
export const SFTP_PASSWORD = "/etc/bunboot/sftp/password";
/** The argon2id hash that guards every shell (build.ts --emergency-password-hash). */
export const EMERGENCY_PASSWORD_HASH = "/etc/bunboot/emergency-password-hash";
/** udhcpc's hook script, which hands the lease back to the init. */
export const UDHCPC_SCRIPT = "/etc/bunboot/udhcpc.script";
