// The demo: builds a Flatcar-layout disk (verity /usr on USR-A holding the
// test full initrd) and boots it with dist/initrd.img on this terminal.
import { fixtures, requireInitrd } from "./harness/fixtures.ts";
import { USR_A_UUID } from "./harness/images.ts";
import { qemuArgs } from "./harness/vm.ts";

requireInitrd();
console.log("demo: building the disk image (GPT, USR-A squashfs + dm-verity at Flatcar's hash offset)...");
const fx = fixtures();
const append = `mount.usr=/dev/mapper/usr verity.usr=PARTUUID=${USR_A_UUID} mount.usrflags=ro verity.usrhash=${fx.usrA.rootHash} ${process.argv.slice(2).join(" ")}`;
const args = qemuArgs({ disks: [fx.flatcarDisk], append });
console.log(`demo: booting (QEMU TCG, no KVM: takes ~15 s); the full initrd prints STAGE2 lines and powers off\n$ ${args.join(" ")}\n`);
const proc = Bun.spawn(args, { stdin: "inherit", stdout: "inherit", stderr: "inherit" });
process.exit(await proc.exited);
