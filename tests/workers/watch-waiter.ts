/**
 * A script whose only work left is waiting for a watch() event: it opens a store, starts a
 * watch, prints "waiting <runtime>" and awaits the watcher's next event, which another
 * process's commit brings. Its process must stay alive while it waits (the watcher keeps it
 * so, as a server's socket would), then print "event <version>" and exit.
 *   <dir>  the store directory
 */
import { open } from "txtdb";
import { args, say } from "./io.ts";

const [dir] = args();
const db = await open(dir!, { namespaces: ["n"] });
const events = db.watch("n", { prefix: ["k"] });
say(`waiting ${db.stats().runtime}`);
const next = await events.next();
say(`event ${next.done ? "done" : next.value.version}`);
await db.close();
