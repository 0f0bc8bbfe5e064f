// A loopback HTTP(S) server for tests and benchmarks with the misbehaviours
// a real fleet meets: no Content-Length (chunked), a connection dropped
// mid-transfer, 404s, servers that ignore Range, redirects, servers that
// drip a byte now and then, and (startRawServer) answers that lie about
// their length. Bound to 127.0.0.1 only.
import fs from "node:fs";
import http from "node:http";
import https from "node:https";
import net, { type AddressInfo } from "node:net";

export interface ServedFile {
  path: string;
  /** Serve without Content-Length (chunked transfer encoding). */
  chunked?: boolean;
  /** Cut the first response for this file after this many body bytes. */
  dropAfter?: number;
  /** Answer 200 with the whole file even to Range requests. */
  ignoreRange?: boolean;
  /** Send the body slowly: `bytes` bytes every `everyMs` ms. */
  drip?: { bytes: number; everyMs: number };
}

/** Answers with a redirect to `redirect` (absolute or relative), 302 unless told. */
export interface Redirect {
  redirect: string;
  status?: number;
}

export interface TestServer {
  url: string;
  port: number;
  requests: Array<{ path: string; range: string | null }>;
  stop(): Promise<void>;
}

export async function startTestServer(files: Record<string, ServedFile | Redirect>, opts: { tls?: { cert: string; key: string }; host?: string } = {}): Promise<TestServer> {
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
    if ("redirect" in f) {
      res.writeHead(f.status ?? 302, { location: f.redirect, "content-length": "0" }).end();
      return;
    }
    const size = fs.statSync(f.path).size;
    const m = range?.match(/^bytes=(\d+)-$/);
    const start = m && !f.ignoreRange ? Number(m[1]) : 0;
    const headers: Record<string, string> = { "accept-ranges": f.ignoreRange ? "none" : "bytes" };
    if (!f.chunked) headers["content-length"] = String(size - start);
    if (start > 0) headers["content-range"] = `bytes ${start}-${size - 1}/${size}`;
    res.writeHead(start > 0 ? 206 : 200, headers);
    if (f.drip) {
      const data = fs.readFileSync(f.path).subarray(start);
      let at = 0;
      const timer = setInterval(() => {
        if (at >= data.length || res.destroyed) {
          clearInterval(timer);
          res.end();
          return;
        }
        res.write(data.subarray(at, at + f.drip!.bytes));
        at += f.drip!.bytes;
      }, f.drip.everyMs);
      res.on("close", () => clearInterval(timer));
      return;
    }
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

export interface RawServer {
  url: string;
  /** Request lines with their Range header, in arrival order. */
  requests: Array<{ path: string; range: string | null }>;
  stop(): Promise<void>;
}

/**
 * A loopback server that writes whatever `respond` returns, byte for byte,
 * then closes the connection: for answers node:http refuses to produce
 * (a Content-Length that lies, a Content-Range that does not match).
 * `respond` gets the request and its index (0 for the first request).
 */
export async function startRawServer(respond: (req: { path: string; range: string | null }, n: number) => string | Uint8Array): Promise<RawServer> {
  const requests: RawServer["requests"] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    let head = "";
    socket.on("data", (d) => {
      if (head.includes("\r\n\r\n")) return;
      head += d.toString("latin1");
      if (!head.includes("\r\n\r\n")) return;
      const path = head.split(" ")[1] ?? "/";
      const range = head.match(/^range:\s*(.*)$/im)?.[1]?.trim() ?? null;
      const req = { path, range };
      requests.push(req);
      socket.end(respond(req, requests.length - 1));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    stop: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
