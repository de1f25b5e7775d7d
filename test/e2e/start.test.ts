/**
 * End to end: `sluice start` as child processes (JSON logs, graceful SIGTERM), an app outside this package that
 * imports "sluice", API gateway error mapping, and two processes on one PostgreSQL firing each schedule tick once.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createTestDatabase, skipUnless } from "../helpers/services.ts";
import { ensureBuilt, eventually, root, sluiceCli, startSluice } from "../helpers/sluice-process.ts";

let dir: string;

function writeApp(at: string, config: string, functions: Record<string, string>): void {
  mkdirSync(join(at, "functions"), { recursive: true });
  writeFileSync(join(at, "sluice.config.ts"), config);
  for (const [name, text] of Object.entries(functions)) writeFileSync(join(at, "functions", `${name}.ts`), text);
}

const gatewayApp = {
  config: `import { defineApp } from "sluice";
export default defineApp({
  name: "gateway-test",
  routes: {
    "GET /boom": "boom",
    "GET /slow": "slow",
    "GET /hello/:who": "hello",
    "POST /later": { function: "hello", async: true },
  },
});
`,
  functions: {
    boom: `import { defineFunction } from "sluice";
export default defineFunction({ name: "boom", handler() { throw new Error("secret internal detail"); } });
`,
    slow: `import { defineFunction } from "sluice";
export default defineFunction({ name: "slow", timeout: "300ms", async handler() { await new Promise((r) => setTimeout(r, 5000)); return "late"; } });
`,
    hello: `import { defineFunction } from "sluice";
export default defineFunction({
  name: "hello",
  handler(event, ctx) {
    ctx.log.info({ route: event.data.route, body: event.data.body }, "hello handled");
    return { who: event.data.pathParameters.who ?? null, query: event.data.query, method: event.data.method };
  },
});
`,
  },
};

before(() => {
  ensureBuilt();
  dir = mkdtempSync(join(tmpdir(), "sluice-start-"));
});
after(() => rmSync(dir, { recursive: true, force: true }));

test("start - JSON logs, gateway results and errors mapped to 200/202/500/504, graceful SIGTERM", async () => {
  const app = join(dir, "gateway");
  writeApp(app, gatewayApp.config, gatewayApp.functions);
  const s = await startSluice(["start", app, "--port", "0", "--store", `sqlite:${join(dir, "gateway.db")}`]);
  try {
    const readyLine = await s.waitForLine(/sluice ready/);
    const ready = JSON.parse(readyLine) as { msg: string; level: number; port: number };
    assert.equal(ready.level, 30);

    let res = await fetch(`${s.url}/hello/ada?x=1`);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { who: "ada", query: { x: "1" }, method: "GET" });

    res = await fetch(`${s.url}/boom`);
    assert.equal(res.status, 500);
    const boom = (await res.json()) as { error: { code: string; message: string }; requestId: string };
    assert.ok(boom.requestId);
    assert.equal(res.headers.get("x-request-id"), boom.requestId);
    assert.doesNotMatch(JSON.stringify(boom), /secret internal detail|at .*\.ts/);
    await s.waitForLine(new RegExp(`"requestId":"${boom.requestId}"`));

    res = await fetch(`${s.url}/slow`);
    assert.equal(res.status, 504);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, "E_HANDLER_TIMEOUT");

    res = await fetch(`${s.url}/later`, { method: "POST", headers: { "content-type": "application/json" }, body: '{"n":1}' });
    assert.equal(res.status, 202);
    assert.ok(((await res.json()) as { eventId: string }).eventId);
    await s.waitForLine(/"route":"POST \/later".*"msg":"hello handled"/);

    const health = await fetch(`${s.url}/healthz`);
    assert.equal(health.status, 200);
    const metrics = await (await fetch(`${s.url}/metrics`)).text();
    assert.match(metrics, /sluice_invocations_total\{function="hello",outcome="success"\} [1-9]/);
    assert.match(metrics, /sluice_invocations_total\{function="slow",outcome="timeout"\} 1/);
    assert.match(metrics, /sluice_invocation_duration_seconds_bucket\{le="[^"]+",function="hello"\}/);
    assert.match(metrics, /sluice_backlog\{function="hello"\} \d/);
    assert.match(metrics, /# TYPE sluice_dlq_size gauge/);
    assert.match(metrics, /sluice_instances\{function="hello",state="idle"\} \d/);

    const logs = sluiceCli(["logs", "--function", "hello", "--json", "--url", s.url]);
    assert.equal(logs.code, 0, logs.stderr);
    assert.ok(logs.stdout.trim().split("\n").every((l) => /"function":"hello"/.test(l)));
  } finally {
    const code = await s.stop("SIGTERM");
    assert.equal(code, 0, s.output());
    assert.match(s.output(), /"msg":"stopped"/);
  }
});

test("start - a config problem stops start-up with the file, the key and the fix, exit code 2", async () => {
  const app = join(dir, "broken");
  writeApp(app, `export default { name: "broken", routes: { "GET /x": "hallo" }, schedules: { s: { cron: "* * *", emit: { type: "t", source: "s" } } } };\n`, {
    hello: gatewayApp.functions.hello,
  });
  const r = sluiceCli(["start", app, "--port", "0", "--store", `sqlite:${join(dir, "broken.db")}`]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /sluice\.config\.ts has 2 problems/);
  assert.match(r.stderr, /routes\["GET \/x"\]: refers to unknown function "hallo"\n\s+fix: did you mean "hello"\?/);
  assert.match(r.stderr, /schedules\["s"\]\.cron: cron "\* \* \*" has 3 fields/);
});

test("init - scaffolds an app that sluice dev runs", async () => {
  const app = join(dir, "fresh-app");
  const init = sluiceCli(["init", app]);
  assert.equal(init.code, 0, init.stderr);
  const s = await startSluice(["dev", app, "--port", "0"]);
  try {
    const res = await fetch(`${s.url}/hello`, { method: "POST", headers: { "content-type": "application/json" }, body: '{"name":"Ada"}' });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { message: "hello, Ada" });
    assert.equal(sluiceCli(["init", app]).code, 2, "init refuses a folder that is not empty");
    // hot reload: an edited function file serves the next invocation
    const file = join(app, "functions", "hello.ts");
    writeFileSync(file, readFileSync(file, "utf8").replace("`hello, $" + "{who}`", "`hi again, $" + "{who}`"));
    await s.waitForLine(/function reloaded/);
    const again = await fetch(`${s.url}/hello`, { method: "POST", headers: { "content-type": "application/json" }, body: '{"name":"Ada"}' });
    assert.deepEqual(await again.json(), { message: "hi again, Ada" });
  } finally {
    await s.stop("SIGKILL");
  }
});

test("start - two processes on one PostgreSQL fire each schedule tick once", { skip: await skipUnless("postgres") }, async () => {
  const db = await createTestDatabase();
  const app = join(dir, "ticks");
  writeApp(
    app,
    `export default { name: "ticks", schedules: { tick: { rate: "1 second", emit: { type: "tick.fired", source: "ticks" } } } };\n`,
    {},
  );
  const args = ["start", app, "--port", "0", "--store", db.url];
  const nodes = await Promise.all([startSluice(args), startSluice(args)]);
  try {
    const fired = () =>
      nodes.flatMap((n) =>
        n
          .output()
          .split("\n")
          .filter((l) => l.includes('"msg":"schedule fired"'))
          .map((l) => (JSON.parse(l) as { scheduledTime: string }).scheduledTime),
      );
    await eventually(async () => (new Set(fired()).size >= 4 ? true : undefined), "four ticks", 20_000);
    for (const n of nodes) assert.equal(await n.stop("SIGTERM"), 0);
    const times = fired();
    assert.equal(times.length, new Set(times).size, `a tick fired twice: ${times.sort().join(", ")}`);
    assert.ok(times.length >= 4);
  } finally {
    for (const n of nodes) await n.stop("SIGKILL");
    await db.drop();
  }
});

test("init - the scaffolded app's own npm test passes right after npm install, with sluice linked from this checkout", async () => {
  const app = join(dir, "own-tests");
  assert.equal(sluiceCli(["init", app]).code, 0);
  const pkg = JSON.parse(readFileSync(join(app, "package.json"), "utf8")) as { dependencies: { sluice: string } };
  assert.equal(pkg.dependencies.sluice, `file:${root.replace(/\/$/, "")}`, "run from a checkout, it links the checkout");
  assert.doesNotMatch(readFileSync(join(app, "README.md"), "utf8"), /\]\(https?:\/\/[^)]*\/\)/, "no placeholder links");
  // Without this test runner's NODE_TEST_CONTEXT, so the app's own `node --test` reports as in a terminal.
  const { NODE_TEST_CONTEXT: _, ...env } = process.env;
  const npm = (args: string[]) => spawnSync("npm", args, { cwd: app, encoding: "utf8", timeout: 300_000, env: { ...env, npm_config_audit: "false", npm_config_fund: "false" } });
  const install = npm(["install", "--prefer-offline"]);
  assert.equal(install.status, 0, `npm install failed:\n${install.stdout}\n${install.stderr}`);
  const t = npm(["test"]);
  assert.equal(t.status, 0, `the app's npm test failed:\n${t.stdout}\n${t.stderr}`);
  assert.match(t.stdout, /pass 1/);
});
