/**
 * Helpers for runtime tests: real function files written to a temp folder per test, events, waiting with a timeout.
 */
import { randomUUID } from "node:crypto";
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { CloudEvent } from "../../src/event/types.ts";

const functionApi = fileURLToPath(new URL("../../src/runtime/function-api.ts", import.meta.url));

const made: string[] = [];
// Removed when the test file's process ends: a function file must outlive the runtime that bundled it.
process.once("exit", () => {
  for (const dir of made) rmSync(dir, { recursive: true, force: true });
});

/** A fresh folder for one test's function files, removed when the test process exits. */
export function tempDir(prefix = "sluice-fn-"): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}

/**
 * Writes a TypeScript function file: `config` is the object-literal body (without braces) of the definition's
 * other fields, `body` the handler body (it sees `event`, `ctx`, `data` and `sleep`).
 * Returns the file path.
 */
export function writeFunction(dir: string, name: string, config: string, body: string, options: { subdir?: string } = {}): string {
  const folder = options.subdir ? join(dir, options.subdir) : dir;
  mkdirSync(folder, { recursive: true });
  const file = join(folder, `${name}.ts`);
  writeFileSync(
    file,
    `import { defineFunction, NonRetriableError, RetryAfterError } from ${JSON.stringify(functionApi)};
import { threadId } from "node:worker_threads";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
void NonRetriableError; void RetryAfterError; void threadId; void sleep;
export default defineFunction({
  name: ${JSON.stringify(name)},
  ${config}
  async handler(event, ctx) {
    const data = (event.data ?? {}) as any;
    void data;
    ${body}
  },
});
`,
  );
  return file;
}

export function event(type: string, data?: unknown, extra: Record<string, unknown> = {}): CloudEvent {
  return { specversion: "1.0", id: randomUUID(), source: "test", type, ...(data === undefined ? {} : { data }), ...extra };
}

/** Rejects when `promise` has not settled within `ms`. */
export async function within<T>(promise: Promise<T>, ms: number, what = "operation"): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The largest number of [start, end) intervals that overlap at one instant. */
export function maxOverlap(intervals: { start: number; end: number }[]): number {
  const points = intervals.flatMap((i) => [
    { at: i.start, d: 1 },
    { at: i.end, d: -1 },
  ]);
  points.sort((a, b) => a.at - b.at || a.d - b.d);
  let cur = 0;
  let max = 0;
  for (const p of points) {
    cur += p.d;
    max = Math.max(max, cur);
  }
  return max;
}

export const noEmit = async (): Promise<void> => {};

/** A UUIDv7 (RFC 9562): the time-sortable ids of src/event/ids.ts. */
export const uuidV7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
