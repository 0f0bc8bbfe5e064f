// Checks made at a shell on the guest's console, shared by the scenarios.
import type { Vm } from "./vm.ts";

/**
 * Ctrl-C stops a foreground job: only possible when the shell has the
 * console as its controlling terminal (setsid + cttyhack), so this is the
 * check that it does. Fails when the shell's next command does not run.
 */
export async function expectCtrlCStopsJob(vm: Vm): Promise<void> {
  const from = vm.console.length;
  vm.send("sleep 600\n");
  await Bun.sleep(2000);
  vm.send("\x03");
  vm.send("echo after-$((6 * 7))\n");
  await vm.expect("after-42", 30_000, from);
}
