import { test } from "node:test";
import assert from "node:assert/strict";
import { RuleIndex } from "../../src/pattern/rule-index.ts";
import { compilePattern, MAX_ARRAY_NESTING, PatternError, type CompiledPattern } from "../../src/pattern/compile.ts";
import { Gen, prng, randomEvent, randomJson, randomPattern } from "./random.ts";

const sorted = (xs: string[]) => [...xs].sort();

test("rule-index - add, match, replace, remove and size", () => {
  const index = new RuleIndex();
  index.add("big", { type: ["order.created"], data: { total: [{ numeric: [">", 100] }] } });
  index.add("eu", { source: [{ prefix: "eu/" }] });
  assert.equal(index.size, 2);
  assert.deepEqual(sorted(index.match({ type: "order.created", source: "eu/shop", data: { total: 150 } })), ["big", "eu"]);
  assert.deepEqual(index.match({ type: "order.created", source: "us/shop", data: { total: 50 } }), []);

  index.add("big", { type: ["order.created"], data: { total: [{ numeric: ["<", 100] }] } }); // replace
  assert.equal(index.size, 2);
  assert.deepEqual(index.match({ type: "order.created", data: { total: 50 } }), ["big"]);
  assert.deepEqual(index.match({ type: "order.created", data: { total: 150 } }), []);

  assert.equal(index.remove("big"), true);
  assert.equal(index.remove("big"), false);
  assert.equal(index.size, 1);
  assert.deepEqual(index.match({ type: "order.created", data: { total: 50 } }), []);
});

test("rule-index - an invalid pattern throws PatternError and leaves the index unchanged", () => {
  const index = new RuleIndex();
  index.add("r", { type: ["a"] });
  assert.throws(() => index.add("r", { type: [{ nope: 1 }] }), (e: unknown) => e instanceof PatternError && e.path === "$.type[0].nope");
  assert.equal(index.size, 1);
  assert.deepEqual(index.match({ type: "a" }), ["r"]);
});

test("rule-index - a rule matching through several $or branches and values is reported once", () => {
  const index = new RuleIndex();
  index.add("r", { $or: [{ a: ["x", "y"] }, { b: [{ prefix: "" }] }, { c: [{ exists: true }] }] });
  assert.deepEqual(index.match({ a: ["x", "y"], b: "q", c: 1 }), ["r"]);
});

test("rule-index - rules without a required field (exists:false only) are checked on every event", () => {
  const index = new RuleIndex();
  index.add("absent", { debug: [{ exists: false }] });
  index.add("or-absent", { $or: [{ a: ["x"] }, { b: [{ exists: false }] }] });
  assert.deepEqual(sorted(index.match({})), ["absent", "or-absent"]);
  assert.deepEqual(index.match({ debug: true, b: 1 }), []);
  assert.deepEqual(index.match({ debug: true, a: "x", b: 1 }), ["or-absent"]);
});

test("rule-index - does not evaluate every rule: candidates stay few among 20 000 rules", () => {
  const index = new RuleIndex();
  for (let i = 0; i < 20_000; i++) {
    // every rule shares the type; the tenant tells them apart; anything-but and numeric cannot be hashed
    index.add(`r${i}`, {
      type: ["order.created"],
      data: { tenant: [`t${i % 5000}`], status: [{ "anything-but": "test" }], total: [{ numeric: [">", i % 100] }] },
    });
  }
  const ids = index.match({ type: "order.created", data: { tenant: "t42", status: "live", total: 1000 } });
  assert.deepEqual(sorted(ids), sorted(["r42", "r5042", "r10042", "r15042"]));
  assert.ok(index.lastCandidates <= 8, `evaluated ${index.lastCandidates} rules`);
  assert.deepEqual(index.match({ type: "order.created", data: { tenant: "nobody", status: "live", total: 1000 } }), []);
  assert.ok(index.lastCandidates <= 4, `evaluated ${index.lastCandidates} rules`);
});

test("rule-index - prefix, suffix, wildcard and case-insensitive slots", () => {
  const index = new RuleIndex();
  index.add("p", { s: [{ prefix: "ab" }] });
  index.add("pci", { s: [{ prefix: { "equals-ignore-case": "AB" } }] });
  index.add("sfx", { s: [{ suffix: "yz" }] });
  index.add("sci", { s: [{ suffix: { "equals-ignore-case": "YZ" } }] });
  index.add("ci", { s: [{ "equals-ignore-case": "ABXYZ" }] });
  index.add("w", { s: [{ wildcard: "a*z" }] });
  index.add("w2", { s: [{ wildcard: "*x*" }] });
  index.add("num", { n: [{ numeric: ["=", 3e2] }] });
  assert.deepEqual(sorted(index.match({ s: "abxyz" })), ["ci", "p", "pci", "sci", "sfx", "w", "w2"]);
  assert.deepEqual(sorted(index.match({ s: "ABXYZ" })), ["ci", "pci", "sci"]); // wildcards are case-sensitive
  assert.deepEqual(index.match({ n: 300 }), ["num"]);
  for (const id of ["p", "pci", "sfx", "sci", "ci", "w", "w2", "num"]) index.remove(id);
  assert.deepEqual(index.match({ s: "abxyz", n: 300 }), []);
  assert.equal(index.size, 0);
});

/** Matches by evaluating each compiled pattern alone: the reference the index must equal. */
function naive(rules: Map<string, CompiledPattern>, event: unknown): string[] {
  const out: string[] = [];
  for (const [id, p] of rules) if (p.matches(event)) out.push(id);
  return out.sort();
}

test("rule-index - differential: equals evaluating every pattern alone, also after removes and replacements", () => {
  for (const seed of [1, 2, 3]) {
    const g = new Gen(prng(seed));
    const index = new RuleIndex();
    const reference = new Map<string, CompiledPattern>();
    const addRandom = (id: string) => {
      const pattern = randomPattern(g);
      index.add(id, pattern);
      reference.set(id, compilePattern(pattern));
    };
    // a crowd sharing one value exercises rebalancing
    for (let i = 0; i < 150; i++) {
      const pattern = { type: ["a"], s: [g.pick(["a", "b", "ab", "abc"])], n: [{ numeric: [">", g.int(3)] }] };
      index.add(`crowd${i}`, pattern);
      reference.set(`crowd${i}`, compilePattern(pattern));
    }
    for (let i = 0; i < 600; i++) addRandom(`r${i}`);
    let matched = 0;
    const check = (events: number) => {
      for (let i = 0; i < events; i++) {
        const event = randomEvent(g);
        const expected = naive(reference, event);
        const actual = index.match(event);
        assert.equal(new Set(actual).size, actual.length, "each id once");
        assert.deepEqual(actual.sort(), expected, `seed ${seed}: ${JSON.stringify(event)}`);
        matched += expected.length;
      }
    };
    check(700);
    for (let i = 0; i < 600; i += 3) {
      index.remove(`r${i}`);
      reference.delete(`r${i}`);
      addRandom(`r${i + 1}`); // replacement
    }
    for (let i = 0; i < 150; i += 2) {
      index.remove(`crowd${i}`);
      reference.delete(`crowd${i}`);
    }
    assert.equal(index.size, reference.size);
    check(700);
    assert.ok(matched > 1000, `the random vocabulary should produce matches (got ${matched})`);
  }
});

test("rule-index - fuzz: random JSON gives a compiled pattern or a PatternError, nothing else", () => {
  const g = new Gen(prng(99));
  let valid = 0;
  let invalid = 0;
  for (let i = 0; i < 20_000; i++) {
    const input = g.chance(0.3) ? randomPattern(g) : randomJson(g);
    let compiled: CompiledPattern;
    try {
      compiled = compilePattern(input);
    } catch (err) {
      assert.ok(err instanceof PatternError, `unexpected ${String(err)} for ${JSON.stringify(input)}`);
      assert.equal(err.code, "E_PATTERN_INVALID");
      assert.match(err.path, /^\$/);
      invalid++;
      continue;
    }
    valid++;
    const event = randomEvent(g);
    const m = compiled.matches(event);
    assert.equal(compiled.explain(event) === null, m);
  }
  assert.ok(valid > 1000 && invalid > 1000, `valid ${valid}, invalid ${invalid}`);
});

test("rule-index - differential on dense single-value rules (anchors, signatures, numbers by value)", () => {
  const g = new Gen(prng(7));
  const values: unknown[] = [0, -0, 1, 2.5, 300, "a", "ab", "abc", "", true, false, null];
  const prefixes = ["", "a", "ab"];
  const leaf = (): unknown[] => {
    const r = g.int(4);
    if (r === 0) return [{ prefix: g.pick(prefixes) }];
    if (r === 1) return [{ numeric: ["=", g.pick([0, 1, 2.5, 300])] }];
    return [g.pick(values)];
  };
  const paths = ["p", "q", "r"];
  const index = new RuleIndex();
  const reference = new Map<string, CompiledPattern>();
  for (let i = 0; i < 400; i++) {
    const pattern: Record<string, unknown> = {};
    for (const p of paths) if (g.chance(0.7)) pattern[p] = leaf();
    if (g.chance(0.5)) pattern.d = { p: leaf(), q: leaf() };
    if (Object.keys(pattern).length === 0) pattern.p = leaf();
    index.add(`d${i}`, pattern);
    reference.set(`d${i}`, compilePattern(pattern));
  }
  let matched = 0;
  for (let i = 0; i < 3000; i++) {
    const event: Record<string, unknown> = {};
    const value = () => (g.chance(0.2) ? [g.pick(values), g.pick(values)] : g.pick(values));
    for (const p of paths) if (g.chance(0.9)) event[p] = value();
    if (g.chance(0.7)) event.d = g.chance(0.3) ? [{ p: value() }, { p: value(), q: value() }] : { p: value(), q: value() };
    const expected = naive(reference, event);
    assert.deepEqual(index.match(event).sort(), expected, JSON.stringify(event));
    matched += expected.length;
  }
  assert.ok(matched > 500, `dense vocabulary should match often (got ${matched})`);
});

test("rule-index - deeply nested event arrays: no stack overflow, same answer as the compiled patterns", () => {
  const nest = (levels: number, inner: unknown): unknown => {
    let v = inner;
    for (let i = 0; i < levels; i++) v = [v];
    return v;
  };
  const index = new RuleIndex();
  index.add("flat", { a: ["x"] });
  index.add("nested", { a: { b: ["x"] } });
  index.add("absent", { a: [{ exists: false }], c: [1] });
  const deep = JSON.parse("[".repeat(100_000) + "]".repeat(100_000)) as unknown;
  assert.deepEqual(index.match({ a: deep, c: 1 }), ["absent"]);
  assert.deepEqual(index.match({ a: [nest(MAX_ARRAY_NESTING - 1, "x"), nest(MAX_ARRAY_NESTING - 1, { b: "x" })] }), ["flat", "nested"]);
  assert.deepEqual(index.match({ a: [nest(MAX_ARRAY_NESTING, "x"), nest(MAX_ARRAY_NESTING, { b: "x" })], c: 1 }), ["absent"]);
});

test("rule-index - check programs agree with the compiled patterns on arrays, absence, objects and number corners", () => {
  const patterns: Record<string, unknown>[] = [
    { t: ["a"], d: { n: [{ numeric: [">", 0] }] } },
    { t: ["a"], d: { n: [{ numeric: [">=", -5, "<", 5] }] } },
    { t: ["a"], d: { n: [{ numeric: ["<=", 0] }] } },
    { t: ["a"], d: { n: [0] } },
    { t: ["a"], d: { s: [{ "anything-but": ["x", "y"] }] } },
    { t: ["a"], d: { s: [{ "anything-but": [1, 2] }] } },
    { t: ["a"], d: { s: [{ prefix: "x" }, "zz"] } },
    { t: ["a"], d: { s: [{ exists: false }] } },
    { t: ["a"], d: { s: [{ exists: false }, "x"] } },
    { t: ["a"], d: { s: [{ exists: true }] } },
    { t: ["a"], d: { s: [{ suffix: { "equals-ignore-case": "Z" } }] } },
    { t: ["a"], d: { s: [null] } },
    { t: ["a"], d: { i: { k: ["x"], q: [1] } } },
    { t: ["a"], d: { i: { k: [{ exists: false }] } } },
  ];
  const events: unknown[] = [
    { t: "a", d: { n: 1, s: "x" } },
    { t: "a", d: { n: -0, s: "y" } },
    { t: "a", d: { n: 0, s: null } },
    { t: "a", d: { n: [1, -1], s: ["x", "q"] } },
    { t: "a", d: { n: [[7]], s: [] } },
    { t: "a", d: { n: "1", s: { x: 1 } } },
    { t: "a", d: { s: 1 } },
    { t: "a", d: { s: "xaz" } },
    { t: "a", d: { s: "ZZ" } },
    { t: ["a", "b"], d: [{ n: 3 }, { s: "x" }] },
    { t: "a", d: { i: [{ k: "x", q: 2 }, { k: "y", q: 1 }] } },
    { t: "a", d: { i: [{ k: "x", q: 1 }] } },
    { t: "a", d: { i: { k: "x", q: 1 } } },
    { t: "a", d: { i: { k: { x: 1 } } } },
    { t: "a", d: 5 },
    { t: "a" },
    [{ t: "a", d: { n: 1 } }],
  ];
  const index = new RuleIndex();
  const compiled = patterns.map((p, i) => {
    index.add(`p${i}`, p);
    return compilePattern(p);
  });
  for (const [k, event] of events.entries()) {
    const want = compiled.flatMap((c, i) => (c.matches(event) ? [`p${i}`] : []));
    assert.deepEqual(sorted(index.match(event)), sorted(want), `event ${k}: ${JSON.stringify(event)}`);
  }
});
