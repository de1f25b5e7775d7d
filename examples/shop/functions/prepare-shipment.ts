import { defineFunction } from "sluice";
import { getOrder, updateOrder } from "../lib/db.ts";

/** Prepares the shipment (a label) of a new order, in parallel with payment and inventory. */
export default defineFunction({
  name: "prepare-shipment",
  on: { type: ["order.created"], source: ["shop/orders"] },
  timeout: "10s",
  async handler(event, ctx) {
    const { orderId } = event.data;
    if (getOrder(orderId)?.status === "cancelled") return;
    const r = updateOrder(orderId, "shipment", "prepared");
    ctx.log.info({ orderId }, "shipment prepared");
    if (r?.confirmed) await ctx.emit({ type: "order.confirmed", source: "shop/orders", subject: orderId, data: { orderId } });
  },
});
