/**
 * The webhook target: an HTTP POST of the CloudEvent in structured JSON mode, signed with HMAC-SHA256.
 *
 * Signature, by default the Standard Webhooks scheme (https://www.standardwebhooks.com): `webhook-id` (the event
 * id, the same on every retry), `webhook-timestamp` (epoch seconds) and `webhook-signature: v1,<base64>` where
 * base64 = HMAC-SHA256(key, `<id>.<timestamp>.<body>`), one `v1,` entry per secret while secrets rotate. With
 * `signature: "sluice"`: `x-sluice-signature: sha256=<hex>` over `<timestamp>.<body>` and `x-sluice-timestamp:
 * <epoch ms>` (see `verifyWebhookSignature`).
 *
 * Outcome: 2xx succeeds; 408 and 429 and 5xx and network errors and timeouts are retried (429/503 honour a
 * `Retry-After` header); 410 Gone disables the target (every node, until enabled again through the admin API);
 * any other 4xx is non-retriable (the request itself is wrong). Unless private networks are allowed, a URL
 * whose host resolves to a private, loopback or link-local address is refused (network-guard.ts).
 *
 * As a target kind: `{ webhook: "https://…" }` or `{ webhook: { url, secret?, signature?, timeoutMs?, headers? } }`.
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import { request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import { isIP } from "node:net";
import { ErrorCode, NonRetriableError, RetryAfterError, SluiceError } from "../../errors.ts";
import { encodeEvent } from "../../event/codec.ts";
import { isObject } from "../../util/validate.ts";
import type { WebhookTargetSpec } from "../types.ts";
import { addressRefusal, guardedLookup, refusedError } from "./network-guard.ts";
import type { TargetHandler, TargetHost } from "./target.ts";

export const signatureHeader = "x-sluice-signature";
export const timestampHeader = "x-sluice-timestamp";
const defaultTimeoutMs = 10_000;
export const standardSecretPrefix = "whsec_";
/** The state namespace of targets disabled by a 410, keyed by queue (`rule:bus/rule/target`). */
export const DISABLED_TARGETS = "sluice.targets.disabled";

/** The HMAC key of a secret: base64 after `whsec_`, else the string's UTF-8 bytes. */
function standardKey(secret: string): Buffer {
  return secret.startsWith(standardSecretPrefix) ? Buffer.from(secret.slice(standardSecretPrefix.length), "base64") : Buffer.from(secret, "utf8");
}

/** The `webhook-signature` header value: `v1,<base64>` per secret, space-separated. */
export function signStandardWebhook(secrets: readonly string[], id: string, timestampSeconds: string, body: string): string {
  return secrets.map((s) => `v1,${createHmac("sha256", standardKey(s)).update(`${id}.${timestampSeconds}.${body}`).digest("base64")}`).join(" ");
}

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
    if (!["url", "secret", "signature", "timeoutMs", "headers"].includes(key)) {
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
  if (s.secret !== undefined) {
    const list = Array.isArray(s.secret) ? s.secret : [s.secret];
    if (list.length === 0 || list.some((x) => typeof x !== "string" || x.length === 0)) {
      throw new SluiceError(ErrorCode.BadRequest, "webhook secret must be a non-empty string or a list of them (several while rotating)", { path: `${path}.secret` });
    }
    list.forEach((x: string, i) => {
      if (x.startsWith(standardSecretPrefix) && !/^[A-Za-z0-9+/]+={0,2}$/.test(x.slice(standardSecretPrefix.length))) {
        throw new SluiceError(ErrorCode.BadRequest, "a whsec_ secret is base64 after the prefix", { path: Array.isArray(s.secret) ? `${path}.secret[${i}]` : `${path}.secret` });
      }
    });
  }
  if (s.signature !== undefined && s.signature !== "standard" && s.signature !== "sluice") {
    throw new SluiceError(ErrorCode.BadRequest, 'webhook signature must be "standard" (Standard Webhooks, the default) or "sluice" (x-sluice-signature)', { path: `${path}.signature` });
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

function retryAfterMs(header: string | string[] | undefined, now: number): number | undefined {
  if (header === undefined || Array.isArray(header)) return undefined;
  if (/^\d+$/.test(header.trim())) return Number(header.trim()) * 1000;
  const at = Date.parse(header);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** The signing headers of one request. */
function signingHeaders(spec: WebhookTargetSpec, eventId: string, body: string, now: number): Record<string, string> {
  const secrets = spec.secret === undefined ? [] : typeof spec.secret === "string" ? [spec.secret] : [...spec.secret];
  if (spec.signature === "sluice") {
    const timestamp = String(now);
    return { [timestampHeader]: timestamp, ...(secrets[0] === undefined ? {} : { [signatureHeader]: signWebhookBody(secrets[0], timestamp, body) }) };
  }
  const timestamp = String(Math.floor(now / 1000));
  return {
    "webhook-id": eventId,
    "webhook-timestamp": timestamp,
    ...(secrets.length === 0 ? {} : { "webhook-signature": signStandardWebhook(secrets, eventId, timestamp, body) }),
  };
}

interface Answer {
  status: number;
  retryAfter: string | string[] | undefined;
  text: string;
}

/** One POST over node:http(s), so that the connection's address can be checked after DNS resolution. */
function post(url: URL, headers: Record<string, string>, body: string, signal: AbortSignal, allowPrivate: boolean): Promise<Answer> {
  const host = url.hostname.replace(/^\[|\]$/g, "");
  if (!allowPrivate && isIP(host) !== 0) {
    const reason = addressRefusal(host);
    if (reason) return Promise.reject(refusedError(url.hostname, reason));
  }
  const send = url.protocol === "https:" ? httpsRequest : httpRequest;
  return new Promise<Answer>((resolve, reject) => {
    const req = send(
      url,
      {
        method: "POST",
        headers: { ...headers, "content-length": String(Buffer.byteLength(body)) },
        signal,
        ...(allowPrivate ? {} : { lookup: guardedLookup }),
      },
      (res: IncomingMessage) => {
        // The answer's first 4 KiB make the error hint; the rest is read and dropped so the socket is freed.
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => {
          if (text.length < 4096) text += c;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, retryAfter: res.headers["retry-after"], text }));
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

/**
 * POSTs one encoded CloudEvent; resolves on 2xx, throws a classified error otherwise. `traceparent` (the delivery
 * attempt's span, when tracing is on) goes along as the W3C header.
 */
export async function deliverWebhook(
  spec: WebhookTargetSpec,
  body: string,
  signal: AbortSignal,
  options: { eventId?: string; allowPrivateNetworks?: boolean; traceparent?: string } = {},
): Promise<Answer> {
  const headers: Record<string, string> = {
    ...spec.headers,
    "content-type": "application/cloudevents+json; charset=utf-8",
    ...signingHeaders(spec, options.eventId ?? "", body, Date.now()),
    ...(options.traceparent === undefined ? {} : { traceparent: options.traceparent }),
  };
  const timeoutMs = spec.timeoutMs ?? defaultTimeoutMs;
  const timeout = AbortSignal.timeout(timeoutMs);
  let res: Answer;
  try {
    res = await post(new URL(spec.url), headers, body, AbortSignal.any([signal, timeout]), options.allowPrivateNetworks ?? true);
  } catch (err) {
    if (err instanceof SluiceError) throw err;
    if (timeout.aborted) {
      throw new SluiceError(ErrorCode.WebhookFailed, `webhook timed out after ${timeoutMs} ms`, { retryable: true, cause: err });
    }
    throw new SluiceError(ErrorCode.WebhookFailed, `webhook request failed: ${(err as Error).message}`, { retryable: true, cause: err });
  }
  if (res.status >= 200 && res.status < 300) return res;
  const hint = `webhook answered ${res.status}${res.text ? `: ${res.text.slice(0, 200)}` : ""}`;
  if (res.status === 410) throw new SluiceError(ErrorCode.TargetDisabled, `${hint}; the receiver is gone, so the target is disabled`, { retryable: false });
  if (res.status === 429 || res.status === 503) {
    const after = retryAfterMs(res.retryAfter, Date.now());
    if (after !== undefined) throw new RetryAfterError(after, hint);
  }
  if (res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429) throw new NonRetriableError(hint);
  throw new SluiceError(ErrorCode.WebhookFailed, hint, { retryable: true });
}

/** A disabled target as stored and shown. */
export interface DisabledTarget {
  queue: string;
  url: string;
  at: string;
  reason: string;
}

/** Binds the webhook kind to one broker: deliveries, the 410 switch, and the disabled-target check. */
function openWebhooks(host: TargetHost) {
  // A target's disabled flag is read from the shared state at most every few seconds per queue.
  const checked = new Map<string, { disabled: DisabledTarget | undefined; at: number }>();
  const disabledOf = async (queue: string): Promise<DisabledTarget | undefined> => {
    const hit = checked.get(queue);
    if (hit && Date.now() - hit.at < 2000) return hit.disabled;
    const raw = await host.state?.get(DISABLED_TARGETS, queue, { now: Date.now() });
    const disabled = raw === undefined ? undefined : (JSON.parse(raw) as DisabledTarget);
    checked.set(queue, { disabled, at: Date.now() });
    return disabled;
  };
  return {
    async deliver(spec: WebhookTargetSpec, event: { id: string }, context: { signal: AbortSignal; queue?: string; traceparent?: string }, body: string) {
      const queue = context.queue;
      if (queue !== undefined && host.state) {
        const off = await disabledOf(queue);
        if (off) throw new SluiceError(ErrorCode.TargetDisabled, `target ${queue.replace(/^rule:/, "")} is disabled since ${off.at} (${off.reason}); enable it with POST /admin/targets/<bus>/<rule>/<target>/enable`, { retryable: false });
      }
      try {
        await deliverWebhook(spec, body, context.signal, {
          eventId: event.id,
          allowPrivateNetworks: host.allowPrivateNetworks,
          ...(context.traceparent === undefined ? {} : { traceparent: context.traceparent }),
        });
      } catch (err) {
        if (err instanceof SluiceError && err.code === ErrorCode.TargetDisabled && queue !== undefined && host.state) {
          const record: DisabledTarget = { queue, url: new URL(spec.url).origin + new URL(spec.url).pathname, at: new Date().toISOString(), reason: "the receiver answered 410 Gone" };
          await host.state.put(DISABLED_TARGETS, queue, JSON.stringify(record), { now: Date.now() });
          checked.set(queue, { disabled: record, at: Date.now() });
          host.logger.warn({ queue, url: record.url }, "webhook target disabled: the receiver answered 410 Gone");
        }
        throw err;
      }
    },
  };
}

export const webhookTarget: TargetHandler<WebhookTargetSpec> = {
  kind: "webhook",
  compile: checkWebhookSpec,
  open: (host) => {
    const hooks = openWebhooks(host);
    return { deliver: (spec, event, context, encoded) => hooks.deliver(spec, event, context, encoded ?? encodeEvent(event)) };
  },
};
