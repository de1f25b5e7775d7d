import { randomUUID } from "node:crypto";
import { services, skipUnless } from "../helpers/services.ts";
import { runBusSuite } from "./bus-suite.ts";

const skip = await skipUnless("nats");
const servers = [`${services.nats.host}:${services.nats.port}`];

runBusSuite({
  name: "nats",
  async location() {
    const { createNatsStore } = await import("../../src/store/nats/index.ts");
    // One deployment per test: its own streams, consumers and buckets, deleted afterwards.
    const deployment = `b${randomUUID().replaceAll("-", "").slice(0, 20)}`;
    return {
      open: () => createNatsStore({ servers, deployment }),
      cleanup: async () => {
        const last = await createNatsStore({ servers, deployment });
        await last.destroy();
      },
    };
  },
  skip: skip
    ? [{ reason: skip, tests: ["*"] }]
    : [
        {
          // The store evaluates delays, the dedupe window and storedAt on the server's clock (capabilities.callerClock
          // false); the store conformance suite's timing cases prove these guarantees on real time.
          reason: "moves an injected clock, which a server-clock backend does not follow",
          tests: [
            "dedupe ends with the window (injectable clock)",
            "failed attempts are retried with exponential backoff and full jitter on the injected clock",
            "RetryAfterError sets the delay, NonRetriableError dead-letters at once, and old events die of max-age",
            "archive replay republishes a time range filtered by a pattern, marks events, and reports progress",
            "a running replay can be cancelled and says how far it got",
            "a paced replay replays at most maxPerSecond events per second of its clock",
            "archives are trimmed past each bus's retention",
          ],
        },
      ],
});
