import { defineFunction } from "sluice";
import { getOrder, shopDb } from "../lib/db.ts";

/**
 * The compensation of a failed payment: cancel the order, release its reserved stock, cancel the shipment and
 * issue a refund of any authorization hold; publishes order.cancelled and refund.issued. Idempotent: a redelivery
 * finds the order cancelled and does nothing twice.
 */
export default defineFunction({
  name: "compensate-order",
  on: { type: ["payment.failed"] },
  timeout: "10s",
  async handler(event, ctx) {
    const { orderId, total, reason } = event.data;
    const db = shopDb();
    const done = db.transaction(() => {
      const order = getOrder(orderId);
      if (!order || order.status === "cancelled") return false;
      const held = db.prepare("SELECT sku, qty FROM reservations WHERE order_id = ?").all(orderId) as { sku: string; qty: number }[];
      for (const r of held) db.prepare("UPDATE stock SET reserved = reserved - ? WHERE sku = ?").run(r.qty, r.sku);
      db.prepare("DELETE FROM reservations WHERE order_id = ?").run(orderId);
      db.prepare("UPDATE orders SET status = 'cancelled', inventory = CASE WHEN inventory IS NULL THEN NULL ELSE 'released' END, shipment = CASE WHEN shipment IS NULL THEN NULL ELSE 'cancelled' END, updated_at = ? WHERE id = ?").run(Date.now(), orderId);
      db.prepare("INSERT OR IGNORE INTO refunds (order_id, amount, at) VALUES (?, ?, ?)").run(orderId, total, Date.now());
      return true;
    })();
    if (!done) return;
    ctx.log.warn({ orderId, reason }, "order cancelled, stock released, refund issued");
    await ctx.emit([
      { type: "order.cancelled", source: "shop/orders", subject: orderId, partitionkey: orderId, data: { orderId, reason } },
      { type: "refund.issued", source: "shop/payments", subject: orderId, partitionkey: orderId, data: { orderId, amount: total } },
    ]);
  },
});
