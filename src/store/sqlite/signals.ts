/** One WorkSignal per database file in this process, so store objects on one file wake each other. */
import { WorkSignal } from "../work-signal.ts";

const signals = new Map<string, { signal: WorkSignal; refs: number }>();

export function acquireSignal(file: string): WorkSignal {
  let entry = signals.get(file);
  if (!entry) {
    entry = { signal: new WorkSignal(), refs: 0 };
    signals.set(file, entry);
  }
  entry.refs++;
  return entry.signal;
}

export function releaseSignal(file: string): void {
  const entry = signals.get(file);
  if (entry && --entry.refs === 0) signals.delete(file);
}
