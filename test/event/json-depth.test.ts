import { test } from "node:test";
import assert from "node:assert/strict";
import { assertJsonDepth, jsonTextDepth, MAX_JSON_DEPTH } from "../../src/event/json-depth.ts";
import { normalizeEvent } from "../../src/event/normalize.ts";
import { prng, RandomJson } from "../helpers/random-json.ts";

function depthOf(v: unknown): number {
  if (typeof v !== "object" || v === null) return 0;
  const children = Array.isArray(v) ? v : Object.values(v);
  return 1 + children.reduce<number>((m, c) => Math.max(m, depthOf(c)), 0);
}

test("jsonTextDepth - counts objects and arrays, not brackets inside strings or after escapes", () => {
  assert.equal(jsonTextDepth("1"), 0);
  assert.equal(jsonTextDepth("[]"), 1);
  assert.equal(jsonTextDepth('{"a":[{"b":[]}],"c":{}}'), 4);
  assert.equal(jsonTextDepth('{"a":"[[[[{{{{"}'), 1);
  assert.equal(jsonTextDepth('{"a":"\\"[[[","b":[1]}'), 2);
  assert.equal(jsonTextDepth('["\\\\",[["x"]]]'), 3);
  // Counting stops one past the limit.
  assert.equal(jsonTextDepth("[".repeat(10_000), 5), 6);
});

test("jsonTextDepth - agrees with the parsed value on random JSON", () => {
  for (let seed = 1; seed <= 300; seed++) {
    const value = new RandomJson(prng(seed)).value(6);
    assert.equal(jsonTextDepth(JSON.stringify(value)), depthOf(value), `seed ${seed}`);
  }
});

test("assertJsonDepth and normalizeEvent - the limit itself passes, one level more is E_JSON_TOO_DEEP", () => {
  const nested = (n: number) => "[".repeat(n) + "]".repeat(n);
  assert.doesNotThrow(() => assertJsonDepth(nested(MAX_JSON_DEPTH), "$.body"));
  assert.throws(() => assertJsonDepth(nested(MAX_JSON_DEPTH + 1), "$.body"), { code: "E_JSON_TOO_DEEP", path: "$.body" });
  const data = (n: number) => JSON.parse(nested(n)) as unknown;
  const event = (n: number) => ({ specversion: "1.0", source: "/t", type: "t", data: data(n) });
  assert.doesNotThrow(() => normalizeEvent(event(MAX_JSON_DEPTH - 1)));
  assert.throws(() => normalizeEvent(event(MAX_JSON_DEPTH)), { code: "E_JSON_TOO_DEEP", rule: "max-depth", path: "$.data" });
});
