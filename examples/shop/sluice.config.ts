import { fileURLToPath } from "node:url";
import { defineApp } from "sluice";

// The shop keeps its own state in its own SQLite file, next to Sluice's store; functions read these variables.
process.env.SHOP_DB ??= fileURLToPath(new URL("./.sluice/shop.db", import.meta.url));
// The poison order's "bug fix": create this file, then `sluice dlq redrive --function charge-payment`.
process.env.SHOP_FIX_FLAG ??= fileURLToPath(new URL("./.sluice/poison-fixed", import.meta.url));

export default defineApp({
  name: "shop",
  functions: "./functions",
  routes: {
    "POST /orders": "create-order",
    "GET /orders/:id": "get-order",
    "GET /reports": "get-reports",
  },
  sources: {
    // The transactional outbox: create-order writes an order and its order.created event in one transaction of
    // the shop's database; this relay publishes the event after the commit.
    "orders-outbox": { kind: "sqlite-outbox", path: process.env.SHOP_DB },
  },
  schedules: {
    // Every hour by default; SHOP_REPORT_RATE="5 seconds" makes it visible in a demo (and in the tests).
    "stock-report": { rate: process.env.SHOP_REPORT_RATE ?? "1 hour", emit: { type: "report.requested", source: "shop/scheduler" } },
  },
  rules: [
    {
      // Notifications fan out: every customer-facing event goes to e-mail and SMS, each with its own queue and retries.
      name: "notifications",
      pattern: { source: [{ prefix: "shop/" }], type: ["order.created", "order.confirmed", "order.backordered", "order.cancelled", "refund.issued"] },
      targets: [{ function: "notify-email" }, { function: "notify-sms" }],
    },
  ],
});
