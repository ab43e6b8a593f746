/**
 * A process that gives up waiting for a store's writer lock, which another program holds:
 * `lock-giveup <dir> <uncaught|exit>`. open() waits 300 ms and fails with LOCK_TIMEOUT; with
 * "uncaught" the error is left uncaught (the runtime prints it and exits 1), with "exit" it is
 * caught, "gave up <code>" printed, and the process exits with 3. Either way the process must
 * end then, though its wait for the lock is still pending in the kernel.
 */
import { open } from "txtdb";
import { args, exit, say } from "./io.ts";

const [dir, how] = args();
if (how === "uncaught") {
  await open(dir!, { lockTimeoutMs: 300 });
} else {
  try {
    await open(dir!, { lockTimeoutMs: 300 });
  } catch (e) {
    say(`gave up ${(e as { code?: string }).code}`);
    exit(3);
  }
}
say("opened"); // not expected: the lock is held
