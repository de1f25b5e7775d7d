/** The node-wide limits of a runtime, their defaults and their validation. */
import { ErrorCode, SluiceError } from "../errors.ts";

export interface RuntimeLimits {
  /** Instances on this node, all functions together (default 32). */
  maxInstances: number;
  /** An idle instance above its function's `minInstances` stops after this long (default 60 s). */
  idleTimeoutMs: number;
  /** Invocations waiting for capacity per function; past it, E_THROTTLED (default 10 000). */
  maxQueuedPerFunction: number;
  /** ctx.signal aborts this long before the deadline (at most a tenth of the timeout; default 250 ms). */
  signalLeadMs: number;
  /** Hops an event chain may take through ctx.emit (default 16, Lambda's limit). */
  maxHops: number;
  /** An instance that has not answered `ready` within this time is failed as crashed (default 10 s). */
  startTimeoutMs: number;
  /**
   * Worker threads kept started ahead of need, with the instance entry loaded but no function (default 1;
   * 0 disables). A worker-mode cold start of a function whose memory setting matches adopts one instead of
   * starting a thread, and a replacement starts in the background. They belong to no function.
   */
  standbyWorkers: number;
}

const defaultLimits: RuntimeLimits = {
  maxInstances: 32,
  idleTimeoutMs: 60_000,
  maxQueuedPerFunction: 10_000,
  signalLeadMs: 250,
  maxHops: 16,
  startTimeoutMs: 10_000,
  standbyWorkers: 1,
};

/** The defaults with `given` laid over them; throws E_CONFIG_INVALID naming the first bad limit. */
export function resolveLimits(given: Partial<RuntimeLimits> | undefined): RuntimeLimits {
  const limits: RuntimeLimits = { ...defaultLimits, ...given };
  for (const [key, value] of Object.entries(limits)) {
    if (typeof value !== "number" || !Number.isFinite(value) || value < 0 || (key === "maxInstances" && value < 1)) {
      throw new SluiceError(ErrorCode.ConfigInvalid, `runtime limits: ${key} must be a non-negative number`, { path: `$.limits.${key}` });
    }
  }
  return limits;
}
