/**
 * A registry of pluggable parts keyed by kind (rule targets, event sources): the built-in entries plus the ones a
 * caller registers. Built once, read-only after, so a kind cannot change under running deliveries.
 */
import { ErrorCode, SluiceError } from "../errors.ts";

const kindPattern = /^[a-z][A-Za-z0-9-]{0,31}$/;

/** Throws E_CONFIG_INVALID for a malformed or duplicate kind (a registered kind would silently replace a built-in). */
export function kindRegistry<T extends { readonly kind: string }>(what: string, entries: readonly T[]): ReadonlyMap<string, T> {
  const map = new Map<string, T>();
  for (const entry of entries) {
    if (!kindPattern.test(entry.kind)) {
      throw new SluiceError(ErrorCode.ConfigInvalid, `${what} kind ${JSON.stringify(entry.kind)} must be 1-32 letters, digits or "-", starting with a lower-case letter`);
    }
    if (map.has(entry.kind)) throw new SluiceError(ErrorCode.ConfigInvalid, `${what} kind "${entry.kind}" is registered twice`);
    map.set(entry.kind, entry);
  }
  return map;
}
