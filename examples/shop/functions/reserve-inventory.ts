import { defineFunction } from "sluice";
import { getOrder, shopDb, updateOrder } from "../lib/db.ts";

/** Reserves stock for a new order; when there is not enough, the order is backordered (order.backordered). */
export default defineFunction({
  name: "reserve-inventory",
  on: { type: ["order.created"], source: ["shop/orders"] },
  timeout: "10s",
  async handler(event, ctx) {
    const { orderId, items } = event.data as { orderId: string; items: { sku: string; qty: number }[] };
    const db = shopDb();
    const outcome = db.transaction(() => {
      const order = getOrder(orderId);
      if (!order || order.status === "cancelled") return { kind: "skipped" as const };
      if ((db.prepare("SELECT count(*) AS n FROM reservations WHERE order_id = ?").get(orderId) as { n: number }).n > 0) return { kind: "reserved" as const };
      const short: string[] = [];
      for (const it of items) {
        const s = db.prepare("SELECT qty - reserved AS free FROM stock WHERE sku = ?").get(it.sku) as { free: number } | undefined;
        if (!s || s.free < it.qty) short.push(it.sku);
      }
      if (short.length > 0) return { kind: "short" as const, short };
      for (const it of items) {
        db.prepare("UPDATE stock SET reserved = reserved + ? WHERE sku = ?").run(it.qty, it.sku);
        db.prepare("INSERT INTO reservations (order_id, sku, qty) VALUES (?, ?, ?)").run(orderId, it.sku, it.qty);
      }
      return { kind: "reserved" as const };
    })();
    if (outcome.kind === "skipped") {
      ctx.log.info({ orderId }, "order already cancelled, nothing reserved");
      return;
    }
    if (outcome.kind === "short") {
      updateOrder(orderId, "inventory", "backordered");
      ctx.log.warn({ orderId, skus: outcome.short }, "low stock, order backordered");
      await ctx.emit({ type: "order.backordered", source: "shop/inventory", subject: orderId, data: { orderId, skus: outcome.short } });
      return;
    }
    const r = updateOrder(orderId, "inventory", "reserved");
    ctx.log.info({ orderId }, "stock reserved");
    if (r?.confirmed) await ctx.emit({ type: "order.confirmed", source: "shop/orders", subject: orderId, data: { orderId } });
  },
});
