import { defineFunction } from "sluice";
import { getOrder, shopDb } from "../lib/db.ts";

/** GET /orders/:id: the order with its payment, inventory and shipment state, refund and notifications. */
export default defineFunction({
  name: "get-order",
  timeout: "5s",
  async handler(event) {
    const id = event.data?.pathParameters?.id;
    const order = typeof id === "string" ? getOrder(id) : undefined;
    if (!order) return { statusCode: 404, body: { error: `no order ${id}` } };
    const db = shopDb();
    const refund = db.prepare("SELECT amount FROM refunds WHERE order_id = ?").get(order.id) as { amount: number } | undefined;
    const notifications = db.prepare("SELECT channel, type FROM notifications WHERE order_id = ? ORDER BY id").all(order.id);
    const reservations = db.prepare("SELECT sku, qty FROM reservations WHERE order_id = ?").all(order.id);
    return {
      id: order.id,
      customer: order.customer,
      items: JSON.parse(order.items),
      total: order.total,
      status: order.status,
      payment: order.payment,
      inventory: order.inventory,
      shipment: order.shipment,
      reservations,
      refund: refund?.amount ?? null,
      notifications,
    };
  },
});
