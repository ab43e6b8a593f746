/**
 * A saga runner for the cross-runtime saga tests; runs on Node, Deno or Bun. Opens the store
 * at argv[0], defines the saga "mp" (steps s1, s2, s3, each with a compensation) on a Sagas
 * handle with resumeAfterMs argv[1], prints "ready <runtime> <pid>", then obeys stdin:
 *
 *   start <tag> <input JSON> [idempotencyKey]   prints "started <tag> <id>" or "error <tag> <CODE>"
 *   result <id>                                 prints "result <id> <result JSON>"
 *   exit                                        closes and exits
 *
 * Every run and compensation records itself in namespace "trace": it counts its tries
 * (["tries", id, step, phase]) and, while it works, holds the marker ["busy", id]; finding
 * the marker of another try on entry records a violation (["violation", id, step, phase,
 * attempt]): two tries of one saga at once. The input steers it: `block` (a step name) makes
 * that step's first try of its run (or, with `blockCompensate`, of its compensation) print
 * "blocked <id> <step> <phase>" and wait forever (for a SIGKILL); `failAt` makes that step's
 * run fail every try; `flaky` makes the first try of the named steps fail; `sleepMs` is the
 * time each try holds the marker.
 */
import { defaultPlatform, open, Sagas, TxtDbError } from "txtdb";
import type { SagaContext } from "txtdb";
import { args, exit, say, stdinLines } from "./io.ts";

interface Steer {
  block?: string;
  blockCompensate?: string;
  failAt?: string;
  flaky?: string[];
  sleepMs?: number;
}

const [dir, resumeAfter] = args();
const platform = await defaultPlatform();
const me = `${platform.runtime}:${platform.pid}`;
const db = await open(dir!, { lockTimeoutMs: 60_000 });
const sagas = await Sagas.open(db, { namespace: "sagas", retry: { attempts: 3, minDelayMs: 20, maxDelayMs: 100 }, resumeAfterMs: Number(resumeAfter ?? 300), concurrency: 8 });

async function work(input: Steer, ctx: SagaContext): Promise<string> {
  const blockHere = ctx.phase === "run" ? input.block === ctx.step : input.blockCompensate === ctx.step;
  if (blockHere && ctx.attempt === 1) {
    say(`blocked ${ctx.sagaId} ${ctx.step} ${ctx.phase}`);
    await new Promise(() => {}); // until SIGKILL
  }
  const token = `${me}:${ctx.step}:${ctx.phase}:${ctx.attempt}`;
  await db.transaction(async (tx) => {
    const busy = await tx.get("trace", ["busy", ctx.sagaId]);
    if (busy !== undefined) tx.set("trace", ["violation", ctx.sagaId, ctx.step, ctx.phase, ctx.attempt], { busy, token });
    tx.set("trace", ["busy", ctx.sagaId], token);
    tx.sum("trace", ["tries", ctx.sagaId, ctx.step, ctx.phase], 1);
  });
  await new Promise((r) => setTimeout(r, input.sleepMs ?? 0));
  await db.transaction(async (tx) => {
    if ((await tx.get("trace", ["busy", ctx.sagaId])) === token) tx.delete("trace", ["busy", ctx.sagaId]);
  });
  if (ctx.phase === "run" && input.failAt === ctx.step) throw new Error(`${ctx.step} fails on purpose`);
  if (ctx.attempt === 1 && input.flaky?.includes(ctx.step)) throw new Error(`${ctx.step} fails its first try`);
  return `${ctx.step}@${platform.runtime}#${ctx.attempt}`;
}

sagas.define<Steer>("mp", ["s1", "s2", "s3"].map((name) => ({ name, run: work, compensate: work })));
say(`ready ${platform.runtime} ${platform.pid}`);

for await (const line of stdinLines()) {
  const [cmd, a, b, c] = line.split(" ");
  if (cmd === "start") {
    try {
      const id = await sagas.start("mp", JSON.parse(b!), c === undefined ? {} : { idempotencyKey: c });
      say(`started ${a} ${id}`);
    } catch (e) {
      say(`error ${a} ${e instanceof TxtDbError ? e.code : String(e)}`);
    }
  } else if (cmd === "result") {
    const r = await sagas.result(a!);
    say(`result ${a} ${JSON.stringify(r)}`);
  } else if (cmd === "exit") {
    break;
  }
}
await sagas.close();
await db.close();
exit(0);
