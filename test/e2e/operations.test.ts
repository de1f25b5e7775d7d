/**
 * End to end: the operator's commands against `sluice start` child processes — HTTP ingest under backpressure
 * (429), `sluice dlq purge`, `sluice replay --cancel` and `sluice logs --follow` — checked over HTTP and the CLI.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureBuilt, eventually, sluiceCli, spawnSluice, startSluice, type SluiceProcess } from "../helpers/sluice-process.ts";

let dir: string;
/** The shared server of the dlq, replay and logs tests. */
let ops: SluiceProcess;

function writeApp(at: string, config: string, functions: Record<string, string>): void {
  mkdirSync(join(at, "functions"), { recursive: true });
  writeFileSync(join(at, "sluice.config.ts"), config);
  for (const [name, text] of Object.entries(functions)) writeFileSync(join(at, "functions", `${name}.ts`), text);
}

const rejecting = (name: string, type: string) => `import { defineFunction, NonRetriableError } from "sluice";
export default defineFunction({
  name: "${name}",
  on: { type: ["${type}"] },
  handler(event) { throw new NonRetriableError(\`${name} refuses \${event.id}\`); },
});
`;

const opsApp = {
  config: `import { defineApp } from "sluice";
export default defineApp({ name: "ops-test", buses: ["bulk"] });
`,
  functions: {
    "reject-a": rejecting("reject-a", "ops.reject.a"),
    "reject-b": rejecting("reject-b", "ops.reject.b"),
    echo: `import { defineFunction } from "sluice";
export default defineFunction({
  name: "echo",
  on: { type: ["ops.echo"] },
  handler(event, ctx) { ctx.log.info({ marker: event.data.marker }, "echo handled"); },
});
`,
  },
};

before(async () => {
  ensureBuilt();
  dir = mkdtempSync(join(tmpdir(), "sluice-ops-"));
  const app = join(dir, "ops");
  writeApp(app, opsApp.config, opsApp.functions);
  ops = await startSluice(["start", app, "--port", "0", "--store", `sqlite:${join(dir, "ops.db")}`]);
});
after(async () => {
  await ops?.stop("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
});

async function postEvents(url: string, path: string, events: Record<string, unknown>[]): Promise<Response> {
  const batch = events.length !== 1;
  return fetch(`${url}${path}`, {
    method: "POST",
    headers: { "content-type": batch ? "application/cloudevents-batch+json" : "application/cloudevents+json" },
    body: JSON.stringify(batch ? events : events[0]),
  });
}

const event = (type: string, data: unknown) => ({ specversion: "1.0", id: randomUUID(), source: "/e2e/ops", type, data });

function cliJson<T>(args: string[]): T {
  const r = sluiceCli([...args, "--json", "--url", ops.url]);
  assert.equal(r.code, 0, `sluice ${args.join(" ")}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

test("ingest - past server.maxPendingDeliveries a publish answers 429 with a retryable E_BACKPRESSURE, and 202 again once drained", async () => {
  const app = join(dir, "pressure");
  const release = join(app, "release");
  writeApp(
    app,
    `import { defineApp } from "sluice";
export default defineApp({ name: "pressure-test", server: { maxPendingDeliveries: 5 } });
`,
    {
      hold: `import { existsSync } from "node:fs";
import { defineFunction } from "sluice";
export default defineFunction({
  name: "hold",
  on: { type: ["ops.hold"] },
  timeout: "60s",
  async handler() {
    // Deliveries stay pending until the test creates the release file.
    while (!existsSync(process.env.HOLD_RELEASE!)) await new Promise((r) => setTimeout(r, 20));
  },
});
`,
    },
  );
  const s = await startSluice(["start", app, "--port", "0", "--store", `sqlite:${join(dir, "pressure.db")}`], { HOLD_RELEASE: release });
  try {
    let accepted = 0;
    let refused: Response | undefined;
    for (let i = 0; i < 50 && refused === undefined; i++) {
      const res = await postEvents(s.url, "/events", [event("ops.hold", { i })]);
      if (res.status === 202) accepted++;
      else refused = res;
    }
    assert.ok(refused, "no publish was refused: the configured limit did not reach the broker");
    assert.ok(accepted >= 1 && accepted <= 5, `accepted ${accepted} publishes before the limit of 5 pending deliveries`);
    assert.equal(refused.status, 429);
    assert.equal(refused.headers.get("retry-after"), "1");
    const body = (await refused.json()) as { error: { code: string; retryable?: boolean; message: string }; requestId: string };
    assert.equal(body.error.code, "E_BACKPRESSURE");
    assert.equal(body.error.retryable, true);
    assert.match(body.error.message, /limit 5/);
    assert.ok(body.requestId);

    // A batch is refused whole, and the CLI reports the code with exit code 1 (retry later, not bad input).
    const batch = await postEvents(s.url, "/events", [event("ops.hold", { b: 1 }), event("ops.hold", { b: 2 })]);
    assert.equal(batch.status, 429, await batch.text());
    const cli = sluiceCli(["publish", "--type", "ops.hold", "--url", s.url]);
    assert.equal(cli.code, 1, cli.stderr);
    assert.match(cli.stderr, /E_BACKPRESSURE/);

    writeFileSync(release, "go\n");
    await eventually(async () => {
      const res = await postEvents(s.url, "/events", [event("ops.other", {})]);
      return res.status === 202 ? true : undefined;
    }, "a publish accepted once the held deliveries finished");
  } finally {
    await s.stop("SIGKILL");
  }
});

interface DeadLetterRow {
  deliveryId: string;
  event: { id: string };
  reason: string;
}

test("dlq - purge by id removes only that dead letter; purge of a target empties it and leaves other targets' dead letters", async () => {
  const a = [event("ops.reject.a", { n: 1 }), event("ops.reject.a", { n: 2 }), event("ops.reject.a", { n: 3 })];
  const b = [event("ops.reject.b", { n: 1 }), event("ops.reject.b", { n: 2 })];
  assert.equal((await postEvents(ops.url, "/events", [...a, ...b])).status, 202);
  const deadOf = (fn: string) => cliJson<DeadLetterRow[]>(["dlq", "list", "--function", fn]);
  const deadA = await eventually(async () => (deadOf("reject-a").length === 3 ? deadOf("reject-a") : undefined), "3 dead letters of reject-a");
  const deadB = await eventually(async () => (deadOf("reject-b").length === 2 ? deadOf("reject-b") : undefined), "2 dead letters of reject-b");
  assert.deepEqual(deadA.map((d) => d.event.id).sort(), a.map((e) => e.id).sort());
  assert.ok(deadA.every((d) => d.reason === "non-retriable"), JSON.stringify(deadA.map((d) => d.reason)));

  const [first, ...rest] = deadA;
  let r = sluiceCli(["dlq", "purge", "--function", "reject-a", "--id", first!.deliveryId, "--url", ops.url]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, "purged 1 dead letter\n");
  assert.deepEqual(deadOf("reject-a").map((d) => d.deliveryId).sort(), rest.map((d) => d.deliveryId).sort());
  const gone = sluiceCli(["dlq", "show", first!.deliveryId, "--url", ops.url]);
  assert.equal(gone.code, 1, "the purged dead letter is not found");
  assert.match(gone.stderr, /E_NOT_FOUND/);

  r = sluiceCli(["dlq", "purge", "--function", "reject-a", "--url", ops.url]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, "purged 2 dead letters\n");
  assert.deepEqual(deadOf("reject-a"), []);
  assert.deepEqual(deadOf("reject-b").map((d) => d.deliveryId).sort(), deadB.map((d) => d.deliveryId).sort(), "reject-b keeps its dead letters");
  const targets = cliJson<{ target: string; dead: number }[]>(["dlq", "list"]);
  assert.equal(targets.find((t) => t.target === "default/function.reject-a/fn")?.dead ?? 0, 0);
  assert.equal(targets.find((t) => t.target === "default/function.reject-b/fn")?.dead, 2);
  assert.equal(cliJson<{ purged: number }>(["dlq", "purge", "--function", "reject-a"]).purged, 0, "purging an empty DLQ purges nothing");
});

interface ReplayRow {
  name: string;
  state: string;
  eventsRead: number;
  eventsReplayed: number;
  endedAt?: number;
}

/** Events archived for the replay test; at `replayRate` events/s the replay takes 10 s, well past the cancel. */
const replayEvents = 2_000;
const replayRate = 200;

test("replay - --cancel stops a running replay: the waiting `sluice replay` reports cancelled, exit 1, and progress stops", async () => {
  const fromAt = Date.now() - 1;
  for (let i = 0; i < replayEvents; i += 100) {
    const res = await postEvents(ops.url, "/buses/bulk/events", Array.from({ length: 100 }, (_, j) => event("ops.bulk", { n: i + j, pad: "x".repeat(200) })));
    assert.equal(res.status, 202, await res.text());
  }
  await new Promise((r) => setTimeout(r, 5)); // --to is "now": past the last event's storage time
  const name = `slow-${randomUUID().slice(0, 8)}`;
  const waiting = spawnSluice(["replay", "--bus", "bulk", "--from", String(fromAt), "--name", name, "--rate", String(replayRate), "--json", "--url", ops.url]);
  try {
    const running = await eventually(async () => {
      const res = await fetch(`${ops.url}/admin/replays/${name}`);
      if (res.status !== 200) return undefined;
      const r = (await res.json()) as ReplayRow;
      return r.state !== "running" || r.eventsRead > 0 ? r : undefined;
    }, "the replay under way");
    assert.equal(running.state, "running", `the replay ended before the cancel: ${JSON.stringify(running)}`);

    const cancel = sluiceCli(["replay", "--cancel", name, "--json", "--url", ops.url]);
    assert.equal(cancel.code, 0, cancel.stderr);
    const cancelled = JSON.parse(cancel.stdout) as ReplayRow;
    assert.equal(cancelled.state, "cancelled");
    assert.ok(cancelled.eventsRead < replayEvents, `stopped early: read ${cancelled.eventsRead} of ${replayEvents}`);
    assert.ok(cancelled.endedAt !== undefined);

    assert.equal(await waiting.exited, 1, waiting.output());
    const reported = JSON.parse(waiting.stdout()) as ReplayRow;
    assert.equal(reported.state, "cancelled");
    assert.equal(reported.eventsRead, cancelled.eventsRead);

    const noBus = sluiceCli(["replay", "--from", "-1h", "--url", ops.url]);
    assert.equal(noBus.code, 2);
    assert.match(noBus.stderr, /needs --bus and --from/);
    await new Promise((r) => setTimeout(r, 500));
    const later = (await (await fetch(`${ops.url}/admin/replays/${name}`)).json()) as ReplayRow;
    assert.deepEqual(later, cancelled, "nothing moved after the cancel");
  } finally {
    await waiting.stop("SIGKILL");
  }
});

test("logs - --follow prints new lines as they are logged, only of the given function, and exits 0 on SIGINT", async () => {
  const marker = (tag: string) => `${tag}-${randomUUID()}`;
  const before = marker("before");
  assert.equal((await postEvents(ops.url, "/events", [event("ops.echo", { marker: before })])).status, 202);
  await eventually(async () => (sluiceCli(["logs", "--function", "echo", "--json", "--url", ops.url]).stdout.includes(before) ? true : undefined), "the first echo logged");

  const follow = spawnSluice(["logs", "--follow", "--function", "echo", "--json", "--url", ops.url]);
  try {
    // Recent lines come first: once this one is printed the stream is open.
    await follow.waitForLine(new RegExp(before));
    const later = marker("later");
    assert.equal((await postEvents(ops.url, "/events", [event("ops.echo", { marker: later }), event("ops.reject.b", { marker: later })])).status, 202);
    const line = JSON.parse(await follow.waitForLine(new RegExp(later))) as { msg: string; marker: string; function?: string };
    assert.equal(line.msg, "echo handled");
    assert.equal(line.marker, later);
    // Lines of other functions (reject-b's dead letter) are not printed.
    await eventually(async () => (cliJson<DeadLetterRow[]>(["dlq", "list", "--function", "reject-b"]).length >= 3 ? true : undefined), "reject-b handled the later event");
    const printed = follow.stdout().trim().split("\n").map((l) => JSON.parse(l) as { function?: string; functionName?: string });
    assert.ok(printed.every((l) => l.function === "echo" || l.functionName === "echo"), follow.stdout());

    assert.equal(follow.proc.exitCode, null, "--follow keeps running");
    const code = await follow.stop("SIGINT", 5000);
    assert.equal(code, 0, `exit on SIGINT: ${follow.output()}`);
    assert.equal(follow.stderr(), "", "nothing on stderr");
    assert.equal((await fetch(`${ops.url}/healthz`)).status, 200, "the server is unaffected");
  } finally {
    await follow.stop("SIGKILL");
  }
});

test("admin - an unknown replay or function is a 404 with its code, not a 500", async () => {
  const replay = await fetch(`${ops.url}/admin/replays/no-such-replay`);
  assert.equal(replay.status, 404);
  assert.equal(((await replay.json()) as { error: { code: string } }).error.code, "E_REPLAY_NOT_FOUND");
  const invoke = await fetch(`${ops.url}/admin/functions/no-such-function/invoke`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
  assert.equal(invoke.status, 404);
  assert.equal(((await invoke.json()) as { error: { code: string } }).error.code, "E_FUNCTION_NOT_FOUND");
});
