// A loopback HTTP(S) server for tests and benchmarks with the misbehaviours
// a real fleet meets: no Content-Length (chunked), a connection dropped
// mid-transfer, 404s, servers that ignore Range. Bound to 127.0.0.1 only.
import fs from "node:fs";
import http from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";

export interface ServedFile {
  path: string;
  /** Serve without Content-Length (chunked transfer encoding). */
  chunked?: boolean;
  /** Cut the first response for this file after this many body bytes. */
  dropAfter?: number;
  /** Answer 200 with the whole file even to Range requests. */
  ignoreRange?: boolean;
}

export interface TestServer {
  url: string;
  port: number;
  requests: Array<{ path: string; range: string | null }>;
  stop(): Promise<void>;
}

export async function startTestServer(files: Record<string, ServedFile>, opts: { tls?: { cert: string; key: string }; host?: string } = {}): Promise<TestServer> {
  const requests: TestServer["requests"] = [];
  const dropped = new Set<string>();
  const handler: http.RequestListener = (req, res) => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    const range = (req.headers.range as string | undefined) ?? null;
    requests.push({ path, range });
    const f = files[path];
    if (!f) {
      res.writeHead(404, { "content-type": "text/plain" }).end("not here\n");
      return;
    }
    const size = fs.statSync(f.path).size;
    const m = range?.match(/^bytes=(\d+)-$/);
    const start = m && !f.ignoreRange ? Number(m[1]) : 0;
    const headers: Record<string, string> = { "accept-ranges": f.ignoreRange ? "none" : "bytes" };
    if (!f.chunked) headers["content-length"] = String(size - start);
    if (start > 0) headers["content-range"] = `bytes ${start}-${size - 1}/${size}`;
    res.writeHead(start > 0 ? 206 : 200, headers);
    const stream = fs.createReadStream(f.path, { start, highWaterMark: 256 * 1024 });
    if (f.dropAfter !== undefined && !dropped.has(path)) {
      dropped.add(path);
      let sent = 0;
      stream.on("data", (chunk) => {
        const c = chunk as Buffer;
        const room = f.dropAfter! - sent;
        if (room <= 0) return;
        res.write(c.subarray(0, room));
        sent += Math.min(room, c.length);
        if (sent >= f.dropAfter!) {
          stream.destroy();
          // Give the bytes a moment on the wire, then break the connection.
          setTimeout(() => res.socket?.destroy(), 100);
        }
      });
      return;
    }
    stream.pipe(res);
  };
  const server = opts.tls ? https.createServer({ cert: opts.tls.cert, key: opts.tls.key }, handler) : http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, opts.host ?? "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `${opts.tls ? "https" : "http"}://127.0.0.1:${port}`,
    port,
    requests,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}
