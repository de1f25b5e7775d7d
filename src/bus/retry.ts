/**
 * Retry policy maths (pure): defaults, validation, exponential backoff with full jitter, and the decision taken
 * after a failed attempt. See docs/delivery.md for why the defaults are what they are.
 */
import { ErrorCode, SluiceError } from "../errors.ts";
import type { FailureKind } from "./handler-errors.ts";
import type { RetryPolicy } from "./types.ts";

export type ResolvedRetryPolicy = Required<RetryPolicy>;

export const defaultRetryPolicy: ResolvedRetryPolicy = Object.freeze({
  maxAttempts: 12,
  maxEventAgeMs: 24 * 60 * 60 * 1000,
  baseBackoffMs: 1000,
  maxBackoffMs: 10 * 60 * 1000,
});

/** The range each retry policy field accepts (inclusive). */
export const retryPolicyLimits = {
  maxAttempts: [1, 1000],
  maxEventAgeMs: [1000, 7 * 24 * 60 * 60 * 1000],
  baseBackoffMs: [0, 24 * 60 * 60 * 1000],
  maxBackoffMs: [0, 24 * 60 * 60 * 1000],
} as const satisfies Record<keyof RetryPolicy, readonly [number, number]>;

/** Fills defaults and checks ranges; `path` locates the policy in the caller's input for error messages. */
export function resolveRetryPolicy(policy: unknown, path: string, base: ResolvedRetryPolicy = defaultRetryPolicy): ResolvedRetryPolicy {
  if (policy === undefined) return base;
  if (typeof policy !== "object" || policy === null || Array.isArray(policy)) {
    throw new SluiceError(ErrorCode.BadRequest, "a retry policy must be an object", { path });
  }
  const out = { ...base };
  for (const [key, value] of Object.entries(policy)) {
    if (!(key in retryPolicyLimits)) {
      throw new SluiceError(ErrorCode.BadRequest, `unknown retry policy field "${key}" (known: ${Object.keys(retryPolicyLimits).join(", ")})`, {
        path: `${path}.${key}`,
      });
    }
    const [min, max] = retryPolicyLimits[key as keyof typeof retryPolicyLimits];
    if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
      throw new SluiceError(ErrorCode.BadRequest, `${key} must be an integer from ${min} to ${max}`, { path: `${path}.${key}` });
    }
    out[key as keyof RetryPolicy] = value;
  }
  return out;
}

/**
 * Full jitter (AWS Architecture Blog, "Exponential Backoff and Jitter"): after the n-th failed attempt wait a
 * uniformly random time in [0, min(maxBackoffMs, baseBackoffMs * 2^(n-1))).
 */
export function backoffMs(attempt: number, policy: ResolvedRetryPolicy, random: () => number): number {
  const ceiling = Math.min(policy.maxBackoffMs, policy.baseBackoffMs * 2 ** Math.min(Math.max(attempt - 1, 0), 40));
  return Math.floor(random() * ceiling);
}

export type RetryDecision =
  | { action: "retry"; delayMs: number; availableAt: number }
  /** `max-attempts`, `max-age`, `non-retriable`, or a final failure's own reason (`recursive-loop`). */
  | { action: "dead"; reason: string };

/** What to do after attempt number `attempt` of a delivery enqueued at `enqueuedAt` failed at `now`. */
export function decideAfterFailure(
  failure: FailureKind,
  attempt: number,
  enqueuedAt: number,
  now: number,
  policy: ResolvedRetryPolicy,
  random: () => number,
): RetryDecision {
  if (failure.kind === "non-retriable") return { action: "dead", reason: failure.reason ?? "non-retriable" };
  if (attempt >= policy.maxAttempts) return { action: "dead", reason: "max-attempts" };
  const delayMs = failure.delayMs ?? backoffMs(attempt, policy, random);
  const availableAt = now + delayMs;
  if (availableAt - enqueuedAt >= policy.maxEventAgeMs) return { action: "dead", reason: "max-age" };
  return { action: "retry", delayMs, availableAt };
}
