/**
 * Redaction of admin reads: rule targets carry webhook secrets, header values (API tokens) and URLs with
 * passwords, which `GET /admin/rules` used to return in clear. Every target kind is redacted the same way, so a
 * new kind with credentials under the usual names is covered without code of its own.
 */
export const REDACTED = "[redacted]";
const secretKey = /secret|password|passwd|token|api[-_]?key|credential|private/i;

function redactUrl(value: string): string {
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) return value;
  try {
    const url = new URL(value);
    if (url.password === "") return value;
    url.password = REDACTED;
    return url.toString();
  } catch {
    return value;
  }
}

/** A copy of `value` with secrets, header values and URL passwords replaced by "[redacted]". */
export function redact(value: unknown, depth = 0): unknown {
  if (depth > 32) return REDACTED;
  if (typeof value === "string") return redactUrl(value);
  if (Array.isArray(value)) return value.map((v) => redact(v, depth + 1));
  if (typeof value !== "object" || value === null) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    if (secretKey.test(k)) out[k] = Array.isArray(v) ? v.map(() => REDACTED) : REDACTED;
    else if (k === "headers" && typeof v === "object" && v !== null && !Array.isArray(v)) {
      out[k] = Object.fromEntries(Object.keys(v).map((h) => [h, REDACTED]));
    } else out[k] = redact(v, depth + 1);
  }
  return out;
}

/** A rule as admin reads show it: targets redacted, the pattern and the rest as they are. */
export function redactRule<R extends { targets: readonly unknown[] }>(rule: R): R {
  return { ...rule, targets: rule.targets.map((t) => redact(t)) };
}
