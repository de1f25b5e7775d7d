/**
 * The shop's own state: one SQLite file (better-sqlite3), separate from Sluice's store. Every function instance
 * opens it once; WAL and a busy timeout let parallel instances write safely.
 */
import Database from "better-sqlite3";
import { existsSync, mkdirSync } from "node:fs";
import { dirname } from "node:path";

let db: Database.Database | undefined;

/** Stock the shop starts with: plenty of widgets, few gadgets (backorders), gizmos sold out. */
export const initialStock: Record<string, { qty: number; price: number }> = {
  widget: { qty: 1000, price: 25 },
  gadget: { qty: 3, price: 120 },
  gizmo: { qty: 0, price: 75 },
};

export function shopDb(): Database.Database {
  if (db) return db;
  const path = process.env.SHOP_DB;
  if (!path) throw new Error("SHOP_DB is not set (sluice.config.ts sets it)");
  mkdirSync(dirname(path), { recursive: true });
  db = new Database(path, { timeout: 10_000 });
  db.pragma("journal_mode = WAL");
  db.exec(`
    CREATE TABLE IF NOT EXISTS orders (
      id TEXT PRIMARY KEY, customer TEXT NOT NULL, items TEXT NOT NULL, total REAL NOT NULL, card TEXT NOT NULL,
      note TEXT, status TEXT NOT NULL DEFAULT 'pending', payment TEXT, inventory TEXT, shipment TEXT,
      created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS stock (sku TEXT PRIMARY KEY, qty INTEGER NOT NULL, reserved INTEGER NOT NULL DEFAULT 0, price REAL NOT NULL);
    CREATE TABLE IF NOT EXISTS reservations (order_id TEXT NOT NULL, sku TEXT NOT NULL, qty INTEGER NOT NULL, PRIMARY KEY (order_id, sku));
    CREATE TABLE IF NOT EXISTS refunds (order_id TEXT PRIMARY KEY, amount REAL NOT NULL, at INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS notifications (id INTEGER PRIMARY KEY, order_id TEXT, channel TEXT NOT NULL, type TEXT NOT NULL, event_id TEXT NOT NULL, message TEXT NOT NULL, at INTEGER NOT NULL, UNIQUE (channel, event_id));
    CREATE TABLE IF NOT EXISTS reports (id INTEGER PRIMARY KEY, scheduled_time TEXT NOT NULL UNIQUE, low_stock TEXT NOT NULL, orders INTEGER NOT NULL, at INTEGER NOT NULL);
  `);
  const seed = db.prepare("INSERT OR IGNORE INTO stock (sku, qty, price) VALUES (?, ?, ?)");
  for (const [sku, s] of Object.entries(initialStock)) seed.run(sku, s.qty, s.price);
  return db;
}

export interface OrderRow {
  id: string;
  customer: string;
  items: string;
  total: number;
  card: string;
  note: string | null;
  status: string;
  payment: string | null;
  inventory: string | null;
  shipment: string | null;
  created_at: number;
  updated_at: number;
}

export function getOrder(id: string): OrderRow | undefined {
  return shopDb().prepare("SELECT * FROM orders WHERE id = ?").get(id) as OrderRow | undefined;
}

/**
 * Sets one part of an order (payment, inventory, shipment) and derives its status, in one transaction.
 * `confirmed` is true for exactly one caller: the one whose update completed the order.
 */
export function updateOrder(id: string, part: "payment" | "inventory" | "shipment", value: string): { order: OrderRow; confirmed: boolean } | undefined {
  const d = shopDb();
  return d.transaction(() => {
    const o = getOrder(id);
    if (!o) return undefined;
    const next = { ...o, [part]: value };
    let status = o.status;
    if (o.status !== "cancelled") {
      if (next.inventory === "backordered") status = "backordered";
      else if (next.payment === "captured" && next.inventory === "reserved" && next.shipment === "prepared") status = "confirmed";
    }
    d.prepare(`UPDATE orders SET ${part} = ?, status = ?, updated_at = ? WHERE id = ?`).run(value, status, Date.now(), id);
    return { order: getOrder(id)!, confirmed: status === "confirmed" && o.status !== "confirmed" };
  })();
}

/** True when the poison-order bug is "fixed": the flag file the operator (or the test) creates. */
export function poisonFixed(): boolean {
  const flag = process.env.SHOP_FIX_FLAG;
  return flag !== undefined && existsSync(flag);
}
