/**
 * Crash proof of the NATS JetStream backend with real child processes and SIGKILL (the shared harness):
 * acknowledged appends survive a killed publisher, and a killed consumer's leases come back when they expire.
 */
import { test } from "node:test";
import { randomUUID } from "node:crypto";
import { consumerCrash, publisherCrash, type CrashTarget } from "../../src/store/crash/harness.ts";
import { services, skipUnless } from "../helpers/services.ts";

const skip = await skipUnless("nats");

async function natsTarget(t: { after(fn: () => Promise<void>): void }): Promise<CrashTarget> {
  const { createNatsStore } = await import("../../src/store/nats/index.ts");
  const servers = [`${services.nats.host}:${services.nats.port}`];
  const deployment = `c${randomUUID().replaceAll("-", "").slice(0, 20)}`;
  t.after(async () => (await createNatsStore({ servers, deployment })).destroy());
  return { url: `nats://${servers[0]}/${deployment}`, open: () => createNatsStore({ servers, deployment }) };
}

test("nats store crash - every acknowledged append survives SIGKILL of the publisher, with its deliveries", { skip, timeout: 300_000 }, async (t) => {
  const result = await publisherCrash(await natsTarget(t), { iterations: 3 });
  t.diagnostic(`acknowledged ${result.acked} events, ${result.stored} in the log`);
});

test("nats store crash - SIGKILLed consumers leave every delivery acked or leasable again", { skip, timeout: 300_000 }, async (t) => {
  // Few events: a partition key's deliveries go one at a time, each after a hand-back delay (docs/nats.md).
  const result = await consumerCrash(await natsTarget(t), { iterations: 3, events: 200, killAfterMs: [300, 900] });
  t.diagnostic(`acked ${result.acked}, in flight at the kills ${result.inFlightAtKill}, leasable after ${result.drained}`);
});
