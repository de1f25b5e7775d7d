/**
 * AMQP message headers and the CloudEvents AMQP binding: attributes travel as application properties named
 * `cloudEvents:<attr>` (or `cloudEvents_<attr>`, the form for brokers that refuse ":"); `ce-`/`ce_` prefixes are
 * read too. The sink writes `cloudEvents_<attr>`.
 */
const prefixes = ["cloudevents:", "cloudevents_", "ce-", "ce_"];

function text(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (typeof v === "number" || typeof v === "boolean" || typeof v === "bigint") return String(v);
  if (Buffer.isBuffer(v)) return v.toString("utf8");
  return undefined;
}

/** Binding attributes under `ce-<attr>`, every other header by its own name (values as text). */
export function readAmqpHeaders(headers: Record<string, unknown> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers ?? {})) {
    const value = text(v);
    if (value === undefined) continue;
    const lower = k.toLowerCase();
    const prefix = prefixes.find((p) => lower.startsWith(p));
    if (prefix !== undefined) out[`ce-${lower.slice(prefix.length)}`] = value;
    else out[k] = value;
  }
  return out;
}

export const amqpAttributePrefix = "cloudEvents_";
