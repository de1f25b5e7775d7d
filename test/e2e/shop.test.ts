/**
 * End to end: `sluice dev examples/shop` as a child process on a free port, driven only through HTTP and the CLI.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CloudEvent as SdkEvent, emitterFor, httpTransport, Mode } from "cloudevents";
import { ensureBuilt, eventually, sluiceCli, startSluice, type SluiceProcess } from "../helpers/sluice-process.ts";

let dir: string;
let sluice: SluiceProcess;
let url: string;

before(async () => {
  ensureBuilt();
  dir = mkdtempSync(join(tmpdir(), "sluice-shop-"));
  sluice = await startSluice(["dev", "examples/shop", "--port", "0", "--data-dir", join(dir, "data")], {
    SHOP_DB: join(dir, "shop.db"),
    SHOP_FIX_FLAG: join(dir, "poison-fixed"),
    SHOP_REPORT_RATE: "2 seconds",
  });
  url = sluice.url;
});

after(async () => {
  await sluice?.stop("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
});

async function json(path: string, init: RequestInit = {}): Promise<{ status: number; body: any; headers: Headers }> {
  const res = await fetch(`${url}${path}`, init);
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined, headers: res.headers };
}
const post = (path: string, body: unknown, contentType = "application/json") =>
  json(path, { method: "POST", headers: { "content-type": contentType }, body: typeof body === "string" ? body : JSON.stringify(body) });

async function placeOrder(order: Record<string, unknown>): Promise<string> {
  const r = await post("/orders", order);
  assert.equal(r.status, 201, JSON.stringify(r.body));
  assert.match(r.body.orderId, /^ord_/);
  assert.equal(r.headers.get("location"), `/orders/${r.body.orderId}`);
  return r.body.orderId;
}

async function orderWhen(id: string, check: (o: any) => boolean, what: string): Promise<any> {
  return eventually(async () => {
    const r = await json(`/orders/${id}`);
    return r.status === 200 && check(r.body) ? r.body : undefined;
  }, what);
}

const channelsFor = (o: any, type: string) => o.notifications.filter((n: any) => n.type === type).map((n: any) => n.channel).sort();

test("shop - happy path: payment, inventory and shipping run in parallel, the order is confirmed and notified", async () => {
  const id = await placeOrder({ customer: "ada", items: [{ sku: "widget", qty: 2 }] });
  const o = await orderWhen(id, (o) => o.status === "confirmed" && channelsFor(o, "order.confirmed").length === 2, "a confirmed order");
  assert.equal(o.payment, "captured");
  assert.equal(o.inventory, "reserved");
  assert.equal(o.shipment, "prepared");
  assert.equal(o.total, 50);
  assert.deepEqual(o.reservations, [{ sku: "widget", qty: 2 }]);
  assert.deepEqual(channelsFor(o, "order.created"), ["email", "sms"]);
  await sluice.waitForLine(new RegExp(`payment captured.*${id}|${id}.*payment captured`));
});

test("shop - low stock backorders the order and notifies the customer", async () => {
  const id = await placeOrder({ customer: "bob", items: [{ sku: "gizmo", qty: 1 }] });
  const o = await orderWhen(id, (o) => o.status === "backordered" && channelsFor(o, "order.backordered").length === 2, "a backordered order");
  assert.equal(o.inventory, "backordered");
});

test("shop - a declined payment is compensated: order cancelled, stock released, refund issued", async () => {
  const id = await placeOrder({ customer: "cy", items: [{ sku: "widget", qty: 3 }], card: "declined" });
  const o = await orderWhen(
    id,
    (o) => o.status === "cancelled" && o.refund !== null && channelsFor(o, "refund.issued").length === 2 && channelsFor(o, "order.cancelled").length === 2,
    "a cancelled and refunded order",
  );
  assert.equal(o.payment, "declined");
  assert.equal(o.refund, 75);
  assert.deepEqual(o.reservations, []);
  assert.ok(o.inventory === null || o.inventory === "released", `inventory ${o.inventory}`);
  assert.ok(o.shipment === null || o.shipment === "cancelled", `shipment ${o.shipment}`);
});

test("shop - a poison order lands in the DLQ and is redriven after the fix", async () => {
  const id = await placeOrder({ customer: "dee", items: [{ sku: "widget", qty: 1 }], note: "poison pill" });
  const dead = await eventually(async () => {
    const r = sluiceCli(["dlq", "list", "--function", "charge-payment", "--json", "--url", url]);
    assert.equal(r.code, 0, r.stderr);
    const rows = JSON.parse(r.stdout) as { deliveryId: string; event: { data: { orderId: string } }; reason: string; lastError?: string }[];
    return rows.find((d) => d.event.data.orderId === id);
  }, "the poison order in the DLQ");
  assert.equal(dead.reason, "max-attempts");
  assert.match(dead.lastError ?? "", /cannot parse the note/);
  const shown = sluiceCli(["dlq", "show", dead.deliveryId, "--json", "--url", url]);
  assert.equal(shown.code, 0, shown.stderr);
  assert.equal(JSON.parse(shown.stdout).event.data.orderId, id);
  assert.notEqual((await json(`/orders/${id}`)).body.status, "confirmed");

  writeFileSync(join(dir, "poison-fixed"), "fixed\n");
  const redrive = sluiceCli(["dlq", "redrive", "--function", "charge-payment", "--id", dead.deliveryId, "--url", url]);
  assert.equal(redrive.code, 0, redrive.stderr);
  assert.match(redrive.stdout, /redriven 1 dead letter/);
  await orderWhen(id, (o) => o.status === "confirmed", "the redriven order confirmed");
});

test("shop - the stock-report schedule fires and its function writes a report", async () => {
  const reports = await eventually(async () => {
    const r = await json("/reports");
    return r.body.count >= 1 ? r.body : undefined;
  }, "a stock report", 10_000);
  assert.match(reports.latest.scheduledTime, /^\d{4}-\d{2}-\d{2}T/);
  assert.ok(reports.latest.lowStock.some((s: { sku: string }) => s.sku === "gizmo"));
  const status = sluiceCli(["status", "--json", "--url", url]);
  assert.equal(status.code, 0, status.stderr);
  const sched = JSON.parse(status.stdout).schedules.find((s: { name: string }) => s.name === "stock-report");
  assert.ok(sched.fired >= 1);
});

test("shop - CloudEvents ingest through the official SDK in binary, structured and batched mode", async () => {
  const before = await publishedCount();
  const ev = (n: number) => new SdkEvent({ type: "shop.ping", source: "/e2e/sdk", data: { n } });
  for (const mode of [Mode.BINARY, Mode.STRUCTURED]) {
    const emit = emitterFor(httpTransport(`${url}/events`), { mode });
    const res = (await emit(ev(1))) as { body: string };
    const body = JSON.parse(res.body);
    assert.equal(body.ids.length, 1, `${mode}: ${res.body}`);
  }
  const batch = [ev(1), ev(2), ev(3)];
  const send = httpTransport(`${url}/buses/default/events`);
  const res = (await send({ headers: { "content-type": "application/cloudevents-batch+json" }, body: JSON.stringify(batch) })) as { body: string };
  const body = JSON.parse(res.body);
  assert.deepEqual(body.ids, batch.map((e) => e.id));
  assert.equal(body.failedEntryCount, 0);
  // At least our 5: the stock-report schedule (every 2 s here) may publish to the default bus meanwhile.
  const published = (await publishedCount()) - before;
  assert.ok(published >= 5, `5 SDK events counted as published on the default bus, got ${published}`);
});

async function publishedCount(): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const m = /^sluice_events_published_total\{bus="default"\} (\d+)/m.exec(text);
  return Number(m?.[1] ?? 0);
}

test("shop - bad input on every endpoint gets a clear 4xx", async () => {
  const ce = (body: string, type = "application/cloudevents+json") => post("/events", body, type);
  // not JSON
  let r = await ce("{nope");
  assert.equal(r.status, 400);
  assert.equal(r.body.error.code, "E_JSON_INVALID");
  assert.ok(r.body.requestId);
  // missing type: names the attribute and the rule
  r = await ce(JSON.stringify({ specversion: "1.0", id: "x", source: "/t" }));
  assert.equal(r.status, 400);
  assert.equal(r.body.error.attribute, "type");
  assert.ok(r.body.error.rule);
  // binary mode with a bad time
  r = await json("/events", { method: "POST", headers: { "ce-specversion": "1.0", "ce-id": "1", "ce-source": "/t", "ce-type": "t", "ce-time": "yesterday", "content-type": "application/json" }, body: "{}" });
  assert.equal(r.status, 400);
  assert.equal(r.body.error.attribute, "time");
  // a batch stores the valid entries and reports the bad one by index
  r = await ce(JSON.stringify([{ specversion: "1.0", id: "b1", source: "/t", type: "t" }, { specversion: "1.0", id: "b2", source: "/t" }]), "application/cloudevents-batch+json");
  assert.equal(r.status, 202);
  assert.equal(r.body.failedEntryCount, 1);
  assert.equal(r.body.entries[0].id, "b1");
  assert.equal(r.body.entries[1].attribute, "type");
  assert.match(r.body.entries[1].path, /^\$\[1\]/);
  // too large: one event past 256 KiB, and a body past the server's limit
  r = await ce(JSON.stringify({ specversion: "1.0", id: "big", source: "/t", type: "t", data: "x".repeat(300 * 1024) }));
  assert.equal(r.status, 413);
  r = await ce(JSON.stringify({ specversion: "1.0", id: "huge", source: "/t", type: "t", data: "x".repeat(2 * 1024 * 1024) }));
  assert.equal(r.status, 413);
  // unknown bus
  r = await post("/buses/nope/events", JSON.stringify({ specversion: "1.0", id: "n", source: "/t", type: "t" }), "application/cloudevents+json");
  assert.equal(r.status, 404);
  assert.equal(r.body.error.code, "E_BUS_NOT_FOUND");
  // routes: invalid JSON, invalid order, unknown order, unknown route
  r = await post("/orders", "{oops");
  assert.equal(r.status, 400);
  assert.equal(r.body.error.code, "E_JSON_INVALID");
  r = await post("/orders", { customer: "", items: [{ sku: "unobtainium", qty: 0 }] });
  assert.equal(r.status, 400);
  assert.equal(r.body.problems.length, 3);
  r = await json("/orders/ord_missing");
  assert.equal(r.status, 404);
  r = await json("/nowhere");
  assert.equal(r.status, 404);
  // admin API and CLI
  r = await post("/admin/functions/nope/invoke", {});
  assert.equal(r.status, 404);
  assert.equal(r.body.error.code, "E_FUNCTION_NOT_FOUND");
  const pub = sluiceCli(["publish", "--url", url]);
  assert.equal(pub.code, 2);
  assert.match(pub.stderr, /needs --type/);
  const badTarget = sluiceCli(["dlq", "list", "--target", "nope", "--url", url]);
  assert.equal(badTarget.code, 2);
  const replay = sluiceCli(["replay", "--bus", "default", "--from", "yesterday-ish", "--url", url]);
  assert.equal(replay.code, 2);
  assert.match(replay.stderr, /is not a time/);
  const unreachable = sluiceCli(["status", "--url", "http://127.0.0.1:1"]);
  assert.equal(unreachable.code, 1);
  assert.match(unreachable.stderr, /no Sluice server answers/);
});

test("shop - sluice invoke and publish go through the admin API", async () => {
  const inv = sluiceCli(["invoke", "get-reports", "--url", url]);
  assert.equal(inv.code, 0, inv.stderr);
  assert.ok(Array.isArray(JSON.parse(inv.stdout).stock));
  const pub = sluiceCli(["publish", "--type", "shop.ping", "--data", '{"n":1}', "--url", url]);
  assert.equal(pub.code, 0, pub.stderr);
  assert.match(pub.stdout.trim(), /^[0-9a-f-]{36}$/);
});

test("shop - sluice replay republishes archived events matching a pattern and reports completion", async () => {
  const r = sluiceCli(["replay", "--bus", "default", "--from", "-10m", "--pattern", '{"type":["shop.ping"]}', "--json", "--url", url]);
  assert.equal(r.code, 0, r.stderr);
  const replay = JSON.parse(r.stdout) as { state: string; eventsReplayed: number; eventsRead: number };
  assert.equal(replay.state, "completed");
  assert.ok(replay.eventsReplayed >= 6, `replayed ${replay.eventsReplayed}`);
  assert.ok(replay.eventsRead > replay.eventsReplayed, "the pattern filtered the other events out");
});
