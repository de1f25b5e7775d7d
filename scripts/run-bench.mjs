#!/usr/bin/env node
// Runs every bench/*.bench.ts in its own Node process (fresh heap, fair RSS), one after another.
// Usage: npm run bench [-- substring-filter ...]   e.g. npm run bench -- patterns
import { readdirSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { join } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const filters = process.argv.slice(2);
const benches = readdirSync(join(root, "bench"))
  .filter((f) => f.endsWith(".bench.ts"))
  .filter((f) => filters.length === 0 || filters.some((s) => f.includes(s)))
  .sort();
let failed = 0;
for (const file of benches) {
  console.log(`\n## bench/${file}\n`);
  const r = spawnSync(process.execPath, ["--expose-gc", "--import", "tsx", join("bench", file)], { cwd: root, stdio: "inherit" });
  if (r.status !== 0) failed++;
}
process.exit(failed ? 1 : 0);
