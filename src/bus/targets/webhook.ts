/**
 * The webhook target: an HTTP POST of the CloudEvent in structured JSON mode, signed with HMAC-SHA256.
 *
 * Signature: `x-sluice-signature: sha256=<hex>` where hex = HMAC-SHA256(secret, `<timestamp>.<body>`), and
 * `x-sluice-timestamp: <epoch ms>`. Signing the timestamp with the body lets a receiver refuse replays of an old
 * request (see `verifyWebhookSignature`).
 *
 * Outcome: 2xx succeeds; 408 and 429 and 5xx and network errors and timeouts are retried (429/503 honour a
 * `Retry-After` header); any other 4xx is non-retriable (the request itself is wrong).
 *
 * As a target kind: `{ webhook: "https://…" }` or `{ webhook: { url, secret?, timeoutMs?, headers? } }`.
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import { ErrorCode, NonRetriableError, RetryAfterError, SluiceError } from "../../errors.ts";
import { encodeEvent } from "../../event/codec.ts";
import { isObject } from "../../util/validate.ts";
import type { WebhookTargetSpec } from "../types.ts";
import type { TargetHandler } from "./target.ts";

export const signatureHeader = "x-sluice-signature";
export const timestampHeader = "x-sluice-timestamp";
const defaultTimeoutMs = 10_000;

export function signWebhookBody(secret: string, timestamp: string, body: string): string {
  return `sha256=${createHmac("sha256", secret).update(`${timestamp}.${body}`).digest("hex")}`;
}

/**
 * Checks a received webhook: the signature must match and the timestamp be within `toleranceMs` of `now`.
 * @example
 * const ok = verifyWebhookSignature({ secret, body, signature: req.headers["x-sluice-signature"],
 *   timestamp: req.headers["x-sluice-timestamp"] });
 */
export function verifyWebhookSignature(input: {
  secret: string;
  body: string;
  signature: string | undefined;
  timestamp: string | undefined;
  now?: number;
  toleranceMs?: number;
}): boolean {
  const { secret, body, signature, timestamp } = input;
  if (signature === undefined || timestamp === undefined || !/^\d{1,16}$/.test(timestamp)) return false;
  const age = Math.abs((input.now ?? Date.now()) - Number(timestamp));
  if (age > (input.toleranceMs ?? 5 * 60 * 1000)) return false;
  const expected = Buffer.from(signWebhookBody(secret, timestamp, body));
  const given = Buffer.from(signature);
  return expected.length === given.length && timingSafeEqual(expected, given);
}

/** Validates a webhook spec once, when the rule is put; a URL string stands for `{ url }`. */
export function checkWebhookSpec(spec: unknown, path: string): WebhookTargetSpec {
  const s = typeof spec === "string" ? { url: spec } : spec;
  if (!isObject(s)) throw new SluiceError(ErrorCode.BadRequest, 'webhook must be a URL or { url, secret?, timeoutMs?, headers? }', { path });
  for (const key of Object.keys(s)) {
    if (!["url", "secret", "timeoutMs", "headers"].includes(key)) {
      throw new SluiceError(ErrorCode.BadRequest, `unknown webhook field "${key}"`, { path: `${path}.${key}` });
    }
  }
  let url: URL;
  try {
    url = new URL(String(s.url));
  } catch {
    throw new SluiceError(ErrorCode.BadRequest, "webhook url must be an absolute http(s) URL", { path: `${path}.url` });
  }
  if (typeof s.url !== "string" || (url.protocol !== "http:" && url.protocol !== "https:")) {
    throw new SluiceError(ErrorCode.BadRequest, "webhook url must be an absolute http(s) URL", { path: `${path}.url` });
  }
  if (s.secret !== undefined && (typeof s.secret !== "string" || s.secret.length === 0)) {
    throw new SluiceError(ErrorCode.BadRequest, "webhook secret must be a non-empty string", { path: `${path}.secret` });
  }
  if (s.timeoutMs !== undefined && (typeof s.timeoutMs !== "number" || !Number.isInteger(s.timeoutMs) || s.timeoutMs < 1 || s.timeoutMs > 300_000)) {
    throw new SluiceError(ErrorCode.BadRequest, "webhook timeoutMs must be an integer from 1 to 300000", { path: `${path}.timeoutMs` });
  }
  if (s.headers !== undefined) {
    if (!isObject(s.headers)) {
      throw new SluiceError(ErrorCode.BadRequest, "webhook headers must be an object of strings", { path: `${path}.headers` });
    }
    for (const [k, v] of Object.entries(s.headers)) {
      if (typeof v !== "string" || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(k)) {
        throw new SluiceError(ErrorCode.BadRequest, "webhook headers must map header names to strings", { path: `${path}.headers.${k}` });
      }
    }
  }
  return s as unknown as WebhookTargetSpec;
}

function retryAfterMs(header: string | null, now: number): number | undefined {
  if (header === null) return undefined;
  if (/^\d+$/.test(header.trim())) return Number(header.trim()) * 1000;
  const at = Date.parse(header);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/**
 * POSTs one encoded CloudEvent; resolves on 2xx, throws a classified error otherwise. `traceparent` (the delivery
 * attempt's span, when tracing is on) goes along as the W3C header.
 */
export async function deliverWebhook(spec: WebhookTargetSpec, body: string, signal: AbortSignal, traceparent?: string): Promise<void> {
  const timestamp = String(Date.now());
  const headers: Record<string, string> = {
    ...spec.headers,
    "content-type": "application/cloudevents+json; charset=utf-8",
    [timestampHeader]: timestamp,
  };
  if (spec.secret !== undefined) headers[signatureHeader] = signWebhookBody(spec.secret, timestamp, body);
  if (traceparent !== undefined) headers.traceparent = traceparent;
  const timeoutMs = spec.timeoutMs ?? defaultTimeoutMs;
  const timeout = AbortSignal.timeout(timeoutMs);
  let res: Response;
  try {
    res = await fetch(spec.url, { method: "POST", headers, body, signal: AbortSignal.any([signal, timeout]), redirect: "manual" });
  } catch (err) {
    if (timeout.aborted) {
      throw new SluiceError(ErrorCode.WebhookFailed, `webhook timed out after ${timeoutMs} ms`, { retryable: true, cause: err });
    }
    throw new SluiceError(ErrorCode.WebhookFailed, `webhook request failed: ${(err as Error).message}`, { retryable: true, cause: err });
  }
  // Drain the body so the connection can be reused; its content is not needed beyond an error hint.
  const text = await res.text().catch(() => "");
  if (res.status >= 200 && res.status < 300) return;
  const hint = `webhook answered ${res.status}${text ? `: ${text.slice(0, 200)}` : ""}`;
  if (res.status === 429 || res.status === 503) {
    const after = retryAfterMs(res.headers.get("retry-after"), Date.now());
    if (after !== undefined) throw new RetryAfterError(after, hint);
  }
  if (res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429) throw new NonRetriableError(hint);
  throw new SluiceError(ErrorCode.WebhookFailed, hint, { retryable: true });
}

export const webhookTarget: TargetHandler<WebhookTargetSpec> = {
  kind: "webhook",
  compile: checkWebhookSpec,
  open: () => ({
    deliver: (spec, event, context, encoded) => deliverWebhook(spec, encoded ?? encodeEvent(event), context.signal, context.traceparent),
  }),
};
