/**
 * The workflow queue's names and messages: each workflow is an implicit rule `workflow.<name>` on the default bus
 * whose one target (`run`) is the queue every step attempt of its runs is a delivery of.
 */
import { queueName } from "../bus/definitions.ts";
import type { WorkflowSpec } from "./spec.ts";

export const continueType = "sluice.workflow.continue";
export const workflowSource = "sluice/workflow";
/** The spec of the wait router's target. */
export const waitRouter = "@waits";
export const workflowRuleName = (name: string) => `workflow.${name}`;
export const workflowTargetId = "run";
export const workflowQueue = (name: string) => queueName("default", workflowRuleName(name), workflowTargetId);

export interface Continue {
  runId: string;
  v: number;
  /** A wake-up of a waiting run at this step (not bound to `v`). */
  wake?: string;
  scan?: boolean;
  /** An intermediate hop of a timer further away than a delivery may wait (maxHopMs). */
  hop?: boolean;
}

/** Deliveries are dead-lettered past their age limit (7 days at most): a longer timer hops on every 6 days. */
export const maxHopMs = 6 * 86_400_000;

export interface Workflow {
  name: string;
  spec: WorkflowSpec;
  timeoutMs: number;
}
