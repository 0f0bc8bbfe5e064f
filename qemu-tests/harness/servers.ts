// Real servers on loopback for the diskless scenarios: OpenSSH's sshd with
// its internal SFTP server (Debian's openssh-server). QEMU's user network
// forwards the guest's 10.0.2.2 to this machine's 127.0.0.1.
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import type { Subprocess } from "bun";

export const GUEST_HOST = "10.0.2.2";

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
    s.on("error", reject);
  });
}

function sh(argv: string[]): void {
  const r = Bun.spawnSync(argv, { stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`${argv.join(" ")}: ${r.stderr.toString()}`);
}

export interface Sshd {
  port: number;
  /** The client's private key (OpenSSH format) that the server accepts for root. */
  clientKey: string;
  hostKeyFingerprint: string;
  stop(): void;
}

export async function startSshd(dir: string): Promise<Sshd> {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  // sshd refuses to start without its privilege separation directory.
  fs.mkdirSync("/run/sshd", { recursive: true, mode: 0o755 });
  const hostKey = path.join(dir, "host_ed25519");
  const clientKey = path.join(dir, "client_ed25519");
  sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", hostKey]);
  sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", clientKey]);
  fs.copyFileSync(`${clientKey}.pub`, path.join(dir, "authorized_keys"));
  const port = await freePort();
  const config = path.join(dir, "sshd_config");
  fs.writeFileSync(
    config,
    [
      `ListenAddress 127.0.0.1:${port}`,
      `HostKey ${hostKey}`,
      `AuthorizedKeysFile ${path.join(dir, "authorized_keys")}`,
      "PermitRootLogin prohibit-password",
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication no",
      "UsePAM no",
      "StrictModes no",
      `PidFile ${path.join(dir, "sshd.pid")}`,
      "Subsystem sftp internal-sftp",
      "",
    ].join("\n"),
  );
  const proc: Subprocess = Bun.spawn(["/usr/sbin/sshd", "-D", "-e", "-f", config], { stdout: "ignore", stderr: Bun.file(path.join(dir, "sshd.log")) });
  await waitForPort(port, "sshd", () => (proc.exitCode !== null ? fs.readFileSync(path.join(dir, "sshd.log"), "utf8") : null));
  const fp = Bun.spawnSync(["ssh-keygen", "-lf", `${hostKey}.pub`]).stdout.toString().split(" ")[1]!;
  return { port, clientKey: fs.readFileSync(clientKey, "utf8"), hostKeyFingerprint: fp, stop: () => proc.kill() };
}

async function waitForPort(port: number, what: string, failed: () => string | null): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const c = net.connect(port, "127.0.0.1", () => {
        c.destroy();
        resolve(true);
      });
      c.on("error", () => resolve(false));
    });
    if (ok) return;
    const why = failed();
    if (Date.now() > deadline || why !== null) throw new Error(`${what} did not start${why ? `: ${why}` : ""}`);
    await Bun.sleep(100);
  }
}

export interface NbdServer {
  port: number;
  /** Stops the server and every connection it serves (the kernel's client sees the TCP connection close). */
  stop(): void;
}

/**
 * Debian's nbd-server on 127.0.0.1, serving each file read-only under its
 * export name, on `port` (default: a free one). It daemonizes; its pid file
 * and process group let stop() end the per-connection children too.
 */
export async function startNbdServer(dir: string, exports: Record<string, string>, port?: number): Promise<NbdServer> {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  port ??= await freePort();
  const config = path.join(dir, "config");
  const pidFile = path.join(dir, "nbd-server.pid");
  fs.writeFileSync(
    config,
    [
      "[generic]",
      "    listenaddr = 127.0.0.1",
      `    port = ${port}`,
      ...Object.entries(exports).flatMap(([name, file]) => [`[${name}]`, `    exportname = ${file}`, "    readonly = true"]),
      "",
    ].join("\n"),
  );
  const r = Bun.spawnSync(["/bin/nbd-server", "-C", config, "-p", pidFile], { stderr: "pipe", stdout: "pipe" });
  if (r.exitCode !== 0) throw new Error(`nbd-server exited ${r.exitCode}: ${r.stderr.toString()}${r.stdout.toString()}`);
  await waitForPort(port, "nbd-server", () => null);
  const pid = Number(fs.readFileSync(pidFile, "utf8").trim());
  return {
    port,
    stop: () => {
      for (const target of [-pid, pid]) {
        try {
          process.kill(target, "SIGKILL");
        } catch {
          // already gone
        }
      }
    },
  };
}

export interface NfsServer {
  port: number;
  stop(): void;
}

/**
 * nfs-ganesha (Debian's userspace NFS server, VFS backend) on 127.0.0.1,
 * NFSv4 only, exporting each directory read-only at its pseudo path. No
 * rpcbind and no dbus (it logs that it misses both and serves anyway), no
 * grace period (a fresh server has no clients to wait for), all its state
 * under `dir`.
 */
export async function startNfsServer(dir: string, exports: Record<string, string>): Promise<NfsServer> {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(path.join(dir, "state"), { recursive: true });
  const port = await freePort();
  const config = path.join(dir, "ganesha.conf");
  const log = path.join(dir, "ganesha.log");
  const exportBlocks = Object.entries(exports).map(
    ([pseudo, local], i) => `EXPORT {
    Export_Id = ${i + 1};
    Path = ${local};
    Pseudo = ${pseudo};
    Access_Type = RO;
    Squash = No_Root_Squash;
    Protocols = 4;
    Transports = TCP;
    SecType = sys;
    FSAL { Name = VFS; }
}`,
  );
  fs.writeFileSync(
    config,
    `NFS_CORE_PARAM {
    NFS_Port = ${port};
    Bind_addr = 127.0.0.1;
    Protocols = 4;
    Enable_NLM = false;
    Enable_RQUOTA = false;
    Enable_UDP = false;
    mount_path_pseudo = true;
}
NFS_KRB5 {
    Active_krb5 = false;
    CCacheDir = ${path.join(dir, "state/krb5cc")};
}
NFSv4 {
    Graceless = true;
    Lease_Lifetime = 10;
    RecoveryBackend = fs;
    RecoveryRoot = ${path.join(dir, "state")};
    Minor_Versions = 0, 1, 2;
    Allow_Numeric_Owners = true;
    Only_Numeric_Owners = true;
}
${exportBlocks.join("\n")}
LOG {
    Default_Log_Level = EVENT;
}
`,
  );
  fs.writeFileSync(log, "");
  const proc: Subprocess = Bun.spawn(["/usr/bin/ganesha.nfsd", "-F", "-f", config, "-L", log, "-p", path.join(dir, "ganesha.pid"), "-N", "NIV_EVENT"], {
    env: { ...process.env, BLKID_FILE: path.join(dir, "state/blkid.tab") },
    stdin: "ignore",
    stdout: "ignore",
    stderr: "ignore",
  });
  const deadline = Date.now() + 20_000;
  while (!fs.readFileSync(log, "utf8").includes("NFS SERVER INITIALIZED")) {
    if (Date.now() > deadline || proc.exitCode !== null) throw new Error(`nfs-ganesha did not start:\n${fs.readFileSync(log, "utf8")}`);
    await Bun.sleep(100);
  }
  await waitForPort(port, "nfs-ganesha", () => (proc.exitCode !== null ? fs.readFileSync(log, "utf8") : null));
  return { port, stop: () => proc.kill("SIGKILL") };
}
