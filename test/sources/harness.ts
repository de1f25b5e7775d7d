/**
 * An app for broker source tests: the source under test publishes into the default bus, a rule sends its type
 * to the function `sink`, which appends every event it receives (and the process that ran it) to a file, so
 * what "reached the function" survives a SIGKILL of the server.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startServer } from "../../src/server/server.ts";
import { tempDir } from "../runtime/helpers.ts";
import { eventually, startSluice, type SluiceProcess } from "../helpers/sluice-process.ts";

export interface Received {
  id: string;
  source: string;
  type: string;
  subject?: string;
  data?: unknown;
  data_base64?: string;
  pid: number;
  [ext: string]: unknown;
}

export interface SourceApp {
  dir: string;
  received(): Received[];
}

/** `sources` as an object, or as TypeScript source text (to read process.env per node). */
export function writeSourceApp(sources: Record<string, unknown> | string, types: string[]): SourceApp {
  const dir = tempDir("sluice-src-app-");
  const log = join(dir, "received.jsonl");
  mkdirSync(join(dir, "functions"));
  writeFileSync(
    join(dir, "sluice.config.ts"),
    `export default {
  name: "src-test",
  sources: ${typeof sources === "string" ? sources : JSON.stringify(sources)},
  rules: [{ name: "to-sink", pattern: { type: ${JSON.stringify(types)} }, targets: [{ function: "sink" }] }],
};\n`,
  );
  writeFileSync(
    join(dir, "functions", "sink.ts"),
    `import { appendFileSync } from "node:fs";
import { defineFunction } from "sluice";
export default defineFunction({ name: "sink", handler(event) { appendFileSync(${JSON.stringify(log)}, JSON.stringify({ ...event, pid: process.pid }) + "\\n"); } });\n`,
  );
  return {
    dir,
    received: () =>
      existsSync(log)
        ? readFileSync(log, "utf8")
            .split("\n")
            .filter(Boolean)
            .map((l) => JSON.parse(l) as Received)
        : [],
  };
}

export function startInProcess(app: SourceApp, store?: string) {
  return startServer({
    appDir: app.dir,
    mode: "start",
    flags: { port: 0, host: "127.0.0.1", logLevel: "silent", allowPrivateNetworks: true, ...(store === undefined ? { store: `sqlite:${join(app.dir, "store.db")}` } : { store }) },
    env: {},
    noAuth: true,
  });
}

/** Waits until the function received `want` (a key per event), returns the keys seen. */
export async function waitForAll(app: SourceApp, want: Iterable<string>, key: (r: Received) => string, timeoutMs = 120_000): Promise<Set<string>> {
  const wanted = new Set(want);
  return eventually(
    async () => {
      const seen = new Set(app.received().map(key));
      for (const w of wanted) if (!seen.has(w)) return undefined;
      return seen;
    },
    `all ${wanted.size} messages at the function (seen ${new Set(app.received().map(key)).size})`,
    timeoutMs,
  );
}

/**
 * Two `sluice start` nodes on one PostgreSQL share the source; `publish` sends `total` messages numbered
 * 0..total-1 (data.n) while they run; node A is SIGKILLed once some arrived and started again. Every message must
 * reach the function at least once, and both nodes must have run some.
 */
export async function killTwoNodes(o: { app: SourceApp; storeUrl: string; total: number; publish(): Promise<void>; key?: (r: Received) => string; env?: (node: string) => Record<string, string> }): Promise<{ pids: Set<number>; received: Received[] }> {
  const key = o.key ?? ((r: Received) => String((r.data as { n?: number } | undefined)?.n));
  const start = (node: string) => startSluice(["start", o.app.dir, "--port", "0", "--store", o.storeUrl, "--log-level", "info", "--no-auth"], o.env?.(node) ?? {});
  let a: SluiceProcess = await start("a");
  const b = await start("b");
  try {
    const publishing = o.publish();
    await eventually(async () => (o.app.received().length >= o.total / 10 ? true : undefined), "a tenth of the messages before the kill", 60_000);
    await a.stop("SIGKILL");
    await publishing;
    a = await start("a");
    await waitForAll(o.app, Array.from({ length: o.total }, (_, i) => String(i)), key, 180_000);
    const received = o.app.received();
    return { pids: new Set(received.map((r) => r.pid)), received };
  } finally {
    await a.stop("SIGTERM");
    await b.stop("SIGTERM");
  }
}
