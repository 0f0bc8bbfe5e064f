// A loopback HTTP server in its own process for the fetch benchmark, so the
// client under test does not share an event loop (or a core) with it.
// Usage: bun bench/fetch-server.ts FILE  -> prints the URL, serves until killed.
import { startTestServer } from "../lib/testing/testserver.ts";

const file = process.argv[2];
if (!file) {
  console.error("usage: bun bench/fetch-server.ts FILE");
  process.exit(2);
}
const s = await startTestServer({ "/image": { path: file } });
console.log(`${s.url}/image`);
