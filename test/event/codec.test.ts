import { test } from "node:test";
import assert from "node:assert/strict";
import { decodeEvent, encodeEvent } from "../../src/event/codec.ts";
import type { CloudEvent } from "../../src/event/types.ts";
import { SluiceError } from "../../src/errors.ts";

const event: CloudEvent = {
  specversion: "1.0",
  id: "a1",
  source: "https://shop.example/orders",
  type: "order.created",
  subject: "o-1",
  time: "2024-05-01T12:00:00Z",
  datacontenttype: "application/json",
  dataschema: "https://schemas.example/order",
  partitionkey: "customer-7",
  sluicehops: 2,
  replay: false,
  data: { total: 10.5, items: [{ sku: "x", qty: 2 }], note: null, "quote\"d": "\u2028\ud83d\ude00" },
};

test("codec - structured JSON round trip keeps every attribute, extension and data value", () => {
  const text = encodeEvent(event);
  assert.deepEqual(JSON.parse(text), event);
  assert.deepEqual(decodeEvent(text), event);
  assert.equal(encodeEvent(decodeEvent(text)), text);
});

test("codec - binary data is written as data_base64 and decoded as the same base64", () => {
  const bytes = Buffer.from([0, 255, 1, 254, 128]);
  const text = encodeEvent({ ...event, datacontenttype: "application/octet-stream", data: bytes });
  const json = JSON.parse(text) as Record<string, unknown>;
  assert.equal(json.data_base64, bytes.toString("base64"));
  assert.equal("data" in json, false);
  const back = decodeEvent(text);
  assert.deepEqual(Buffer.from(back.data_base64 as string, "base64"), bytes);
});

test("codec - string, number, boolean and null data survive", () => {
  for (const data of ["text", 0, -1.5e300, true, null, [], {}]) {
    assert.deepEqual(decodeEvent(encodeEvent({ ...event, data })).data, data);
  }
});

test("codec - decodeEvent rejects text that is not JSON with E_JSON_INVALID and bad events with E_EVENT_INVALID", () => {
  for (const bad of ["", "{", "nul", "{'a':1}", "[1,]"]) {
    assert.throws(() => decodeEvent(bad), (err: unknown) => err instanceof SluiceError && err.code === "E_JSON_INVALID");
  }
  assert.throws(() => decodeEvent(42 as unknown as string), { code: "E_JSON_INVALID" });
  assert.throws(() => decodeEvent("null"), { code: "E_EVENT_INVALID", rule: "object" });
  assert.throws(() => decodeEvent('{"specversion":"1.0","id":"1","source":"/s","type":"t","data":1,"data_base64":"AA=="}'), {
    rule: "data-exclusive",
  });
});

test("codec - a __proto__ key in the JSON is rejected as an extension name and pollutes nothing", () => {
  const text = '{"specversion":"1.0","id":"1","source":"/s","type":"t","__proto__":{"polluted":true}}';
  assert.throws(() => decodeEvent(text), { rule: "extension-name", attribute: "__proto__" });
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
  const inData = decodeEvent('{"specversion":"1.0","id":"1","source":"/s","type":"t","data":{"__proto__":{"x":1}}}');
  assert.deepEqual(Object.keys(inData.data as object), ["__proto__"]);
  assert.equal(({} as Record<string, unknown>).x, undefined);
});
