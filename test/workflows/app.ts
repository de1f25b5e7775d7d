/**
 * Workflow test apps: writes an app folder (config + function files importing the package's function API) and
 * starts a real server on it in-process, on SQLite or on a fresh PostgreSQL schema. Side effects are lines
 * appended to a file, so a test counts how often each step ran across worker threads and restarts.
 */
import { randomUUID } from "node:crypto";
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startServer, type RunningServer } from "../../src/server/server.ts";
import { eventually } from "../helpers/sluice-process.ts";
import { tempDir } from "../runtime/helpers.ts";

export const functionApi = new URL("../../src/runtime/function-api.ts", import.meta.url).pathname;

export interface TestApp {
  dir: string;
  /** The side-effect log: one line per effect. */
  log: string;
  effects(): string[];
  count(line: string): number;
}

/** `files`: file name -> source; `${API}` is replaced by the function API's path and `${LOG}` by the log file. */
export function writeApp(files: Record<string, string>, name = "wf-test"): TestApp {
  const dir = tempDir("sluice-wf-");
  mkdirSync(join(dir, "functions"), { recursive: true });
  const log = join(dir, "effects.log");
  writeFileSync(log, "");
  // No admin rate limit: the tests read every run's state back over /admin, faster than 100 requests a second.
  writeFileSync(join(dir, "sluice.config.ts"), `export default { name: ${JSON.stringify(name)}, server: { rateLimit: { admin: 0 } } };\n`);
  for (const [file, source] of Object.entries(files)) {
    writeFileSync(join(dir, "functions", file), source.replaceAll("${API}", JSON.stringify(functionApi)).replaceAll("${LOG}", JSON.stringify(log)));
  }
  const effects = () => (existsSync(log) ? readFileSync(log, "utf8").split("\n").filter(Boolean) : []);
  return { dir, log, effects, count: (line) => effects().filter((l) => l === line).length };
}

export async function start(app: TestApp, store?: string): Promise<RunningServer> {
  return startServer({
    appDir: app.dir,
    mode: "start",
    flags: { port: 0, host: "127.0.0.1", logLevel: "silent", ...(store ? { store } : {}) },
    env: {},
    noAuth: true,
  });
}

export async function admin<T = any>(server: RunningServer, method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
  const res = await fetch(`${server.url}/admin/${path}`, {
    method,
    // Admin writes take JSON only (docs/security.md): a write without a body sends an empty object.
    ...(body === undefined && method === "GET" ? {} : { headers: { "content-type": "application/json" }, body: JSON.stringify(body ?? {}) }),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

/** Waits until every run of `workflow` listed is in a final status and there are `n` of them. */
export async function runsSettled(server: RunningServer, workflow: string, n: number, timeoutMs = 60_000, final = ["completed", "failed", "compensated", "cancelled", "compensation-failed"]) {
  return eventually(async () => {
    const runs = await server.workflows.list({ workflow });
    return runs.length === n && runs.every((r) => final.includes(r.status)) ? runs : undefined;
  }, `${n} settled runs of ${workflow}`, timeoutMs);
}

export { appendFileSync };

/** Publishes events given without specversion and id (filled here) into the default bus; fails on a refused one. */
export async function publish(server: RunningServer, events: Record<string, unknown> | Record<string, unknown>[]) {
  const list = (Array.isArray(events) ? events : [events]).map((e) => ({ specversion: "1.0", id: randomUUID(), ...e }));
  const out = await server.broker.publish("default", list);
  if (out.failedEntryCount > 0) throw new Error(`publish refused: ${JSON.stringify(out.entries)}`);
  return out;
}
