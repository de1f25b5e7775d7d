/**
 * Signature schemes of inbound webhooks, each checked over the raw request body with a constant-time compare:
 * - `github`: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`; id `X-GitHub-Delivery`;
 * - `stripe`: `Stripe-Signature: t=<unix s>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>` (any v1 matches), within
 *   the tolerance; id the event's `id` in the body;
 * - `standard-webhooks`: `webhook-id`, `webhook-timestamp` (unix s), `webhook-signature: v1,<base64>` (space
 *   separated, any matches) over `"<id>.<timestamp>.<body>"` with the base64 key after `whsec_`; within tolerance;
 * - `hmac`: a shared secret, `<header>` (default `x-signature`) = hex HMAC-SHA256(secret, body), `sha256=` optional.
 */
import { createHmac, timingSafeEqual } from "node:crypto";

export type WebhookScheme = "github" | "stripe" | "standard-webhooks" | "hmac";
export const webhookSchemes: readonly WebhookScheme[] = ["github", "stripe", "standard-webhooks", "hmac"];

export interface VerifySpec {
  scheme: WebhookScheme;
  secret: string;
  /** Largest age of a signed timestamp, in seconds (stripe, standard-webhooks). Default 300. */
  toleranceSeconds: number;
  /** `hmac`: the header holding the signature. */
  header: string;
}

export type Verified = { ok: true; id?: string | undefined; subject?: string | undefined } | { ok: false; reason: string };

type Headers = Record<string, string | string[] | undefined>;

function header(h: Headers, name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
}

function same(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

const hmacHex = (key: string | Buffer, text: Buffer | string) => createHmac("sha256", key).update(text).digest("hex");

function fresh(timestamp: string | undefined, toleranceSeconds: number, now: number): string | undefined {
  if (timestamp === undefined || !/^\d{1,12}$/.test(timestamp)) return "the signature timestamp is missing or malformed";
  if (Math.abs(now / 1000 - Number(timestamp)) > toleranceSeconds) return `the signature timestamp is more than ${toleranceSeconds} s away from now`;
  return undefined;
}

export function verifyWebhook(spec: VerifySpec, headers: Headers, body: Buffer, now = Date.now()): Verified {
  switch (spec.scheme) {
    case "github": {
      const sig = header(headers, "x-hub-signature-256");
      if (sig === undefined) return { ok: false, reason: "X-Hub-Signature-256 is missing" };
      if (!same(sig, `sha256=${hmacHex(spec.secret, body)}`)) return { ok: false, reason: "X-Hub-Signature-256 does not match" };
      return { ok: true, id: header(headers, "x-github-delivery"), subject: header(headers, "x-github-event") };
    }
    case "stripe": {
      const sig = header(headers, "stripe-signature");
      if (sig === undefined) return { ok: false, reason: "Stripe-Signature is missing" };
      const parts = sig.split(",").map((p) => p.trim().split("="));
      const t = parts.find(([k]) => k === "t")?.[1];
      const stale = fresh(t, spec.toleranceSeconds, now);
      if (stale) return { ok: false, reason: stale };
      const expected = hmacHex(spec.secret, Buffer.concat([Buffer.from(`${t}.`), body]));
      if (!parts.some(([k, v]) => k === "v1" && v !== undefined && same(v, expected))) return { ok: false, reason: "no v1 signature of Stripe-Signature matches" };
      let id: string | undefined;
      let subject: string | undefined;
      try {
        const parsed = JSON.parse(body.toString("utf8")) as { id?: unknown; type?: unknown };
        if (typeof parsed.id === "string") id = parsed.id;
        if (typeof parsed.type === "string") subject = parsed.type;
      } catch {
        // an unparsable body is still signed; it is stored as text
      }
      return { ok: true, id, subject };
    }
    case "standard-webhooks": {
      const id = header(headers, "webhook-id");
      const ts = header(headers, "webhook-timestamp");
      const sig = header(headers, "webhook-signature");
      if (id === undefined || sig === undefined) return { ok: false, reason: "webhook-id or webhook-signature is missing" };
      const stale = fresh(ts, spec.toleranceSeconds, now);
      if (stale) return { ok: false, reason: stale };
      const key = Buffer.from(spec.secret.startsWith("whsec_") ? spec.secret.slice(6) : spec.secret, "base64");
      const expected = createHmac("sha256", key).update(`${id}.${ts}.`).update(body).digest("base64");
      const match = sig.split(" ").some((s) => {
        const [version, value] = s.split(",");
        return version === "v1" && value !== undefined && same(value, expected);
      });
      return match ? { ok: true, id } : { ok: false, reason: "no v1 signature of webhook-signature matches" };
    }
    case "hmac": {
      const sig = header(headers, spec.header.toLowerCase());
      if (sig === undefined) return { ok: false, reason: `${spec.header} is missing` };
      const given = sig.startsWith("sha256=") ? sig.slice(7) : sig;
      if (!same(given.toLowerCase(), hmacHex(spec.secret, body))) return { ok: false, reason: `${spec.header} does not match` };
      return { ok: true, id: header(headers, "x-request-id") ?? header(headers, "x-webhook-id") };
    }
  }
}
