import { defineFunction } from "sluice";
import { shopDb } from "../lib/db.ts";

/** Sends the customer a sms for an order event (the "notifications" rule in sluice.config.ts fans events out). */
export default defineFunction({
  name: "notify-sms",
  timeout: "5s",
  async handler(event, ctx) {
    const orderId = event.data?.orderId ?? null;
    const message = `${event.type.replace(".", " ")} ${orderId ?? ""}`.trim();
    shopDb()
      .prepare("INSERT OR IGNORE INTO notifications (order_id, channel, type, event_id, message, at) VALUES (?, 'sms', ?, ?, ?, ?)")
      .run(orderId, event.type, event.id, message, Date.now());
    ctx.log.info({ orderId, type: event.type }, "sms sent");
  },
});
