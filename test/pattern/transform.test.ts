import { test } from "node:test";
import assert from "node:assert/strict";
import { compileTransformer, TransformError } from "../../src/pattern/transform.ts";
import type { CloudEvent } from "../../src/event/types.ts";
import { SluiceError } from "../../src/errors.ts";

const event: CloudEvent = {
  specversion: "1.0",
  id: "e-1",
  source: "/shop/orders",
  type: "order.created",
  time: "2024-05-01T12:00:00Z",
  partitionkey: "c-9",
  data: {
    order: { id: "o-1", total: 12.5, paid: true, note: null },
    items: [
      { sku: "a", qty: 1 },
      { sku: "b", qty: 2 },
    ],
    "odd key": "odd",
    "with-dash": "dash",
    quote: 'say "hi"\n\\ <b>',
  },
};

function invalid(definition: unknown, path: string, message?: RegExp): TransformError {
  let caught: unknown;
  try {
    compileTransformer(definition);
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof TransformError, `expected TransformError, got ${String(caught)}`);
  assert.ok(caught instanceof SluiceError);
  assert.equal(caught.code, "E_TRANSFORM_INVALID");
  assert.equal(caught.path, path, caught.message);
  if (message) assert.match(caught.message, message);
  return caught;
}

test("transform - EventBridge's documented examples: text, quoted text and JSON with variables in and out of quotes", () => {
  const inputPaths = { instance: "$.data.order.id", status: "$.data.order.paid" };
  assert.equal(compileTransformer({ inputPaths, inputTemplate: "<instance> is in state <status>" }).apply(event), "o-1 is in state true");
  assert.equal(
    compileTransformer({ inputPaths, inputTemplate: '<instance> is in state "<status>"' }).apply(event),
    'o-1 is in state "true"',
  );
  const json = compileTransformer({ inputPaths, inputTemplate: '{"myInstance": <instance>,"myStatus": "<instance> is in state \\"<status>\\""}' });
  assert.equal(json.mode, "json");
  assert.deepEqual(json.apply(event), { myInstance: "o-1", myStatus: 'o-1 is in state "true"' });
});

test("transform - a placeholder outside a string is the JSON value, inside a string its escaped text", () => {
  const t = compileTransformer({
    inputPaths: { order: "$.data.order", items: "$.data.items", total: "$.data.order.total", quote: "$.data.quote", note: "$.data.order.note" },
    inputTemplate: `{
      "order": <order>, "items": <items>, "total": <total>, "note": <note>, "quote": <quote>,
      "text": "total=<total> items=<items> quote=<quote> note=<note>!",
      "nested": [{"deep": [<total>, "<total>"]}]
    }`,
  });
  assert.deepEqual(t.apply(event), {
    order: { id: "o-1", total: 12.5, paid: true, note: null },
    items: [
      { sku: "a", qty: 1 },
      { sku: "b", qty: 2 },
    ],
    total: 12.5,
    note: null,
    quote: 'say "hi"\n\\ <b>',
    text: `total=12.5 items=[{"sku":"a","qty":1},{"sku":"b","qty":2}] quote=say "hi"\n\\ <b> note=!`,
    nested: [{ deep: [12.5, "12.5"] }],
  });
});

test("transform - missing paths give null (JSON), the empty string (text), and never read inherited properties", () => {
  const t = compileTransformer({
    inputPaths: { a: "$.data.nope", b: "$.data.items[5]", c: "$.data.order.id.deeper", d: "$.constructor", e: "$.data.items.length" },
    inputTemplate: '{"a": <a>, "b": <b>, "c": <c>, "d": <d>, "e": <e>, "s": "[<a>]"}',
  });
  assert.deepEqual(t.apply(event), { a: null, b: null, c: null, d: null, e: null, s: "[]" });
  assert.equal(compileTransformer({ inputPaths: { a: "$.data.nope" }, inputTemplate: "x<a>y" }).apply(event), "xy");
});

test("transform - paths: root, attributes, extensions, indexes, quoted names, dashes and wildcards", () => {
  const t = compileTransformer({
    inputPaths: {
      all: "$",
      source: "$.source",
      key: "$.partitionkey",
      first: "$.data.items[0].sku",
      odd: "$.data['odd key']",
      odd2: '$.data["odd key"]',
      dash: "$.data.with-dash",
      skus: "$.data.items[*].sku",
      values: "$.data.order.*",
    },
    inputTemplate:
      '{"all": <all>, "source": <source>, "key": <key>, "first": <first>, "odd": <odd>, "odd2": <odd2>, "dash": <dash>, "skus": <skus>, "values": <values>}',
  });
  assert.deepEqual(t.apply(event), {
    all: event,
    source: "/shop/orders",
    key: "c-9",
    first: "a",
    odd: "odd",
    odd2: "odd",
    dash: "dash",
    skus: ["a", "b"],
    values: ["o-1", 12.5, true, null],
  });
});

test("transform - reserved placeholders: whole event, attributes, data, JSON text, rule, bus and ingestion time", () => {
  const t = compileTransformer({
    inputTemplate:
      '{"e": <sluice.event>, "attrs": <sluice.event.attributes>, "data": <sluice.event.data>, "json": <sluice.event.json>, "rule": <sluice.rule-name>, "bus": "<sluice.bus-name>", "at": <sluice.event.ingestion-time>}',
  });
  const { data: _d, ...attributes } = event;
  assert.deepEqual(t.apply(event, { ruleName: "r1", busName: "default", ingestedAt: Date.UTC(2024, 0, 2, 3, 4, 5, 6) }), {
    e: event,
    attrs: attributes,
    data: event.data,
    json: JSON.stringify(event),
    rule: "r1",
    bus: "default",
    at: "2024-01-02T03:04:05.006Z",
  });
  assert.deepEqual(t.apply(event), { e: event, attrs: attributes, data: event.data, json: JSON.stringify(event), rule: null, bus: "", at: null });
  // The JSON text can sit inside a string: it is escaped and decodes back to the event.
  const inString = compileTransformer({ inputTemplate: '{"wrapped": "<sluice.event.json>"}' }).apply(event) as { wrapped: string };
  assert.deepEqual(JSON.parse(inString.wrapped), event);
  const binary: CloudEvent = { specversion: "1.0", id: "b", source: "/s", type: "t", data_base64: "AAE=" };
  assert.equal(compileTransformer({ inputTemplate: "<sluice.event.data>" }).apply(binary), "AAE=");
});

test("transform - a lone placeholder returns the value; a quoted template returns a string; other text stays text", () => {
  const data = compileTransformer({ inputTemplate: "  <sluice.event.data>  " });
  assert.equal(data.mode, "json");
  assert.deepEqual(data.apply(event), event.data);
  const quoted = compileTransformer({ inputPaths: { id: "$.id" }, inputTemplate: '"event <id> arrived"' });
  assert.equal(quoted.mode, "json");
  assert.equal(quoted.apply(event), "event e-1 arrived");
  const notJson = compileTransformer({ inputPaths: { id: "$.id" }, inputTemplate: '"a" and "<id>"' });
  assert.equal(notJson.mode, "text");
  assert.equal(notJson.apply(event), '"a" and "e-1"');
  const plain = compileTransformer({ inputPaths: { o: "$.data.order" }, inputTemplate: "order: <o>" });
  assert.equal(plain.apply(event), 'order: {"id":"o-1","total":12.5,"paid":true,"note":null}');
});

test("transform - each apply returns a fresh result and __proto__ keys in templates stay data", () => {
  const t = compileTransformer({ inputTemplate: '{"a": {"b": [1, 2]}, "__proto__": {"polluted": true}}' });
  const one = t.apply(event) as Record<string, unknown>;
  const two = t.apply(event) as Record<string, unknown>;
  assert.notEqual(one.a, two.a);
  assert.deepEqual(Object.keys(one), ["a", "__proto__"]);
  assert.equal(Object.getPrototypeOf(one), Object.prototype);
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
});

test("transform - compile errors name the offending part", () => {
  invalid(null, "$");
  invalid([], "$");
  invalid({ inputTemplate: "x", extra: 1 }, "$.extra");
  invalid({}, "$.inputTemplate");
  invalid({ inputTemplate: 5 }, "$.inputTemplate");
  invalid({ inputTemplate: "" }, "$.inputTemplate");
  invalid({ inputTemplate: "x".repeat(8193) }, "$.inputTemplate");
  invalid({ inputTemplate: "x", inputPaths: [] }, "$.inputPaths");
  invalid({ inputTemplate: "x", inputPaths: "$.a" }, "$.inputPaths");
  invalid({ inputTemplate: "x", inputPaths: Object.fromEntries(Array.from({ length: 101 }, (_, i) => [`n${i}`, "$"])) }, "$.inputPaths");
  invalid({ inputTemplate: "x", inputPaths: { orderId: 5 } }, "$.inputPaths.orderId");
  for (const bad of ["data.x", "", "$..x", "$.", "$[", "$[x]", "$['x", "$['x'", "$.a b", "$[1", "$[-1]", "$[9999999999]", `$${".a".repeat(600)}`]) {
    invalid({ inputTemplate: "x", inputPaths: { orderId: bad } }, "$.inputPaths.orderId");
  }
  invalid({ inputTemplate: "x", inputPaths: { "bad name": "$" } }, '$.inputPaths["bad name"]');
  invalid({ inputTemplate: "x", inputPaths: { "sluice.event": "$" } }, '$.inputPaths["sluice.event"]', /reserved/);
  invalid({ inputTemplate: "<nope>" }, "$.inputTemplate", /nope/);
  invalid({ inputTemplate: '{"a": "<b>bold</b>"}' }, "$.inputTemplate", /<b>/);
  invalid({ inputTemplate: "{<aws.events.event.json>}" }, "$.inputTemplate", /sluice\.event/);
  invalid({ inputTemplate: '{"a": <x> <x>}', inputPaths: { x: "$" } }, "$.inputTemplate", /not valid JSON/);
  invalid({ inputTemplate: '{"a": 1,}' }, "$.inputTemplate", /not valid JSON/);
  invalid({ inputTemplate: "[<x>" , inputPaths: { x: "$" } }, "$.inputTemplate");
  invalid({ inputTemplate: "{<x>: 1}", inputPaths: { x: "$" } }, "$.inputTemplate", /key/);
  invalid({ inputTemplate: '{"<x>": 1}', inputPaths: { x: "$" } }, "$.inputTemplate", /key/);
  invalid({ inputTemplate: `${"[".repeat(150)}${"]".repeat(150)}` }, "$.inputTemplate", /deeper/);
});

test("transform - 100 input paths are allowed and a template may reuse a name", () => {
  const inputPaths = Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`n${i}`, "$.id"]));
  const t = compileTransformer({ inputPaths, inputTemplate: '["<n0><n0>", <n99>, <n0>]' });
  assert.deepEqual(t.apply(event), ["e-1e-1", "e-1", "e-1"]);
});
