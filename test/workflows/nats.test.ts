import { randomUUID } from "node:crypto";
import { skipUnless } from "../helpers/services.ts";
import { runWorkflowSuite } from "./suite.ts";

const skip = await skipUnless("nats");

// One deployment (its own streams and buckets) per test.
runWorkflowSuite({
  name: "nats",
  store: async () => `nats://127.0.0.1:4222/flow_${randomUUID().replaceAll("-", "").slice(0, 12)}`,
  skip,
  skipTests: {
    reason:
      "known gap, not yet investigated: on the NATS backend these runs stall (sleep wake-ups, the waitForEvent race, the saga, and a waitForEvent timeout in one run of three) and time out",
    tests: ["a run goes through steps", "waitForEvent receives an event", "saga: the third step", "step.run compensations (closures)"],
  },
});
