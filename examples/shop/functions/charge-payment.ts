import { defineFunction } from "sluice";
import { poisonFixed, updateOrder } from "../lib/db.ts";

/**
 * Charges the card of a new order. A declined card publishes payment.failed (which triggers compensation).
 * An order whose note contains "poison" hits a bug: the handler throws, the retries run out and the event lands
 * in the dead-letter queue, until the fix flag exists and the DLQ is redriven.
 */
export default defineFunction({
  name: "charge-payment",
  on: { type: ["order.created"], source: ["shop/orders"] },
  retry: { attempts: 2, backoff: { initial: "100ms", max: "500ms" } },
  timeout: "10s",
  async handler(event, ctx) {
    const { orderId, total, card, note } = event.data;
    if (typeof note === "string" && note.includes("poison") && !poisonFixed()) {
      throw new Error(`cannot parse the note of order ${orderId}`);
    }
    if (card === "declined") {
      updateOrder(orderId, "payment", "declined");
      ctx.log.warn({ orderId }, "payment declined");
      await ctx.emit({ type: "payment.failed", source: "shop/payments", subject: orderId, partitionkey: orderId, data: { orderId, total, reason: "card declined" } });
      return;
    }
    const r = updateOrder(orderId, "payment", "captured");
    ctx.log.info({ orderId, total }, "payment captured");
    await ctx.emit({ type: "payment.captured", source: "shop/payments", subject: orderId, partitionkey: orderId, data: { orderId, total } });
    if (r?.confirmed) await ctx.emit({ type: "order.confirmed", source: "shop/orders", subject: orderId, data: { orderId } });
  },
});
