/**
 * End to end: JSON nested past the limit (128 levels) is refused with a 400 naming the limit at every way in
 * (CloudEvents ingest in each mode, API routes, admin invoke), just below the limit is accepted, and a server
 * that took 100 hostile requests of each kind still delivers.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureBuilt, eventually, startSluice, type SluiceProcess } from "../helpers/sluice-process.ts";

const LIMIT = 128;
let dir: string;
let out: string;
let server: SluiceProcess;

/** A JSON text nesting objects `levels` deep (0: a scalar). */
const nestedText = (levels: number) => `${'{"a":'.repeat(levels)}1${"}".repeat(levels)}`;

const echo = (name: string, isolation: string) => `import { defineFunction } from "sluice";
export default defineFunction({ name: "${name}", isolation: "${isolation}", handler(event) { return { ok: true, route: event.data?.route ?? null }; } });
`;

before(async () => {
  ensureBuilt();
  dir = mkdtempSync(join(tmpdir(), "sluice-deep-"));
  out = join(dir, "delivered.log");
  const app = join(dir, "app");
  mkdirSync(join(app, "functions"), { recursive: true });
  writeFileSync(
    join(app, "sluice.config.ts"),
    `import { defineApp } from "sluice";
export default defineApp({ name: "deep-test", routes: { "POST /sync": "echo", "POST /proc": "proc" } });
`,
  );
  writeFileSync(join(app, "functions", "echo.ts"), echo("echo", "worker"));
  writeFileSync(join(app, "functions", "proc.ts"), echo("proc", "process"));
  writeFileSync(
    join(app, "functions", "record.ts"),
    `import { defineFunction } from "sluice";
import { appendFileSync } from "node:fs";
export default defineFunction({ name: "record", on: { type: ["deep.ok"] }, handler(event) { appendFileSync(process.env.DEEP_OUT!, event.id + "\\n"); } });
`,
  );
  server = await startSluice(["start", app, "--port", "0", "--store", `sqlite:${join(dir, "deep.db")}`], { DEEP_OUT: out });
});
after(async () => {
  await server?.stop("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
});

const structured = (id: string, dataText: string) =>
  `{"specversion":"1.0","id":"${id}","source":"/deep","type":"deep.ok","datacontenttype":"application/json","data":${dataText}}`;

async function post(path: string, contentType: string, body: string): Promise<{ status: number; body: any }> {
  const res = await fetch(server.url + path, { method: "POST", headers: { "content-type": contentType }, body });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

function assertTooDeep(r: { status: number; body: any }, where: string): void {
  assert.equal(r.status, 400, `${where}: ${JSON.stringify(r.body)}`);
  assert.equal(r.body.error.code, "E_JSON_TOO_DEEP", where);
  assert.match(r.body.error.message, new RegExp(`${LIMIT}`), `${where}: the message names the limit`);
  assert.equal(typeof r.body.error.path, "string", where);
}

test("deep JSON - CloudEvents ingest: structured, batch and binary accept the limit and refuse one level more", async () => {
  // The event object is level 1, so its data may nest LIMIT - 1 levels.
  assert.equal((await post("/events", "application/cloudevents+json", structured("s-ok", nestedText(LIMIT - 1)))).status, 202);
  assertTooDeep(await post("/events", "application/cloudevents+json", structured("s-deep", nestedText(LIMIT))), "structured");
  assert.equal((await post("/events", "application/cloudevents-batch+json", `[${structured("b-ok", nestedText(LIMIT - 1))}]`)).status, 202);
  assertTooDeep(await post("/events", "application/cloudevents-batch+json", `[${structured("b-deep", nestedText(LIMIT))}]`), "batch");
  const binary = (id: string, body: string) =>
    fetch(`${server.url}/events`, {
      method: "POST",
      headers: { "content-type": "application/json", "ce-specversion": "1.0", "ce-id": id, "ce-source": "/deep", "ce-type": "deep.ok" },
      body,
    });
  assert.equal((await binary("bin-ok", nestedText(LIMIT - 1))).status, 202);
  const refused = await binary("bin-deep", nestedText(LIMIT));
  assertTooDeep({ status: refused.status, body: await refused.json() }, "binary");
  // The accepted ones are delivered.
  await eventually(async () => {
    const ids = existsSync(out) ? readFileSync(out, "utf8").split("\n") : [];
    return ["s-ok", "b-ok", "bin-ok"].every((id) => ids.includes(id)) ? true : undefined;
  }, "the accepted deep events are delivered");
});

test("deep JSON - API routes (worker and process mode) and admin invoke", async () => {
  for (const path of ["/sync", "/proc"]) {
    const ok = await post(path, "application/json", nestedText(LIMIT));
    assert.equal(ok.status, 200, `${path}: ${JSON.stringify(ok.body)}`);
    assertTooDeep(await post(path, "application/json", nestedText(LIMIT + 1)), path);
  }
  const ok = await post("/admin/functions/echo/invoke", "application/json", `{"data":${nestedText(LIMIT - 2)}}`);
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
  assertTooDeep(await post("/admin/functions/echo/invoke", "application/json", `{"data":${nestedText(LIMIT)}}`), "admin invoke");
});

test("deep JSON - 100 hostile requests of each kind, then the server still delivers", async () => {
  const hostile = nestedText(4_000);
  const kinds: [string, string, string][] = [
    ["/events", "application/cloudevents+json", structured("h", hostile)],
    ["/events", "application/cloudevents-batch+json", `[${structured("h", hostile)}]`],
    ["/events", "application/json", hostile],
    ["/sync", "application/json", hostile],
    ["/proc", "application/json", hostile],
    ["/admin/functions/echo/invoke", "application/json", `{"data":${hostile}}`],
    ["/admin/functions/proc/invoke", "application/json", `{"event":{"data":${hostile}}}`],
  ];
  for (const [path, type, body] of kinds) {
    const replies = await Promise.all(
      Array.from({ length: 100 }, () =>
        fetch(server.url + path, { method: "POST", headers: { "content-type": type, "ce-specversion": "1.0", "ce-id": "h", "ce-source": "/h", "ce-type": "deep.ok" }, body }).then((r) => r.status),
      ),
    );
    assert.deepEqual([...new Set(replies)], [400], `${path} (${type})`);
  }
  assert.equal((await post("/events", "application/cloudevents+json", structured("after-hostile", "{}"))).status, 202);
  await eventually(async () => (existsSync(out) && readFileSync(out, "utf8").split("\n").includes("after-hostile") ? true : undefined), "delivery after the hostile requests");
  assert.equal((await post("/sync", "application/json", "{}")).status, 200);
  assert.equal(server.proc.exitCode, null, "the server is still running");
});
