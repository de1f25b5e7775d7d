import { randomUUID } from "node:crypto";
import { defineFunction } from "sluice";
import { outbox } from "sluice/outbox";
import { shopDb } from "../lib/db.ts";

interface Item {
  sku: string;
  qty: number;
}

/**
 * POST /orders: validates the order and stores it as pending together with its order.created event, in one
 * transaction of the shop's database (the transactional outbox): the `orders-outbox` source publishes the event
 * once the row is committed, so there is never an order without its event, nor an event for an order that was
 * not stored.
 */
export default defineFunction({
  name: "create-order",
  timeout: "5s",
  async handler(event, ctx) {
    const body = event.data?.body;
    const problems: string[] = [];
    if (typeof body !== "object" || body === null) problems.push("the body must be a JSON object");
    const customer = body?.customer;
    const items: unknown = body?.items;
    if (typeof customer !== "string" || customer === "") problems.push("customer must be a non-empty string");
    if (!Array.isArray(items) || items.length === 0) problems.push("items must be a non-empty list of { sku, qty }");
    const db = shopDb();
    const prices = new Map((db.prepare("SELECT sku, price FROM stock").all() as { sku: string; price: number }[]).map((r) => [r.sku, r.price]));
    const list: Item[] = Array.isArray(items) ? (items as Item[]) : [];
    list.forEach((it, i) => {
      if (!prices.has(it?.sku)) problems.push(`items[${i}].sku must be one of ${[...prices.keys()].join(", ")}`);
      if (!Number.isInteger(it?.qty) || it.qty < 1) problems.push(`items[${i}].qty must be a whole number >= 1`);
    });
    if (problems.length > 0) return { statusCode: 400, body: { error: "invalid order", problems } };

    const id = `ord_${randomUUID().slice(0, 8)}`;
    const total = list.reduce((sum, it) => sum + (prices.get(it.sku) ?? 0) * it.qty, 0);
    const card = typeof body.card === "string" ? body.card : "visa-4242";
    const note = typeof body.note === "string" ? body.note : null;
    const now = Date.now();
    db.transaction(() => {
      db.prepare("INSERT INTO orders (id, customer, items, total, card, note, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)").run(
        id, customer, JSON.stringify(list), total, card, note, now, now,
      );
      outbox.enqueueSync(db, {
        type: "order.created",
        source: "shop/orders",
        subject: id,
        partitionkey: id,
        ...(event.correlationid ? { correlationid: event.correlationid } : {}),
        data: { orderId: id, customer, items: list, total, card, note },
      });
    })();
    ctx.log.info({ orderId: id, total }, "order created");
    return { statusCode: 201, headers: { location: `/orders/${id}` }, body: { orderId: id, status: "pending", total } };
  },
});
