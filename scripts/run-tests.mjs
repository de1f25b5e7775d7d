#!/usr/bin/env node
// Lists test/**/*.test.ts (Node 20's `node --test` takes paths, not globs) and runs them with
// node:test's runner in child processes that load TypeScript through tsx.
// Usage: node scripts/run-tests.mjs [substring-filter ...]
import { readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { spawn } from "node:child_process";

const root = new URL("..", import.meta.url).pathname;
const filters = process.argv.slice(2);

function list(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...list(path));
    else if (/\.test\.(ts|mts|js|mjs)$/.test(name)) out.push(path);
  }
  return out;
}

const files = list(join(root, "test"))
  .map((f) => relative(root, f))
  .filter((f) => filters.length === 0 || filters.some((s) => f.includes(s)))
  .sort();

if (files.length === 0) {
  console.error("run-tests: no test files matched", filters);
  process.exit(1);
}

// Files run in parallel child processes; most tests wait on I/O, so more than the core count helps.
const concurrency = Number(process.env.SLUICE_TEST_CONCURRENCY ?? 4);
const child = spawn(
  process.execPath,
  ["--import", "tsx", "--test", `--test-concurrency=${concurrency}`, "--test-reporter=spec", ...files],
  { cwd: root, stdio: "inherit", env: { ...process.env, NODE_NO_WARNINGS: "1" } },
);
child.on("exit", (code, signal) => process.exit(signal ? 1 : (code ?? 1)));
