// The block device under a diskless verity /usr: an NBD export, or a loop
// device over an image file on NFS. Either way the verity step then runs on
// it as on a disk partition, and every block is verified as it is read.
import fs from "node:fs";
import type { ModuleLoader } from "../kmod.ts";
import { attachNbd } from "./nbd.ts";
import { attachNfsImage } from "./nfs.ts";
import type { NetworkUsr } from "./ref.ts";

/** The kernel modules each source needs (the initrd's netboot profile carries them). */
export const SOURCE_MODULES = { nbd: ["nbd"], nfs: ["nfsv4", "loop"] } as const;

export interface AttachedUsr {
  dev: string;
  /** Lets go of what kept the device alive until the verity mapping held it. */
  release(): void;
}

export async function attachNetworkUsr(src: NetworkUsr, modules: ModuleLoader, signal?: AbortSignal): Promise<AttachedUsr> {
  await modules.load(SOURCE_MODULES[src.kind], `verity.usr=${src.kind}://`);
  if (src.kind === "nbd") return { dev: await attachNbd(src, signal), release: () => {} };
  const loop = await attachNfsImage(src);
  return { dev: loop.dev, release: () => fs.closeSync(loop.fd) };
}
