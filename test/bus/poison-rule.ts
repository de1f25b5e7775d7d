import type { RuleInput } from "../../src/bus/types.ts";

/** The rule of the poison-event test, put by the test and by each child broker. */
export const poisonRule: RuleInput = {
  name: "poison",
  pattern: { source: ["/poison"] },
  targets: [{ id: "sink", function: "sink", retryPolicy: { maxAttempts: 3, baseBackoffMs: 10, maxBackoffMs: 10 } }],
};
