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
  // Ready when the port accepts connections.
  const deadline = Date.now() + 10_000;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const c = net.connect(port, "127.0.0.1", () => {
        c.destroy();
        resolve(true);
      });
      c.on("error", () => resolve(false));
    });
    if (ok) break;
    if (Date.now() > deadline || proc.exitCode !== null) throw new Error(`sshd did not start: ${fs.readFileSync(path.join(dir, "sshd.log"), "utf8")}`);
    await Bun.sleep(100);
  }
  const fp = Bun.spawnSync(["ssh-keygen", "-lf", `${hostKey}.pub`]).stdout.toString().split(" ")[1]!;
  return { port, clientKey: fs.readFileSync(clientKey, "utf8"), hostKeyFingerprint: fp, stop: () => proc.kill() };
}
