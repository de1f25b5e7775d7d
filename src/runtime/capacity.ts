/**
 * Who may have an instance: each function's cap, reservedConcurrency's own slots, and the shared pool (what
 * limits.maxInstances leaves after reservations), which functions split fairly when several wait for it.
 */
import type { FunctionEntry, Instance } from "./records.ts";
import type { FunctionRegistry } from "./registry.ts";

export const isLive = (i: Instance): boolean => i.state !== "stopping";
export const isIdle = (i: Instance): boolean => i.state === "ready" && i.inflight.size === 0;
export const isReserved = (fn: FunctionEntry): boolean => fn.config.reservedConcurrency !== undefined;
const fnCap = (fn: FunctionEntry): number => Math.min(fn.config.concurrency ?? Infinity, fn.config.reservedConcurrency ?? Infinity);

export function liveCount(fn: FunctionEntry): number {
  let n = 0;
  for (const i of fn.instances) if (isLive(i)) n++;
  return n;
}

export const atCap = (fn: FunctionEntry): boolean => liveCount(fn) >= fnCap(fn);

export function sharedPoolCount(registry: FunctionRegistry): number {
  let n = 0;
  for (const fn of registry.values()) if (!isReserved(fn)) n += liveCount(fn);
  return n;
}

/** The least useful idle instance whose stop frees a slot `fn` may use (same pool), if any. */
export function evictionVictim(registry: FunctionRegistry, fn: FunctionEntry): Instance | undefined {
  let victim: Instance | undefined;
  const candidates = isReserved(fn) ? [fn] : [...registry.values()].filter((f) => !isReserved(f));
  for (const f of candidates) {
    let keep = f.config.minInstances;
    for (const i of f.instances) {
      if (!isIdle(i)) continue;
      const stale = i.version !== f.version;
      if (!stale && f === fn) continue; // an idle instance of fn itself would have taken the work
      if (!stale && keep > 0) {
        keep--;
        continue;
      }
      victim = i;
      if (stale) break;
    }
    if (victim) break;
  }
  return victim;
}

/** True when `fn` holds more than its fair share of the shared pool while another function starves for it. */
export function overShare(registry: FunctionRegistry, poolSize: number, fn: FunctionEntry): boolean {
  if (isReserved(fn)) return false;
  if (sharedPoolCount(registry) < poolSize) return false;
  const waiting = [...registry.values()].filter((f) => !isReserved(f) && f !== fn && f.queue.length > 0 && !atCap(f));
  if (waiting.length === 0) return false;
  const share = Math.max(1, Math.floor(poolSize / (waiting.length + 1)));
  return liveCount(fn) > share && waiting.some((f) => liveCount(f) < share);
}
