#!/usr/bin/env node
// The `sluice` command. Runs the built CLI (dist/, made by `npm run build`, which `npm ci` runs via `prepare`).
import { existsSync } from "node:fs";

const built = new URL("../dist/cli/main.js", import.meta.url);
if (!existsSync(built)) {
  console.error("sluice: dist/ is missing; run `npm run build` (npm ci does this for you).");
  process.exit(2);
}
const { main } = await import(built.href);
process.exitCode = await main(process.argv.slice(2));
