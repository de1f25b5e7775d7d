import { defineFunction } from "sluice";
import { shopDb } from "../lib/db.ts";

/** GET /reports: how many stock reports the schedule produced, the latest one, and the stock now. */
export default defineFunction({
  name: "get-reports",
  timeout: "5s",
  async handler() {
    const db = shopDb();
    const { n } = db.prepare("SELECT count(*) AS n FROM reports").get() as { n: number };
    const latest = db.prepare("SELECT scheduled_time AS scheduledTime, low_stock AS lowStock, orders FROM reports ORDER BY id DESC LIMIT 1").get() as
      | { scheduledTime: string; lowStock: string; orders: number }
      | undefined;
    const stock = db.prepare("SELECT sku, qty, reserved FROM stock ORDER BY sku").all();
    return { count: n, latest: latest ? { ...latest, lowStock: JSON.parse(latest.lowStock) } : null, stock };
  },
});
