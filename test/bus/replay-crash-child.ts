/**
 * A broker in a child process for the replay crash test: starts a replay of bus `archive` into rule `copy` and
 * keeps running it until it is killed. Publish-only (no dispatcher): the parent delivers what the replay enqueued.
 *
 *   node --import tsx replay-crash-child.ts <sqlite file> <replay name> <fromAt> <toAt>
 */
import { createBroker } from "../../src/bus/broker.ts";
import { createSqliteStore } from "../../src/store/sqlite/index.ts";

const [path, name, fromAt, toAt] = process.argv.slice(2) as [string, string, string, string];
const store = await createSqliteStore({ path });
// A short lease, so that the parent resumes the replay soon after the kill.
const broker = await createBroker({ store, dispatch: false, limits: { leaseMs: 1000, pollIntervalMs: 100 } });
await broker.startReplay({ name, bus: "archive", fromAt: Number(fromAt), toAt: Number(toAt), destination: { rule: "copy" } });
process.stdout.write("started\n");
