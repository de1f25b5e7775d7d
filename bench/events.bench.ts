/**
 * Event model hot path: validation, normalization (defaults + validation + the one encode + size check),
 * decoding, the HTTP binding and input transformers, per event, next to baselines measured in the same run:
 * `JSON.stringify` of the same event (the encode every publish pays anyway) and the official cloudevents SDK's
 * constructor (its schema validation).
 *
 * Run: npm run bench -- events
 */
import { CloudEvent as SdkEvent } from "cloudevents";
import { validateCloudEvent } from "../src/event/validate.ts";
import { normalizeEvent } from "../src/event/normalize.ts";
import { decodeEvent, encodeEvent } from "../src/event/codec.ts";
import { parseHttpEvents, toHttpBinary } from "../src/event/http.ts";
import { compileTransformer } from "../src/pattern/transform.ts";
import type { CloudEvent } from "../src/event/types.ts";

const event: CloudEvent = {
  specversion: "1.0",
  id: "0193a1c2-7f00-7abc-8def-0123456789ab",
  source: "https://shop.example.com/orders",
  type: "order.created",
  subject: "order-12345",
  time: "2024-05-01T12:00:00.123Z",
  datacontenttype: "application/json",
  dataschema: "https://schemas.example.com/order/v1",
  partitionkey: "customer-42",
  correlationid: "c0ffee00-1111-2222-3333-444455556666",
  data: {
    orderId: "order-12345",
    customer: { id: "customer-42", tier: "gold", email: "someone@example.com" },
    items: Array.from({ length: 5 }, (_, i) => ({ sku: `sku-${i}`, qty: i + 1, price: 9.99 + i })),
    total: 123.45,
    currency: "EUR",
    shipping: { method: "express", address: { city: "Lyon", country: "FR" } },
  },
};
const { id: _id, time: _time, ...withoutDefaults } = event;
const encoded = encodeEvent(event);
const binary = toHttpBinary(event);
const transformer = compileTransformer({
  inputPaths: { order: "$.data.orderId", total: "$.data.total", city: "$.data.shipping.address.city" },
  inputTemplate: '{"orderId": <order>, "summary": "order <order> for <total> to <city>", "attrs": <sluice.event.attributes>}',
});

let sink: unknown;
function measure(fn: () => unknown): number {
  for (let i = 0; i < 2000; i++) sink = fn();
  let ops = 0;
  const start = process.hrtime.bigint();
  const budget = 250_000_000n;
  let elapsed = 0n;
  while (elapsed < budget) {
    for (let i = 0; i < 500; i++) sink = fn();
    ops += 500;
    elapsed = process.hrtime.bigint() - start;
  }
  return ops / (Number(elapsed) / 1e9);
}

const rows: Array<[string, () => unknown]> = [
  ["baseline: JSON.stringify(event)", () => JSON.stringify(event)],
  ["baseline: cloudevents SDK new CloudEvent(event)", () => new SdkEvent(event)],
  ["validateCloudEvent", () => validateCloudEvent(event)],
  ["normalizeEvent (id + time defaults, validate, encode, size)", () => normalizeEvent(withoutDefaults)],
  ["normalizeEvent (attributes given)", () => normalizeEvent(event)],
  ["decodeEvent (parse + validate)", () => decodeEvent(encoded)],
  ["parseHttpEvents binary mode (headers + JSON body)", () => parseHttpEvents({ headers: binary.headers, body: binary.body })],
  ["transformer apply (3 paths, JSON template)", () => transformer.apply(event)],
];

// Three interleaved rounds, best of each: the machine is shared, and the best run is the least disturbed.
const best = new Map<string, number>();
for (let round = 0; round < 3; round++) {
  for (const [name, fn] of rows) best.set(name, Math.max(best.get(name) ?? 0, measure(fn)));
}
const results = rows.map(([name]) => [name, best.get(name) as number] as const);
const base = results[0]?.[1] as number;
const sdk = results[1]?.[1] as number;
console.log(`event: ${Buffer.byteLength(encoded)} bytes encoded; node ${process.version}\n`);
console.log("| operation | ops/s | vs JSON.stringify | vs SDK constructor |");
console.log("|---|---:|---:|---:|");
for (const [name, ops] of results) {
  console.log(`| ${name} | ${Math.round(ops).toLocaleString("en-US")} | ${(ops / base).toFixed(2)}x | ${(ops / sdk).toFixed(2)}x |`);
}
if (sink === Symbol.for("never")) console.log("");
