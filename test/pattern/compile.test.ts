import { test } from "node:test";
import assert from "node:assert/strict";
import { compilePattern, MAX_ARRAY_NESTING, PatternError, PATTERN_LIMITS } from "../../src/pattern/compile.ts";
import { isSluiceError, ErrorCode } from "../../src/errors.ts";

/** Each case: a pattern, events that must match, events that must not. */
interface Case {
  name: string;
  pattern: unknown;
  yes: unknown[];
  no: unknown[];
}

const cases: Case[] = [
  {
    name: "exact string, any-of list, several fields AND",
    pattern: { type: ["order.created", "order.updated"], source: ["shop"] },
    yes: [{ type: "order.created", source: "shop" }, { type: "order.updated", source: "shop", extra: 1 }],
    no: [{ type: "order.created" }, { type: "order.deleted", source: "shop" }, { type: "ORDER.CREATED", source: "shop" }, {}],
  },
  {
    name: "exact number compares by value, never against strings",
    pattern: { n: [300] },
    yes: [{ n: 300 }, JSON.parse('{"n": 3.0e2}'), JSON.parse('{"n": 300.0}'), { n: [1, 300] }],
    no: [{ n: "300" }, { n: 300.0001 }, { n: 301 }, { n: null }],
  },
  {
    name: "zero and negative zero are equal",
    pattern: { n: [0] },
    yes: [{ n: 0 }, JSON.parse('{"n": -0}'), JSON.parse('{"n": 0e5}')],
    no: [{ n: "0" }, { n: false }],
  },
  {
    name: "booleans and null are exact values; null is not absent",
    pattern: { a: [true], b: [null] },
    yes: [{ a: true, b: null }, { a: [false, true], b: [null] }],
    no: [{ a: "true", b: null }, { a: true }, { a: true, b: "null" }, { a: 1, b: null }],
  },
  {
    name: "event array matches when any element matches (intersection non-empty)",
    pattern: { resources: ["arn:a", "arn:b"] },
    yes: [{ resources: ["x", "arn:b"] }, { resources: "arn:a" }, { resources: [["nested", ["arn:a"]]] }],
    no: [{ resources: [] }, { resources: ["x", "y"] }, { resources: [{ v: "arn:a" }] }],
  },
  {
    name: "nested objects",
    pattern: { data: { order: { status: ["paid"] } } },
    yes: [{ data: { order: { status: "paid" } } }],
    no: [{ data: { status: "paid" } }, { data: { order: "paid" } }, { data: { order: { status: { v: "paid" } } } }],
  },
  {
    name: "array consistency: fields inside one array must match in the same element",
    pattern: { items: { sku: ["a"], qty: [2] } },
    yes: [{ items: [{ sku: "b", qty: 1 }, { sku: "a", qty: 2 }] }, { items: { sku: "a", qty: 2 } }, { items: [[{ sku: "a", qty: [5, 2] }]] }],
    no: [{ items: [{ sku: "a", qty: 1 }, { sku: "b", qty: 2 }] }],
  },
  {
    name: "prefix and suffix are case-sensitive and string-only",
    pattern: { a: [{ prefix: "eu-" }], b: [{ suffix: ".png" }] },
    yes: [{ a: "eu-west-1", b: "x.png" }, { a: ["us-east-1", "eu-"], b: ".png" }],
    no: [{ a: "EU-west-1", b: "x.png" }, { a: "eu-west-1", b: "x.PNG" }, { a: 5, b: "x.png" }, { b: "x.png" }],
  },
  {
    name: "empty prefix matches every string",
    pattern: { a: [{ prefix: "" }] },
    yes: [{ a: "" }, { a: "x" }],
    no: [{ a: 1 }, { a: null }, {}],
  },
  {
    name: "prefix and suffix equals-ignore-case",
    pattern: { a: [{ prefix: { "equals-ignore-case": "EU-" } }], b: [{ suffix: { "equals-ignore-case": ".PNG" } }] },
    yes: [{ a: "eu-west", b: "X.png" }, { a: "Eu-", b: ".pNg" }],
    no: [{ a: "us-eu-", b: "x.png" }, { a: "eu-west", b: "png" }],
  },
  {
    name: "equals-ignore-case",
    pattern: { a: [{ "equals-ignore-case": "Alice" }] },
    yes: [{ a: "alice" }, { a: "ALICE" }, { a: ["bob", "aLiCe"] }],
    no: [{ a: "alice " }, { a: "alicia" }, { a: 1 }],
  },
  {
    name: "wildcard with several stars",
    pattern: { a: [{ wildcard: "arn:*:s3:*/logs/*.gz" }] },
    yes: [{ a: "arn:aws:s3:bucket/logs/2024/x.gz" }, { a: "arn::s3:/logs/.gz" }],
    no: [{ a: "arn:aws:s3:bucket/logs/x.gzip" }, { a: "xarn:aws:s3:b/logs/x.gz" }, { a: "arn:aws:s3:bucket/log/x.gz" }],
  },
  {
    name: "wildcard escapes: \\* is a literal star, \\\\ a backslash",
    pattern: { a: [{ wildcard: "a\\*b*c\\\\" }] },
    yes: [{ a: "a*bc\\" }, { a: "a*bxyzc\\" }],
    no: [{ a: "axbc\\" }, { a: "a*bc" }, { a: "a*b c\\x" }],
  },
  {
    name: "wildcard parts may not overlap",
    pattern: { a: [{ wildcard: "ab*ba" }] },
    yes: [{ a: "abba" }, { a: "abxba" }],
    no: [{ a: "aba" }, { a: "ab" }],
  },
  {
    name: "wildcard without star is exact",
    pattern: { a: [{ wildcard: "abc" }] },
    yes: [{ a: "abc" }],
    no: [{ a: "abcd" }, { a: "ABC" }],
  },
  {
    name: "anything-but a value",
    pattern: { state: [{ "anything-but": "initializing" }] },
    yes: [{ state: "running" }, { state: 5 }, { state: null }, { state: ["initializing", "running"] }],
    no: [{ state: "initializing" }, {}, { state: [] }, { state: ["initializing"] }, { state: { x: 1 } }],
  },
  {
    name: "anything-but a list of numbers compares by value",
    pattern: { x: [{ "anything-but": [100, 200, 3e2] }] },
    yes: [{ x: 101 }, { x: "100" }, { x: [100, 5] }],
    no: [{ x: 100 }, { x: 300 }, { x: [100, 200] }],
  },
  {
    name: "anything-but a list of strings",
    pattern: { s: [{ "anything-but": ["stopped", "overloaded"] }] },
    yes: [{ s: "running" }, { s: "Stopped" }],
    no: [{ s: "stopped" }, { s: "overloaded" }],
  },
  {
    name: "anything-but prefix and suffix",
    pattern: { a: [{ "anything-but": { prefix: "init" } }], b: [{ "anything-but": { suffix: ".tmp" } }] },
    yes: [{ a: "running", b: "x.txt" }, { a: 5, b: true }],
    no: [{ a: "initial", b: "x" }, { a: "x", b: "y.tmp" }],
  },
  {
    name: "anything-but equals-ignore-case (value and list)",
    pattern: { a: [{ "anything-but": { "equals-ignore-case": ["Alice", "BOB"] } }] },
    yes: [{ a: "carol" }, { a: 1 }],
    no: [{ a: "ALICE" }, { a: "bob" }],
  },
  {
    name: "anything-but wildcard and prefix list",
    pattern: { a: [{ "anything-but": { wildcard: "*.tmp" } }], b: [{ "anything-but": { prefix: ["a", "b"] } }] },
    yes: [{ a: "x.txt", b: "c" }],
    no: [{ a: "x.tmp", b: "c" }, { a: "x", b: "bz" }],
  },
  {
    name: "numeric comparisons",
    pattern: { a: [{ numeric: [">", 0] }], b: [{ numeric: ["<=", 5] }], c: [{ numeric: ["=", 3.018e2] }] },
    yes: [{ a: 0.0000001, b: 5, c: 301.8 }, { a: 1e300, b: -1e300, c: [1, 301.8] }],
    no: [{ a: 0, b: 5, c: 301.8 }, { a: 1, b: 5.0000001, c: 301.8 }, { a: 1, b: 5, c: 301.80001 }, { a: "1", b: 5, c: 301.8 }],
  },
  {
    name: "numeric ranges, open and closed, beyond EventBridge's ±5e9",
    pattern: { a: [{ numeric: [">", 0, "<=", 5] }], b: [{ numeric: [">=", 1e10, "<", 2e10] }] },
    yes: [{ a: 5, b: 1e10 }, { a: 0.5, b: 19999999999 }],
    no: [{ a: 0, b: 1e10 }, { a: 5.5, b: 1e10 }, { a: 1, b: 2e10 }, { a: null, b: 1e10 }],
  },
  {
    name: "numeric range written upper bound first",
    pattern: { a: [{ numeric: ["<", 10, ">=", 2] }] },
    yes: [{ a: 2 }, { a: 9.99 }],
    no: [{ a: 10 }, { a: 1 }],
  },
  {
    name: "exists true: any leaf value, null included; objects and empty arrays are not leaves",
    pattern: { a: [{ exists: true }] },
    yes: [{ a: null }, { a: 0 }, { a: "" }, { a: false }, { a: [1] }],
    no: [{}, { a: { b: 1 } }, { a: [] }, { a: [{ b: 1 }] }, { b: 1 }],
  },
  {
    name: "exists false: no leaf value at the path",
    pattern: { detail: { c: [{ exists: false }] } },
    yes: [{}, { detail: {} }, { detail: { c: { c1: 100 } } }, { detail: "x" }, { detail: { c: [] } }, { detail: [] }],
    no: [{ detail: { c: null } }, { detail: { c: 5 } }, { detail: { c: [5] } }],
  },
  {
    name: "exists false on an array of objects checks every element (as event-ruler does)",
    pattern: { items: { discount: [{ exists: false }] } },
    yes: [{ items: [{ sku: "a" }, { sku: "b" }] }],
    no: [{ items: [{ sku: "a" }, { sku: "b", discount: 5 }] }],
  },
  {
    name: "exists false combined with a value in one list",
    pattern: { a: [{ exists: false }, "x"] },
    yes: [{}, { a: "x" }, { a: ["y", "x"] }],
    no: [{ a: "y" }, { a: null }],
  },
  {
    name: "exists on a nested field combined with a sibling value",
    pattern: { data: { id: [{ exists: true }], kind: ["a"] } },
    yes: [{ data: { id: 1, kind: "a" } }, { data: [{ id: null, kind: "a" }] }],
    no: [{ data: { kind: "a" } }, { data: [{ id: 1 }, { kind: "a" }] }],
  },
  {
    name: "cidr IPv4 edges",
    pattern: { ip: [{ cidr: "10.0.0.0/24" }] },
    yes: [{ ip: "10.0.0.0" }, { ip: "10.0.0.255" }, { ip: ["1.1.1.1", "10.0.0.7"] }],
    no: [{ ip: "10.0.1.0" }, { ip: "9.255.255.255" }, { ip: "10.0.0.256" }, { ip: "010.0.0.1" }, { ip: "10.0.0" }, { ip: "::ffff:10.0.0.1" }, { ip: 167772161 }],
  },
  {
    name: "cidr IPv4 /0, /32 and host bits ignored",
    pattern: { a: [{ cidr: "0.0.0.0/0" }], b: [{ cidr: "192.168.1.77/32" }], c: [{ cidr: "172.16.5.9/12" }] },
    yes: [{ a: "255.255.255.255", b: "192.168.1.77", c: "172.31.255.255" }],
    no: [{ a: "x", b: "192.168.1.77", c: "172.16.0.1" }, { a: "1.2.3.4", b: "192.168.1.78", c: "172.16.0.1" }, { a: "1.2.3.4", b: "192.168.1.77", c: "172.32.0.0" }],
  },
  {
    name: "cidr IPv6 with :: and odd prefix lengths",
    pattern: { a: [{ cidr: "2001:db8::/32" }], b: [{ cidr: "fe80::/10" }] },
    yes: [{ a: "2001:db8::1", b: "febf:ffff::1" }, { a: "2001:0DB8:ffff:ffff:ffff:ffff:ffff:ffff", b: "fe80::" }],
    no: [{ a: "2001:db9::1", b: "fe80::" }, { a: "2001:db8::1", b: "fec0::1" }, { a: "10.0.0.1", b: "fe80::" }, { a: "2001:db8:::1", b: "fe80::" }],
  },
  {
    name: "cidr IPv6 /128 and embedded IPv4 tail",
    pattern: { a: [{ cidr: "::ffff:10.0.0.0/120" }], b: [{ cidr: "::1/128" }] },
    yes: [{ a: "::ffff:10.0.0.200", b: "0:0:0:0:0:0:0:1" }, { a: "::ffff:a00:1", b: "::1" }],
    no: [{ a: "::ffff:10.0.1.0", b: "::1" }, { a: "::ffff:10.0.0.1", b: "::2" }],
  },
  {
    name: "$or at the top level",
    pattern: { source: ["shop"], $or: [{ type: ["a"] }, { data: { total: [{ numeric: [">", 100] }] } }] },
    yes: [{ source: "shop", type: "a" }, { source: "shop", type: "b", data: { total: 101 } }],
    no: [{ source: "shop", type: "b", data: { total: 100 } }, { type: "a" }],
  },
  {
    name: "$or nested inside an object and inside an $or",
    pattern: { data: { $or: [{ x: [1] }, { y: [2], $or: [{ z: [3] }, { w: [4] }] }] } },
    yes: [{ data: { x: 1 } }, { data: { y: 2, w: 4 } }, { data: [{ y: 2 }, { y: 2, z: 3 }] }],
    no: [{ data: { y: 2 } }, { data: [{ y: 2 }, { z: 3 }] }, { x: 1 }],
  },
  {
    name: "field names with dots, spaces and __proto__ are plain keys",
    pattern: JSON.parse('{"a.b": ["x"], "__proto__": ["p"], "sp ace": [1]}'),
    yes: [JSON.parse('{"a.b": "x", "__proto__": "p", "sp ace": 1}')],
    no: [{ a: { b: "x" }, "sp ace": 1 }, JSON.parse('{"a.b": "x", "sp ace": 1}')],
  },
];

for (const c of cases) {
  test(`pattern - ${c.name}`, () => {
    const p = compilePattern(c.pattern);
    for (const e of c.yes) {
      assert.equal(p.matches(e), true, `should match ${JSON.stringify(e)}`);
      assert.equal(p.explain(e), null);
    }
    for (const e of c.no) {
      assert.equal(p.matches(e), false, `should not match ${JSON.stringify(e)}`);
      const why = p.explain(e);
      assert.ok(why?.path.startsWith("$"), `explain should report a path for ${JSON.stringify(e)}`);
    }
  });
}

test("pattern - non-object events never match and never throw", () => {
  const p = compilePattern({ a: [{ exists: false }] });
  const q = compilePattern({ a: ["x"] });
  for (const e of [null, 5, "x", [], [{ a: "x" }], undefined, true]) {
    assert.equal(q.matches(e), false);
    assert.notEqual(q.explain(e), null);
  }
  // every field is absent from a non-object event, so exists:false holds
  assert.equal(p.matches(null), true);
});

test("pattern - explain names the failing field, the expected values and the actual value", () => {
  const p = compilePattern({ type: ["order.created"], data: { total: [{ numeric: [">", 100] }] } });
  assert.deepEqual(p.explain({ type: "order.created", data: { total: 50 } }), {
    path: "$.data.total",
    expected: '[{"numeric":[">",100]}]',
    actual: "50",
    message: "$.data.total holds no value the pattern allows",
  });
  const missing = p.explain({ type: "order.created" });
  assert.equal(missing?.path, "$.data.total");
  assert.equal(missing?.actual, "absent");
  assert.match(missing?.message ?? "", /absent/);
  const either = compilePattern({ $or: [{ a: [1] }, { b: [2] }] }).explain({ a: 2 });
  assert.equal(either?.path, "$.a");
  assert.match(either?.message ?? "", /none of the 2 \$or alternatives/);
  const weird = compilePattern({ "detail-type": ["x"], "a b": { c: ["y"] } }).explain({ "detail-type": "x" });
  assert.equal(weird?.path, '$["a b"].c');
});

/** [pattern, JSON path, message fragment] */
const invalid: [unknown, string, RegExp][] = [
  [null, "$", /expected an object, got null/],
  [[], "$", /expected an object, got an array/],
  ["x", "$", /expected an object/],
  [{}, "$", /at least one field/],
  [{ a: {} }, "$.a", /at least one field/],
  [{ a: "x" }, "$.a", /array of allowed values or an object/],
  [{ a: 5 }, "$.a", /array of allowed values/],
  [{ a: [] }, "$.a", /must not be empty/],
  [{ a: [[1]] }, "$.a[0]", /allowed value must be/],
  [{ a: [Number.NaN] }, "$.a[0]", /finite/],
  [{ a: [undefined] }, "$.a[0]", /allowed value must be/],
  [{ a: [new Date(0)] }, "$.a[0]", /allowed value must be/],
  [{ a: [{ foo: 1 }] }, "$.a[0].foo", /unknown operator "foo"/],
  [{ a: [{ prefix: "x", suffix: "y" }] }, "$.a[0]", /exactly one key, got 2/],
  [{ a: [{}] }, "$.a[0]", /exactly one key, got 0/],
  [{ a: [{ prefix: 5 }] }, "$.a[0].prefix", /prefix needs a string, got a number/],
  [{ a: [{ prefix: { foo: "x" } }] }, "$.a[0].prefix", /equals-ignore-case/],
  [{ a: [{ suffix: { "equals-ignore-case": 1 } }] }, '$.a[0].suffix.equals-ignore-case', /needs a string/],
  [{ a: [{ "equals-ignore-case": ["x"] }] }, '$.a[0].equals-ignore-case', /needs a string/],
  [{ a: [{ wildcard: "a**b" }] }, "$.a[0].wildcard", /consecutive/],
  [{ a: [{ wildcard: "a\\b" }] }, "$.a[0].wildcard", /backslash/],
  [{ a: [{ wildcard: "a\\" }] }, "$.a[0].wildcard", /backslash/],
  [{ a: [{ exists: "yes" }] }, "$.a[0].exists", /true or false/],
  [{ a: [{ cidr: "10.0.0.0" }] }, "$.a[0].cidr", /prefix length/],
  [{ a: [{ cidr: "10.0.0.0/33" }] }, "$.a[0].cidr", /0\.\.32/],
  [{ a: [{ cidr: "::/129" }] }, "$.a[0].cidr", /0\.\.128/],
  [{ a: [{ cidr: "10.0.0.300/8" }] }, "$.a[0].cidr", /neither IPv4 nor IPv6/],
  [{ a: [{ cidr: 10 }] }, "$.a[0].cidr", /needs a string/],
  [{ a: [{ numeric: 5 }] }, "$.a[0].numeric", /needs an array/],
  [{ a: [{ numeric: [">"] }] }, "$.a[0].numeric", /2 or 4 elements/],
  [{ data: { total: [{ numeric: [">", 0, "<=", "5"] }] } }, "$.data.total[0].numeric[3]", /finite number, got a string/],
  [{ data: { total: [{ numeric: [">", 0, "<=", "5"] }] } }, "$.data.total[0].numeric[3]", /finite number/],
  [{ a: [{ numeric: ["!=", 1] }] }, "$.a[0].numeric[0]", /one of =, <, <=, >, >=/],
  [{ a: [{ numeric: [">", 1, ">", 2] }] }, "$.a[0].numeric[2]", /two lower bounds/],
  [{ a: [{ numeric: ["=", 1, "<", 2] }] }, "$.a[0].numeric[0]", /cannot be combined/],
  [{ a: [{ numeric: [">", 5, "<", 5] }] }, "$.a[0].numeric", /empty/],
  [{ a: [{ numeric: [">", 6, "<", 5] }] }, "$.a[0].numeric", /empty/],
  [{ a: [{ "anything-but": [] }] }, '$.a[0].anything-but', /must not be empty/],
  [{ a: [{ "anything-but": ["x", 1] }] }, '$.a[0].anything-but[1]', /only strings or only numbers/],
  [{ a: [{ "anything-but": [null] }] }, '$.a[0].anything-but[0]', /only strings or only numbers/],
  [{ a: [{ "anything-but": true }] }, '$.a[0].anything-but', /anything-but takes/],
  [{ a: [{ "anything-but": { numeric: [">", 1] } }] }, '$.a[0].anything-but', /prefix \| suffix/],
  [{ a: [{ "anything-but": { prefix: [] } }] }, '$.a[0].anything-but.prefix', /must not be empty/],
  [{ a: [{ "anything-but": { prefix: ["x", 2] } }] }, '$.a[0].anything-but.prefix[1]', /needs a string/],
  [{ a: [{ "anything-but": { wildcard: "**" } }] }, '$.a[0].anything-but.wildcard', /consecutive/],
  [{ $or: [{ a: [1] }] }, "$.$or", /at least 2 alternatives/],
  [{ $or: { a: [1] } }, "$.$or", /needs an array/],
  [{ $or: [{ a: [1] }, {}] }, "$.$or[1]", /at least one field/],
  [{ $or: [{ a: [1] }, { b: [{ nope: 1 }] }] }, "$.$or[1].b[0].nope", /unknown operator/],
];

for (const [pattern, path, message] of invalid) {
  test(`pattern - rejects ${JSON.stringify(pattern) ?? String(pattern)} at ${path}`, () => {
    assert.throws(
      () => compilePattern(pattern),
      (err: unknown) => {
        assert.ok(err instanceof PatternError, `expected PatternError, got ${String(err)}`);
        assert.ok(isSluiceError(err, ErrorCode.PatternInvalid));
        assert.equal(err.path, path);
        assert.match(err.message, message);
        return true;
      },
    );
  });
}

test("pattern - limits: depth, number of values, size and $or expansion", () => {
  let deep: Record<string, unknown> = { leaf: [1] };
  for (let i = 1; i < PATTERN_LIMITS.maxDepth; i++) deep = { n: deep };
  compilePattern(deep); // exactly at the limit
  const tooDeep = { n: deep };
  assert.throws(() => compilePattern(tooDeep), (e: unknown) => e instanceof PatternError && /deeper than 16/.test(e.message) && e.path === `$${".n".repeat(16)}`);

  const many = { a: Array.from({ length: PATTERN_LIMITS.maxValues + 1 }, (_, i) => i) };
  assert.throws(() => compilePattern(many), (e: unknown) => e instanceof PatternError && e.path === `$.a[${PATTERN_LIMITS.maxValues}]` && /more than 1000/.test(e.message));
  compilePattern({ a: Array.from({ length: PATTERN_LIMITS.maxValues }, (_, i) => i) });

  const big = { a: ["x".repeat(PATTERN_LIMITS.maxSizeChars)] };
  assert.throws(() => compilePattern(big), (e: unknown) => e instanceof PatternError && e.path === "$.a[0]" && /larger than/.test(e.message));

  const or4 = { $or: [{ a: [1] }, { a: [2] }, { a: [3] }, { a: [4] }] };
  const fiveLevels: Record<string, unknown> = {};
  for (let i = 0; i < 5; i++) fiveLevels[`f${i}`] = or4; // 4^5 = 1024: allowed
  compilePattern(fiveLevels);
  assert.throws(
    () => compilePattern({ ...fiveLevels, f5: { $or: [{ a: [1] }, { b: [2] }] } }),
    (e: unknown) => e instanceof PatternError && e.path === "$" && /2048 alternatives/.test(e.message),
  );
});

test("pattern - cycles and exotic inputs give PatternError, never a crash", () => {
  const cyclic: Record<string, unknown> = { a: ["x"] };
  cyclic.self = cyclic;
  assert.throws(() => compilePattern(cyclic), PatternError);
  for (const bad of [undefined, 1n, Symbol("x"), () => 1, new Map(), Object.create({ a: ["x"] })]) {
    assert.throws(() => compilePattern(bad), PatternError);
  }
  assert.throws(() => compilePattern({ a: [1n] }), PatternError);
  assert.throws(() => compilePattern({ a: [Infinity] }), PatternError);
});

test("pattern - deeply nested event arrays: no stack overflow; values deeper than MAX_ARRAY_NESTING are not seen", () => {
  const nest = (levels: number, inner: unknown): unknown => {
    let v = inner;
    for (let i = 0; i < levels; i++) v = [v];
    return v;
  };
  const p = compilePattern({ a: ["x"], b: { c: [{ exists: false }] } });
  const deep = JSON.parse("[".repeat(100_000) + "]".repeat(100_000)) as unknown;
  assert.equal(p.matches({ a: deep, b: { c: deep } }), false);
  assert.equal(p.explain({ a: deep })?.path, "$.a");
  assert.equal(compilePattern({ a: ["x"] }).matches({ a: nest(MAX_ARRAY_NESTING, "x") }), true);
  assert.equal(compilePattern({ a: ["x"] }).matches({ a: nest(MAX_ARRAY_NESTING + 1, "x") }), false);
  assert.equal(compilePattern({ a: { b: ["x"] } }).matches({ a: nest(MAX_ARRAY_NESTING, { b: "x" }) }), true);
  assert.equal(compilePattern({ a: { b: ["x"] } }).matches({ a: nest(MAX_ARRAY_NESTING + 1, { b: "x" }) }), false);
  assert.equal(compilePattern({ a: [{ exists: false }] }).matches({ a: nest(MAX_ARRAY_NESTING + 1, 1) }), true);
});
