import { test, before } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomUUID } from "node:crypto";

const root = new URL("../..", import.meta.url).pathname;

/** Runs the built binary, as a user would. */
function sluice(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ["bin/sluice.mjs", ...args], { cwd: root, encoding: "utf8", timeout: 30_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

before(() => {
  // `npm test` builds first; a lone run of this file builds when dist/ lacks the command.
  if (!existsSync(join(root, "dist/cli/test-pattern.js"))) {
    const r = spawnSync("npm", ["run", "build"], { cwd: root, encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
  }
});

test("cli test-pattern - the README's example matches and exits 0", () => {
  const r = sluice("test-pattern", "--pattern", "@examples/patterns/big-orders.json", "--event", "@examples/events/order-created.json");
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, "match\n");
});

test("cli test-pattern - no match exits 1 and names the failing field, expected and actual", (t) => {
  const dir = mkdtempSync(join(tmpdir(), `sluice-cli-${randomUUID()}-`));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const event = join(dir, "event.json");
  writeFileSync(event, JSON.stringify({ type: "order.created", source: "/shop/eu", data: { total: 99, currency: "EUR", channel: "web" } }));
  const r = sluice("test-pattern", "--pattern", "@examples/patterns/big-orders.json", "--event", `@${event}`);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stdout, /^no match: \$\.data\.total\n/);
  assert.match(r.stdout, /expected: \[\{"numeric":\[">",100\]\}\]/);
  assert.match(r.stdout, /actual: +99/);
});

test("cli test-pattern - inline JSON works and an absent field is reported as absent", () => {
  const r = sluice("test-pattern", "--pattern", '{"source":["a"],"detail":{"x":[1]}}', "--event", '{"source":"a"}');
  assert.equal(r.code, 1);
  assert.match(r.stdout, /no match: \$\.detail\.x/);
  assert.match(r.stdout, /actual: +absent/);
});

test("cli test-pattern - an invalid pattern exits 2 with code, message and JSON path", () => {
  const r = sluice("test-pattern", "--pattern", '{"data":{"total":[{"numeric":[">",0,"<=","5"]}]}}', "--event", "{}");
  assert.equal(r.code, 2);
  assert.equal(r.stdout, "");
  assert.match(r.stderr, /E_PATTERN_INVALID: numeric bound must be a finite number, got a string \(at \$\.data\.total\[0\]\.numeric\[3\]\)/);
});

test("cli test-pattern - bad JSON, a missing file and a missing flag exit 2", () => {
  const bad = sluice("test-pattern", "--pattern", "{", "--event", "{}");
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /E_JSON_INVALID: --pattern: the value is not valid JSON/);
  const missing = sluice("test-pattern", "--pattern", `@/nonexistent/${randomUUID()}.json`, "--event", "{}");
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /E_BAD_REQUEST: --pattern: cannot read/);
  const noEvent = sluice("test-pattern", "--pattern", '{"a":[1]}');
  assert.equal(noEvent.code, 2);
  assert.match(noEvent.stderr, /--event/);
});

test("cli test-pattern - the built package exports compilePattern, RuleIndex and PatternError", async () => {
  const name = "sluice"; // resolved through package.json "exports" to dist/, as users get it
  const pkg = (await import(name)) as typeof import("../../src/index.ts");
  const index = new pkg.RuleIndex();
  index.add("r", { type: ["a"] });
  assert.deepEqual(index.match({ type: "a" }), ["r"]);
  assert.equal(pkg.compilePattern({ type: ["a"] }).matches({ type: "b" }), false);
  assert.throws(() => pkg.compilePattern({}), pkg.PatternError);
});
