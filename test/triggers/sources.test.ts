/**
 * The source registry: a kind registered from this file is validated per kind (problems name
 * `sources.<name>.<key>`), publishes durably into a real bus of a server started in-process (its events reach a
 * webhook over real HTTP), and reports its health through `GET /admin/sources` and `sluice status`.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { once } from "node:events";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import type { PublishResult } from "../../src/bus/types.ts";
import { ConfigError, validateApp } from "../../src/server/config.ts";
import { startServer } from "../../src/server/server.ts";
import type { EventSource, SourceContext, SourceKind } from "../../src/triggers/source.ts";
import { ensureBuilt, eventually, spawnSluice } from "../helpers/sluice-process.ts";
import { tempDir } from "../runtime/helpers.ts";

interface FeedOptions {
  bus: string;
  count: number;
}

/** Publishes `count` events once started; `close()` waits for that publish. */
function feedKind() {
  const results: PublishResult[] = [];
  const created: string[] = [];
  const kind: SourceKind<FeedOptions> = {
    kind: "test-feed",
    validate(_name, options, key, problems) {
      problems.unknownKeys(options, ["bus", "count"], key);
      problems.busRef(options.bus, `${key}.bus`);
      const count = options.count ?? 1;
      if (typeof count !== "number" || !Number.isInteger(count) || count < 1 || count > 100) problems.add(`${key}.count`, "must be a whole number from 1 to 100");
      return typeof options.bus === "string" && typeof count === "number" ? { bus: options.bus, count } : undefined;
    },
    async create(name, options) {
      created.push(name);
      let publishing: Promise<void> | undefined;
      const source: EventSource = {
        name,
        kind: "test-feed",
        async start(ctx: SourceContext) {
          ctx.health("degraded", "not published yet");
          const events = Array.from({ length: options.count }, (_, i) => ({ specversion: "1.0", id: `${name}-${i}`, source: `/feed/${name}`, type: "feed.item", data: { i } }));
          publishing = ctx.publish(options.bus, events).then((out) => {
            results.push(out);
            if (out.failedEntryCount > 0) ctx.health("degraded", `${out.failedEntryCount} refused`);
            else ctx.health("ok", `published ${options.count}`);
          });
        },
        describe: () => ({ count: options.count }),
        async close() {
          await publishing;
        },
      };
      return source;
    },
  };
  return { kind, results, created };
}

/** Runs a CLI command without blocking this process (the server under test runs in it). */
async function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawnSluice(args);
  // "close", not "exit": the output streams are read to their end.
  await once(child.proc, "close");
  const code = await child.exited;
  return { code, stdout: child.stdout(), stderr: child.stderr() };
}

function problems(input: unknown, kinds: readonly SourceKind[]): Map<string, string> {
  try {
    validateApp(input, { file: "sluice.config.ts", sources: kinds });
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return new Map(err.problems.map((p) => [p.key, `${p.message} | ${p.fix ?? ""}`]));
  }
  return new Map();
}

test("sources - each kind validates its own options; problems name sources.<name>.<key>", () => {
  const feed = feedKind();
  const ok = validateApp(
    { name: "a", buses: ["orders"], sources: { f: { kind: "test-feed", bus: "orders", count: 2 }, t: { kind: "schedule", rate: "5 minutes", emit: { type: "x", source: "y" } } } },
    { file: "c.ts", sources: [feed.kind] },
  );
  assert.deepEqual(ok.sources.map((s) => [s.name, s.kind]), [["f", "test-feed"], ["t", "schedule"]]);
  assert.deepEqual(ok.sources[0]?.options, { bus: "orders", count: 2 });
  assert.deepEqual(feed.created, [], "validation creates nothing (no driver is loaded)");

  const bad = problems(
    {
      name: "a",
      schedules: { dup: { rate: "5 minutes", invoke: "f" } },
      sources: {
        f: { kind: "test-feed", bus: "nowhere", count: 0, extra: 1 },
        g: { kind: "test-fed" },
        h: { bus: "default" },
        t: { kind: "schedule", rate: "5 fortnights", emit: { type: "x" } },
        dup: { kind: "test-feed", bus: "default" },
        "-x": { kind: "test-feed", bus: "default" },
      },
    },
    [feed.kind],
  );
  assert.match(bad.get("sources.f.bus") ?? "", /unknown bus "nowhere"/);
  assert.match(bad.get("sources.f.count") ?? "", /1 to 100/);
  assert.ok(bad.has("sources.f.extra"));
  assert.match(bad.get("sources.g.kind") ?? "", /"test-fed" is not a source kind \| did you mean "test-feed"\?/);
  assert.match(bad.get("sources.h.kind") ?? "", /is missing \| kinds are .*schedule.*test-feed/);
  assert.match(bad.get("sources.t.rate") ?? "", /invalid/);
  assert.ok(bad.has("sources.t.emit.source"));
  assert.match(bad.get("sources.dup") ?? "", /same name/);
  assert.ok(bad.has("sources.-x"));
  assert.match(problems({ name: "a", sources: { f: { kind: "test-feed", bus: "default" } } }, []).get("sources.f.kind") ?? "", /not a source kind/);
});

test("sources - a registered source publishes durably and its health shows in /admin/sources and sluice status", async () => {
  ensureBuilt();
  const feed = feedKind();
  const received: { type: string; id: string }[] = [];
  const hook = createServer((req: IncomingMessage, res) => {
    let body = "";
    req.on("data", (c: Buffer) => (body += c.toString()));
    req.on("end", () => {
      const e = JSON.parse(body) as { type: string; id: string };
      received.push({ type: e.type, id: e.id });
      res.writeHead(204).end();
    });
  });
  hook.listen(0, "127.0.0.1");
  await once(hook, "listening");
  const hookUrl = `http://127.0.0.1:${(hook.address() as AddressInfo).port}/hook`;

  const dir = tempDir("sluice-sources-");
  mkdirSync(join(dir, "functions"));
  writeFileSync(
    join(dir, "sluice.config.ts"),
    `export default {
      name: "feeds",
      buses: ["feed"],
      sources: {
        items: { kind: "test-feed", bus: "feed", count: 3 },
        tick: { kind: "schedule", rate: "1 second", emit: { type: "feed.tick", source: "/tick", bus: "feed" } },
      },
      rules: [{ name: "out", bus: "feed", pattern: { type: ["feed.item", "feed.tick"] }, targets: [{ webhook: ${JSON.stringify(hookUrl)} }] }],
    };\n`,
  );
  const server = await startServer({
    appDir: dir,
    mode: "start",
    flags: { port: 0, host: "127.0.0.1", logLevel: "silent", allowPrivateNetworks: true },
    env: {},
    noAuth: true,
    sources: [feed.kind],
  });
  try {
    assert.deepEqual(feed.created, ["items"]);
    await eventually(async () => (received.filter((r) => r.type === "feed.item").length === 3 ? true : undefined), "three feed items at the webhook", 10_000);
    assert.deepEqual(received.filter((r) => r.type === "feed.item").map((r) => r.id).sort(), ["items-0", "items-1", "items-2"]);
    assert.equal(feed.results[0]?.failedEntryCount, 0);
    await eventually(async () => (received.some((r) => r.type === "feed.tick") ? true : undefined), "a tick of the schedule source", 10_000);

    const res = await fetch(`${server.url}/admin/sources`);
    assert.equal(res.status, 200);
    const list = (await res.json()) as { name: string; kind: string; status: string; published: number; detail?: string; details?: Record<string, unknown> }[];
    const byName = new Map(list.map((s) => [s.name, s]));
    assert.deepEqual([...byName.keys()], ["http", "items", "tick"]);
    assert.deepEqual(
      { kind: byName.get("items")?.kind, status: byName.get("items")?.status, published: byName.get("items")?.published, detail: byName.get("items")?.detail },
      { kind: "test-feed", status: "ok", published: 3, detail: "published 3" },
    );
    assert.deepEqual(byName.get("items")?.details, { count: 3 });
    assert.equal(byName.get("http")?.status, "ok");
    assert.equal(byName.get("tick")?.kind, "schedule");
    assert.ok((byName.get("tick")?.published ?? 0) >= 1);
    const schedules = (await (await fetch(`${server.url}/admin/schedules`)).json()) as { name: string }[];
    assert.deepEqual(schedules.map((s) => s.name), ["tick"]);

    const status = await cli(["status", "--url", server.url]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /^items\s+test-feed\s+ok\s+3\s+0\s+0\s+-\s+published 3$/m);
    assert.match(status.stdout, /^http\s+http\s+ok\s+0/m);
    const json = JSON.parse((await cli(["status", "--json", "--url", server.url])).stdout) as { sources: { name: string; status: string }[] };
    assert.deepEqual(json.sources.map((s) => [s.name, s.status]), [["http", "ok"], ["items", "ok"], ["tick", "ok"]]);
  } finally {
    await server.close();
    hook.close();
    rmSync(dir, { recursive: true, force: true });
  }
  assert.deepEqual(server.sources.list().map((s) => s.status), ["stopped", "stopped", "stopped"], "close() stops every source");
});
