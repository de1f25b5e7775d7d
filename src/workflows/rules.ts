/** The implicit rule of each workflow: its `on` pattern on the default bus, delivering to the workflow target. */
import type { RuleInput } from "../bus/types.ts";
import { workflowRuleName, workflowTargetId, type Workflow } from "./queue.ts";

/**
 * The bus retries a failed step with the workflow's backoff; the engine itself ends a step at its last attempt
 * (and compensates), so the bus's limit sits above it and only catches attempts that never reported back.
 */
export function workflowRules(workflows: Workflow[]): RuleInput[] {
  return workflows.map((wf) => ({
    name: workflowRuleName(wf.name),
    bus: "default",
    pattern: wf.spec.on,
    description: `the trigger and steps of workflow ${wf.name}`,
    targets: [
      {
        id: workflowTargetId,
        workflow: wf.name,
        retryPolicy: {
          maxAttempts: wf.spec.retry.attempts + 3,
          maxEventAgeMs: 7 * 86_400_000,
          baseBackoffMs: Math.round(wf.spec.retry.backoff.initialMs),
          maxBackoffMs: Math.round(wf.spec.retry.backoff.maxMs),
        },
      },
    ],
  }));
}
