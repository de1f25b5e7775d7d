import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { once } from "node:events";
import type { AddressInfo } from "node:net";
import { CloudEvent as SdkEvent, HTTP } from "cloudevents";
import {
  parseHttpEvents,
  percentEncodeHeader,
  toHttpBatch,
  toHttpBinary,
  toHttpStructured,
  type HttpMessage,
  type ParsedHttpEvents,
} from "../../src/event/http.ts";
import type { CloudEvent } from "../../src/event/types.ts";
import { SluiceError } from "../../src/errors.ts";

// One real HTTP server on port 0: /sluice parses with our binding, /sdk with the official SDK's.
let server: Server;
let base: string;

before(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      res.setHeader("content-type", "application/json");
      try {
        if (req.url === "/sdk") {
          const contentType = req.headers["content-type"] ?? "";
          const sdkBody = contentType.startsWith("application/octet-stream") ? body : body.toString("utf8");
          const parsed = HTTP.toEvent({ headers: req.headers, body: sdkBody });
          const events = (Array.isArray(parsed) ? parsed : [parsed]).map((e) => JSON.parse(JSON.stringify(e)) as unknown);
          res.end(JSON.stringify({ events }));
          return;
        }
        const parsed = parseHttpEvents({ headers: req.headers, body });
        res.end(
          JSON.stringify({
            mode: parsed.mode,
            results: parsed.results.map((r) => (r.ok ? { ok: true, event: r.event } : { ok: false, error: r.error.toJSON() })),
          }),
        );
      } catch (err) {
        res.statusCode = 400;
        res.end(JSON.stringify({ thrown: err instanceof SluiceError ? err.toJSON() : String(err) }));
      }
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(() => {
  server.close();
});

type Results = { mode: ParsedHttpEvents["mode"]; results: Array<{ ok: boolean; event?: CloudEvent; error?: Record<string, unknown> }> };

async function post(path: string, message: { headers: Record<string, unknown>; body: unknown }): Promise<unknown> {
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(message.headers)) headers[k] = String(v);
  const body = message.body;
  const res = await fetch(`${base}${path}`, {
    method: "POST",
    headers,
    body: typeof body === "string" ? body : (body as Uint8Array),
  });
  return res.json();
}

const toSluice = (m: { headers: Record<string, unknown>; body: unknown }) => post("/sluice", m) as Promise<Results>;
const toSdk = async (m: HttpMessage) => ((await post("/sdk", m)) as { events: Array<Record<string, unknown>> }).events;

const common = {
  specversion: "1.0",
  id: "sdk-1",
  source: "https://shop.example/orders",
  type: "order.created",
  time: "2024-05-01T12:00:00.000Z",
  subject: "order-7",
  dataschema: "https://schemas.example/order/v1",
  partitionkey: "customer-3",
  correlationid: "c-1",
};

function sdkEvent(props: Record<string, unknown>): SdkEvent<unknown> {
  return new SdkEvent({ ...common, ...props });
}

test("http binding - SDK binary mode with JSON data parses to the same event", async () => {
  const message = HTTP.binary(sdkEvent({ datacontenttype: "application/json", data: { total: 12.5, items: ["a", "b"] } }));
  const out = await toSluice(message);
  assert.equal(out.mode, "binary");
  assert.deepEqual(out.results, [
    { ok: true, event: { ...common, datacontenttype: "application/json", data: { total: 12.5, items: ["a", "b"] } } },
  ]);
});

test("http binding - SDK binary mode with text data gives a data string", async () => {
  const message = HTTP.binary(sdkEvent({ datacontenttype: "text/plain", data: "hello, world" }));
  const out = await toSluice(message);
  assert.deepEqual(out.results[0]?.event, { ...common, datacontenttype: "text/plain", data: "hello, world" });
});

test("http binding - SDK binary mode with bytes gives data_base64", async () => {
  const bytes = Buffer.from([0, 1, 2, 250, 251, 255]);
  const message = HTTP.binary(sdkEvent({ datacontenttype: "application/octet-stream", data: bytes }));
  const out = await toSluice(message);
  assert.deepEqual(out.results[0]?.event, { ...common, datacontenttype: "application/octet-stream", data_base64: bytes.toString("base64") });
});

test("http binding - SDK structured mode, with JSON and with binary data", async () => {
  const json = await toSluice(HTTP.structured(sdkEvent({ datacontenttype: "application/json", data: { a: [1, { b: null }] } })));
  assert.equal(json.mode, "structured");
  assert.deepEqual(json.results[0]?.event, { ...common, datacontenttype: "application/json", data: { a: [1, { b: null }] } });
  const bytes = Buffer.from("binary\u0000payload");
  const bin = await toSluice(HTTP.structured(sdkEvent({ datacontenttype: "application/octet-stream", data: bytes })));
  assert.deepEqual(bin.results[0]?.event, { ...common, datacontenttype: "application/octet-stream", data_base64: bytes.toString("base64") });
});

test("http binding - a batch of SDK events gives one result per entry, the invalid ones named by index", async () => {
  const good1 = sdkEvent({ id: "b1", data: { n: 1 } });
  const good2 = sdkEvent({ id: "b2", datacontenttype: "text/plain", data: "two" });
  const entries = [JSON.parse(JSON.stringify(good1)), { ...JSON.parse(JSON.stringify(good2)), source: "not a uri" }, JSON.parse(JSON.stringify(good2))];
  const out = await toSluice({ headers: { "content-type": "application/cloudevents-batch+json; charset=utf-8" }, body: JSON.stringify(entries) });
  assert.equal(out.mode, "batch");
  assert.equal(out.results.length, 3);
  assert.deepEqual(out.results[0]?.event, { ...common, id: "b1", data: { n: 1 } });
  assert.equal(out.results[1]?.ok, false);
  assert.deepEqual(out.results[1]?.error, {
    code: "E_EVENT_INVALID",
    message: out.results[1]?.error?.message,
    path: "$[1].source",
    retryable: false,
    attribute: "source",
    rule: "uri-reference",
  });
  assert.deepEqual(out.results[2]?.event, { ...common, id: "b2", datacontenttype: "text/plain", data: "two" });
});

const ours: CloudEvent = {
  specversion: "1.0",
  id: "s-1",
  source: "/sluice/test",
  type: "order.shipped",
  subject: "order-9",
  time: "2024-06-01T08:00:00.000Z",
  datacontenttype: "application/json",
  partitionkey: "k1",
  data: { shipped: true, carrier: "post" },
};

test("http binding - our binary and structured messages are read by the SDK", async () => {
  const { datacontenttype: _ct, data: _data, ...attrs } = ours;
  for (const message of [toHttpBinary(ours), toHttpStructured(ours)]) {
    const [event] = await toSdk(message);
    assert.deepEqual(event, { ...attrs, datacontenttype: "application/json", data: { shipped: true, carrier: "post" } });
  }
  const bytes = Buffer.from([9, 8, 7, 0, 255]);
  const binary: CloudEvent = { ...attrs, datacontenttype: "application/octet-stream", data_base64: bytes.toString("base64") };
  const [fromBinary] = await toSdk(toHttpBinary(binary));
  assert.deepEqual(fromBinary, { ...attrs, datacontenttype: "application/octet-stream", data_base64: bytes.toString("base64") });
  const [fromStructured] = await toSdk(toHttpStructured(binary));
  assert.deepEqual(fromStructured, { ...attrs, datacontenttype: "application/octet-stream", data_base64: bytes.toString("base64") });
});

test("http binding - our batch is read by the SDK", async () => {
  const events = await toSdk(toHttpBatch([ours, { ...ours, id: "s-2" }]));
  assert.deepEqual(
    events.map((e) => e.id),
    ["s-1", "s-2"],
  );
});

test("http binding - our messages parse back to the same event in all three modes", async () => {
  const text: CloudEvent = { ...ours, datacontenttype: "text/plain; charset=utf-8", data: "plain ✓ text" };
  const bin: CloudEvent = { specversion: "1.0", id: "b", source: "/s", type: "t", time: "2024-01-01T00:00:00Z", data_base64: Buffer.from([1, 2, 3]).toString("base64") };
  for (const event of [ours, text, bin]) {
    for (const message of [toHttpBinary(event), toHttpStructured(event)]) {
      const out = await toSluice(message);
      assert.deepEqual(out.results, [{ ok: true, event }]);
    }
  }
  const out = await toSluice(toHttpBatch([ours, text, bin]));
  assert.deepEqual(
    out.results.map((r) => r.event),
    [ours, text, bin],
  );
  // No datacontenttype: the JSON format implies application/json, which binary mode states explicitly.
  const { datacontenttype: _ct, ...implicit } = ours;
  const back = await toSluice(toHttpBinary(implicit as CloudEvent));
  assert.deepEqual(back.results[0]?.event, { ...implicit, datacontenttype: "application/json" });
});

test("http binding - header values are percent-encoded on the way out and decoded on the way in", async () => {
  const subject = 'Euro € 😀 "quoted" 100% \t tab';
  assert.equal(percentEncodeHeader("Euro € 😀"), "Euro%20%E2%82%AC%20%F0%9F%98%80");
  const event: CloudEvent = { ...ours, subject, note: "ü" };
  const message = toHttpBinary(event);
  for (const v of Object.values(message.headers)) assert.match(v, /^[\x21-\x7e]*$/);
  const out = await toSluice(message);
  assert.deepEqual(out.results[0]?.event, event);
  const decoded = parseHttpEvents({
    headers: { "ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "t", "ce-subject": "Euro%20%E2%82%AC%20%F0%9F%98%80" },
    body: Buffer.alloc(0),
  });
  assert.equal(decoded.results[0]?.ok && decoded.results[0].event.subject, "Euro € 😀");
});

test("http binding - invalid percent-encoding (overlong, truncated, bad hex) is rejected with the attribute named", () => {
  for (const bad of ["%C0%A0", "%E2%82", "%zz", "100%"]) {
    const { results } = parseHttpEvents({
      headers: { "ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "t", "ce-subject": bad },
      body: Buffer.alloc(0),
    });
    assert.equal(results[0]?.ok, false);
    assert.equal(!results[0]?.ok && results[0]?.error.attribute, "subject");
    assert.equal(!results[0]?.ok && results[0]?.error.rule, "percent-encoding");
  }
});

test("http binding - quoted-string header values are unescaped before percent-decoding", () => {
  const { results } = parseHttpEvents({
    headers: { "CE-SpecVersion": "1.0", "Ce-Id": '"a\\"b"', "ce-source": "/s", "ce-type": "t" },
    body: Buffer.alloc(0),
  });
  assert.equal(results[0]?.ok && results[0].event.id, 'a"b');
});

test("http binding - binary mode: bad JSON body, invalid UTF-8 text, data headers and missing attributes", () => {
  const headers = { "ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "t" };
  const badJson = parseHttpEvents({ headers: { ...headers, "content-type": "application/json" }, body: Buffer.from("{nope") });
  assert.equal(!badJson.results[0]?.ok && badJson.results[0]?.error.rule, "data-decode");
  const latin = parseHttpEvents({ headers: { ...headers, "content-type": "text/plain" }, body: Buffer.from([0xff, 0xfe, 0x41]) });
  assert.equal(latin.results[0]?.ok && latin.results[0].event.data_base64, Buffer.from([0xff, 0xfe, 0x41]).toString("base64"));
  const latin1 = parseHttpEvents({ headers: { ...headers, "content-type": "text/plain; charset=iso-8859-1" }, body: Buffer.from([0xe9]) });
  assert.equal(latin1.results[0]?.ok && latin1.results[0].event.data, "é");
  const vendorJson = parseHttpEvents({ headers: { ...headers, "content-type": "application/vnd.x+json" }, body: Buffer.from("[1]") });
  assert.deepEqual(vendorJson.results[0]?.ok && vendorJson.results[0].event.data, [1]);
  const dataHeader = parseHttpEvents({ headers: { ...headers, "ce-data": "x" }, body: Buffer.alloc(0) });
  assert.equal(!dataHeader.results[0]?.ok && dataHeader.results[0]?.error.attribute, "data");
  const none = parseHttpEvents({ headers: {}, body: Buffer.from("x") });
  assert.equal(!none.results[0]?.ok && none.results[0]?.error.attribute, "specversion");
  const noId = parseHttpEvents({ headers: { "ce-specversion": "1.0", "ce-source": "/s", "ce-type": "t" }, body: Buffer.alloc(0) });
  assert.ok(noId.results[0]?.ok && noId.results[0].event.id.length === 36, "a missing ce-id gets a generated id");
});

test("http binding - unreadable requests throw typed errors", () => {
  const cases: Array<[string, Buffer, string]> = [
    ["application/cloudevents+json", Buffer.from("{"), "E_JSON_INVALID"],
    ["application/cloudevents-batch+json", Buffer.from("[1,"), "E_JSON_INVALID"],
    ["application/cloudevents-batch+json", Buffer.from("{}"), "E_BAD_REQUEST"],
    ["application/cloudevents+xml", Buffer.from("<e/>"), "E_BAD_REQUEST"],
    ["application/cloudevents+json", Buffer.from([0xff]), "E_BAD_REQUEST"],
  ];
  for (const [contentType, body, code] of cases) {
    assert.throws(() => parseHttpEvents({ headers: { "content-type": contentType }, body }), { code }, contentType);
  }
  const notObject = parseHttpEvents({ headers: {}, contentType: "application/cloudevents+json", body: Buffer.from("[]") });
  assert.equal(!notObject.results[0]?.ok && notObject.results[0]?.error.rule, "object");
});

test("http binding - the size limit applies per entry", () => {
  const big = { specversion: "1.0", id: "1", source: "/s", type: "t", data: "x".repeat(2000) };
  const small = { ...big, id: "2", data: "x" };
  const { results } = parseHttpEvents(
    { headers: { "content-type": "application/cloudevents-batch+json" }, body: Buffer.from(JSON.stringify([big, small])) },
    { maxSizeBytes: 1000 },
  );
  assert.equal(!results[0]?.ok && results[0]?.error.code, "E_EVENT_TOO_LARGE");
  assert.equal(!results[0]?.ok && results[0]?.error.path, "$[0]");
  assert.equal(results[1]?.ok, true);
});

test("http binding - binary mode keeps extensions as strings except Sluice's integer hop count", () => {
  const { results } = parseHttpEvents({
    headers: { "ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "t", "ce-sluicehops": "3", "ce-count": "7" },
    body: Buffer.alloc(0),
  });
  assert.equal(results[0]?.ok && results[0].event.sluicehops, 3);
  assert.equal(results[0]?.ok && results[0].event.count, "7");
  const big = parseHttpEvents({
    headers: { "ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "t", "ce-sluicehops": "99999999999" },
    body: Buffer.alloc(0),
  });
  assert.equal(big.results[0]?.ok && big.results[0].event.sluicehops, "99999999999");
});

test("parseHttpEvents - a batch of more than 100 events is refused whole, before any entry is checked", () => {
  const body = (n: number) => Buffer.from(JSON.stringify(Array.from({ length: n }, (_, i) => ({ specversion: "1.0", id: `e${i}`, source: "/t", type: "t" }))));
  const headers = { "content-type": "application/cloudevents-batch+json" };
  assert.equal(parseHttpEvents({ headers, body: body(100) }).results.length, 100);
  assert.throws(() => parseHttpEvents({ headers, body: body(101) }), { code: "E_BAD_REQUEST", path: "$", message: /at most 100 events, got 101/ });
  assert.throws(() => parseHttpEvents({ headers, body: Buffer.from(`[${Array(300_000).fill("{}").join(",")}]`) }), { code: "E_BAD_REQUEST", message: /got 300000/ });
});
