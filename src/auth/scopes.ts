/**
 * API key scopes. A key holds a list; a request needs one scope and passes when any held scope covers it:
 * `publish` covers every `publish:<bus>`, `invoke` every `invoke:<function>`, `admin:write` covers `admin:read`.
 */
import { isName } from "../util/validate.ts";

export const SCOPES = ["publish", "publish:<bus>", "invoke", "invoke:<function>", "admin:read", "admin:write", "metrics"] as const;

/** Every scope a bootstrap admin key holds. */
export const ALL_SCOPES = ["publish", "invoke", "admin:read", "admin:write", "metrics"] as const;

/** Why `scope` is not a scope, or undefined when it is one. */
export function scopeProblem(scope: unknown): string | undefined {
  if (typeof scope !== "string" || scope === "") return "a scope is a non-empty string";
  if (scope === "publish" || scope === "invoke" || scope === "admin:read" || scope === "admin:write" || scope === "metrics") return undefined;
  const m = /^(publish|invoke):(.*)$/.exec(scope);
  if (m) {
    return isName(m[2] ?? "") ? undefined : `${JSON.stringify(m[2])} is not a valid ${m[1] === "publish" ? "bus" : "function"} name`;
  }
  return `unknown scope ${JSON.stringify(scope)}; the scopes are ${SCOPES.join(", ")}`;
}

/** True when a key holding `held` may do what needs `required`. */
export function allows(held: readonly string[], required: string): boolean {
  for (const s of held) {
    if (s === required) return true;
    if (required.startsWith(`${s}:`) && (s === "publish" || s === "invoke")) return true;
    if (s === "admin:write" && required === "admin:read") return true;
  }
  return false;
}
