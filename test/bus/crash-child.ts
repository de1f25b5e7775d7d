/**
 * A broker in a child process for the bus crash test. Prints `ready`, then one line per event:
 * `D <id>` when the function handler receives it, `A <id>` once a publish that contained it resolved (acknowledged).
 *
 *   node --import tsx crash-child.ts <store URL> <publish|consume> <prefix>
 */
import { createBroker } from "../../src/bus/broker.ts";
import { openStore } from "../../src/store/registry.ts";

const [url, role, prefix] = process.argv.slice(2) as [string, string, string];

const store = await openStore(url);
// Short leases so that deliveries held by a killed process come back quickly.
const broker = await createBroker({
  store,
  limits: { leaseMs: 1000, pollIntervalMs: 100, concurrency: 32 },
  functionHandler: {
    async deliver(_fn, event) {
      process.stdout.write(`D ${event.id}\n`);
    },
  },
});
await broker.putRule({ name: "crash", pattern: { source: ["/crash"] }, targets: [{ id: "sink", function: "sink" }] });
process.stdout.write("ready\n");
if (role === "publish") {
  for (let n = 0; ; n += 20) {
    const batch = Array.from({ length: 20 }, (_, i) => ({ specversion: "1.0", id: `${prefix}-${n + i}`, source: "/crash", type: "crash.test", data: { n: n + i } }));
    const res = await broker.publish("default", batch);
    const ids = res.entries.filter((e): e is { eventId: string } => "eventId" in e && !("errorCode" in e)).map((e) => e.eventId);
    process.stdout.write(ids.map((id) => `A ${id}\n`).join(""));
  }
}
