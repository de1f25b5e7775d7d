/**
 * Child of registry.test.ts: opens the store URL given as argument through the registry, and prints which
 * native or client drivers the process loaded: `{"kind":…,"pg":bool,"betterSqlite3":bool}`.
 */
import { createRequire } from "node:module";
import { openStore } from "../../src/store/registry.ts";

const url = process.argv[2] as string;
const store = await openStore(url);
const loaded = Object.keys(createRequire(import.meta.url).cache);
const has = (pkg: string) => loaded.some((path) => path.includes(`/node_modules/${pkg}/`));
process.stdout.write(`${JSON.stringify({ kind: store.kind, pg: has("pg"), betterSqlite3: has("better-sqlite3") })}\n`);
await store.close();
