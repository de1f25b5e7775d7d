/**
 * A broker in a child process for the poison-event test. Its function handler kills the whole process (SIGKILL)
 * when it receives an event with `data.poison`, as a native crash or a stack overflow of the server would.
 * Prints `ready`, `K <attempt>` just before it kills itself, `D <id>` for every other event it handles.
 *
 *   node --import tsx poison-child.ts <store URL>
 */
import { createBroker } from "../../src/bus/broker.ts";
import { openStore } from "../../src/store/registry.ts";
import { poisonRule } from "./poison-rule.ts";

const store = await openStore(process.argv[2] ?? "");
// Short leases so that a delivery held by a killed process comes back quickly.
const broker = await createBroker({
  store,
  limits: { leaseMs: 500, pollIntervalMs: 50 },
  functionHandler: {
    async deliver(_fn, event, context) {
      if ((event.data as { poison?: boolean } | undefined)?.poison) {
        process.stdout.write(`K ${context.attempt}\n`, () => process.kill(process.pid, "SIGKILL"));
        await new Promise(() => undefined);
      }
      process.stdout.write(`D ${event.id}\n`);
    },
  },
});
await broker.putRule(poisonRule);
process.stdout.write("ready\n");
