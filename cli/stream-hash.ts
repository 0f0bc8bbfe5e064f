// bunboot stream-hash IMAGE [--chunk-size N] > LIST
// Writes a Fedora CoreOS compatible stream-hash list for an image, for
// build.ts --usr-hashes (the list becomes the initrd's trust root).
import fs from "node:fs";
import parseArgs from "yargs-parser";
import { formatStreamHashList, StreamHasher } from "../lib/streamhash.ts";

export const summary = "write the stream-hash list of an image (Fedora CoreOS format)";

export async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { string: ["chunk-size"], boolean: ["help"], configuration: { "strip-dashed": true } });
  if (args.help || args._.length !== 1) {
    console.error("usage: bunboot stream-hash IMAGE [--chunk-size BYTES (default 2097152)] > LIST");
    return args.help ? 0 : 2;
  }
  const chunk = args.chunkSize === undefined ? 2 * 1024 * 1024 : Number(args.chunkSize);
  if (!Number.isSafeInteger(chunk) || chunk <= 0) throw new Error(`--chunk-size expects a positive number of bytes, got ${JSON.stringify(args.chunkSize)}`);
  const image = String(args._[0]);
  if (!fs.existsSync(image)) throw new Error(`${image}: no such file`);
  const hasher = new StreamHasher(chunk);
  for await (const c of fs.createReadStream(image, { highWaterMark: 1 << 20 })) hasher.update(c as Buffer);
  process.stdout.write(formatStreamHashList(hasher.finish()));
  return 0;
}
