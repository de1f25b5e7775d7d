/**
 * Keeps the server's recent log lines (pino JSON) for `GET /admin/logs` and `sluice logs --follow`:
 * a bounded ring plus live subscribers. It is a pino destination (`write(line)`).
 */
export type LogLine = Record<string, unknown> & { time?: number; level?: number; msg?: string };

export interface LogBuffer {
  /** pino destination. */
  write(chunk: string): boolean;
  recent(filter: (line: LogLine) => boolean, limit: number): LogLine[];
  subscribe(listener: (line: LogLine) => void): () => void;
}

export function createLogBuffer(capacity = 2000): LogBuffer {
  const ring: LogLine[] = [];
  const listeners = new Set<(line: LogLine) => void>();
  return {
    write(chunk) {
      for (const text of chunk.split("\n")) {
        if (!text) continue;
        let line: LogLine;
        try {
          line = JSON.parse(text) as LogLine;
        } catch {
          line = { msg: text };
        }
        ring.push(line);
        if (ring.length > capacity) ring.splice(0, ring.length - capacity);
        for (const l of listeners) l(line);
      }
      return true;
    },
    recent(filter, limit) {
      const out: LogLine[] = [];
      for (let i = ring.length - 1; i >= 0 && out.length < limit; i--) if (filter(ring[i]!)) out.push(ring[i]!);
      return out.reverse();
    },
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}

/** Lines of one function: the runtime tags them `function`, the host's own lines `functionName`. */
export function functionFilter(fn: string | undefined): (line: LogLine) => boolean {
  if (!fn) return () => true;
  return (line) => line.function === fn || line.functionName === fn;
}
