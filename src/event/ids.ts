import { randomFillSync } from "node:crypto";
import { v7 } from "uuid";

const pool = new Uint8Array(16 * 256);
let poolOffset = pool.length;

function randomBytes16(): Uint8Array {
  if (poolOffset === pool.length) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  const bytes = pool.subarray(poolOffset, poolOffset + 16);
  poolOffset += 16;
  return bytes;
}

// Monotonic UUIDv7 state (RFC 9562 Section 6.2, method 1: a 32-bit counter seeded randomly each millisecond),
// kept here rather than in `uuid` so that an injected clock gets the same guarantee as the wall clock.
let lastMs = -Infinity;
let seq = 0;

/**
 * A new event id: a UUIDv7 (RFC 9562), so ids sort by creation time. Within one process ids are strictly
 * increasing, even for many ids in the same millisecond or when the clock steps back.
 *
 * @param nowMs the creation time in epoch ms (defaults to `Date.now()`).
 * @example
 * ```ts
 * newEventId(); // "0193a1c2-7f00-7abc-8def-0123456789ab"
 * ```
 */
export function newEventId(nowMs: number = Date.now()): string {
  const random = randomBytes16();
  if (nowMs > lastMs) {
    lastMs = nowMs;
    // Leave the top bit clear so the counter has room to grow within the millisecond.
    seq = ((random[6] as number) << 23) | ((random[7] as number) << 16) | ((random[8] as number) << 8) | (random[9] as number);
  } else {
    seq = (seq + 1) | 0;
    if (seq === 0) lastMs++;
  }
  return v7({ msecs: lastMs, seq, random });
}
