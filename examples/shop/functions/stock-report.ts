import { defineFunction } from "sluice";
import { shopDb } from "../lib/db.ts";

/** Runs on the "stock-report" schedule's report.requested events: records low stock and the order count. */
export default defineFunction({
  name: "stock-report",
  on: { type: ["report.requested"], source: ["shop/scheduler"] },
  timeout: "10s",
  async handler(event, ctx) {
    const db = shopDb();
    const low = db.prepare("SELECT sku, qty - reserved AS free FROM stock WHERE qty - reserved < 5 ORDER BY sku").all();
    const { n } = db.prepare("SELECT count(*) AS n FROM orders").get() as { n: number };
    db.prepare("INSERT OR IGNORE INTO reports (scheduled_time, low_stock, orders, at) VALUES (?, ?, ?, ?)").run(
      String(event.data?.scheduledTime ?? event.time), JSON.stringify(low), n, Date.now(),
    );
    ctx.log.info({ lowStock: low.length, orders: n }, "stock report written");
  },
});
