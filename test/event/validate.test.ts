import { test } from "node:test";
import assert from "node:assert/strict";
import { EventValidationError, validateCloudEvent } from "../../src/event/validate.ts";
import { isAbsoluteUri, isBase64, isMediaType, isRfc3339, isUriReference } from "../../src/event/grammar.ts";
import { SluiceError } from "../../src/errors.ts";

const base = () => ({ specversion: "1.0", id: "evt-1", source: "/shop/orders", type: "order.created" });

function rejects(input: unknown, attribute: string, rule: string, path?: string): EventValidationError {
  let caught: unknown;
  try {
    validateCloudEvent(input);
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof EventValidationError, `expected EventValidationError, got ${String(caught)}`);
  assert.ok(caught instanceof SluiceError);
  assert.equal(caught.code, "E_EVENT_INVALID");
  assert.equal(caught.attribute, attribute, caught.message);
  assert.equal(caught.rule, rule, caught.message);
  if (path !== undefined) assert.equal(caught.path, path);
  return caught;
}

test("validate - a minimal event passes and comes back as a clean copy", () => {
  const input = base();
  const out = validateCloudEvent(input);
  assert.deepEqual(out, input);
  assert.notEqual(out, input);
});

test("validate - every optional attribute, extensions and data are kept in canonical order", () => {
  const out = validateCloudEvent({
    data: { total: 5 },
    myext: "x",
    ...base(),
    subject: "order-1",
    time: "2024-02-29T23:59:60.123+05:30",
    datacontenttype: "application/json; charset=utf-8",
    dataschema: "https://schemas.example.com/order/v1",
    count: 42,
    flag: false,
  });
  assert.deepEqual(Object.keys(out), [
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "dataschema",
    "myext",
    "count",
    "flag",
    "data",
  ]);
  assert.deepEqual(out.data, { total: 5 });
});

test("validate - non-object inputs are rejected with rule object", () => {
  for (const input of [null, undefined, 1, "x", true, [], [base()], 0n]) rejects(input, "", "object", "$");
});

test("validate - required attributes: missing or null is 'required', wrong type and empty are named", () => {
  for (const attr of ["id", "source", "type", "specversion"]) {
    const missing: Record<string, unknown> = base();
    delete missing[attr];
    rejects(missing, attr, "required", `$.${attr}`);
    rejects({ ...base(), [attr]: null }, attr, "required");
  }
  for (const attr of ["id", "source", "type"]) {
    rejects({ ...base(), [attr]: "" }, attr, "non-empty");
    rejects({ ...base(), [attr]: 7 }, attr, "type");
    rejects({ ...base(), [attr]: ["a"] }, attr, "type");
    rejects({ ...base(), [attr]: { a: 1 } }, attr, "type");
    rejects({ ...base(), [attr]: true }, attr, "type");
  }
});

test("validate - specversion must be exactly the string 1.0", () => {
  rejects({ ...base(), specversion: "0.3" }, "specversion", "specversion");
  rejects({ ...base(), specversion: "1.0 " }, "specversion", "specversion");
  rejects({ ...base(), specversion: 1.0 }, "specversion", "type");
  rejects({ ...base(), specversion: 1 }, "specversion", "type");
});

test("validate - source is an RFC 3986 URI-reference", () => {
  for (const ok of [
    "/shop/orders",
    "https://example.com/a?b=c#d",
    "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66",
    "mailto:a@example.com",
    "order-service",
    "//host:8080/p",
    "http://[::1]:80/x",
    "http://user:pw@host/",
    "a%20b",
    "?q",
    "#frag",
    "./rel/../x",
  ]) {
    assert.equal(validateCloudEvent({ ...base(), source: ok }).source, ok, ok);
  }
  for (const bad of ["a b", "ünïcode", "a%2", "a%zz", "1http://x", ":x", "http://x/#a#b", "a[b]", "http://h:80x/", "/a\nb", "http://[::1/"]) {
    rejects({ ...base(), source: bad }, "source", "uri-reference");
  }
});

test("validate - subject is a non-empty string when present", () => {
  rejects({ ...base(), subject: "" }, "subject", "non-empty");
  rejects({ ...base(), subject: 5 }, "subject", "type");
  assert.equal(validateCloudEvent({ ...base(), subject: null }).subject, undefined);
});

test("validate - time is a strictly parsed RFC 3339 timestamp", () => {
  for (const ok of [
    "2024-01-31T10:00:00Z",
    "2024-01-31t10:00:00z",
    "2024-01-31T10:00:00.123456789Z",
    "2024-02-29T00:00:00+14:00",
    "2000-02-29T00:00:00-00:00",
    "1990-12-31T23:59:60Z",
  ]) {
    assert.equal(validateCloudEvent({ ...base(), time: ok }).time, ok, ok);
  }
  for (const bad of [
    "2024-01-31",
    "2024-01-31 10:00:00Z",
    "2024-01-31T10:00:00",
    "2024-13-01T00:00:00Z",
    "2024-00-01T00:00:00Z",
    "2023-02-29T00:00:00Z",
    "1900-02-29T00:00:00Z",
    "2024-04-31T00:00:00Z",
    "2024-01-31T24:00:00Z",
    "2024-01-31T10:60:00Z",
    "2024-01-31T10:00:61Z",
    "2024-01-31T10:00:00+24:00",
    "2024-01-31T10:00:00+0100",
    "2024-01-31T10:00:00.Z",
    "24-01-31T10:00:00Z",
    "2024-01-31T10:00:00Z ",
    "2024-01-31T10:00:00\uff10Z",
    `2024-01-31T10:00:00.${"1".repeat(100)}Z`,
    "yesterday",
  ]) {
    rejects({ ...base(), time: bad }, "time", "rfc3339", "$.time");
  }
  rejects({ ...base(), time: 1700000000000 }, "time", "type");
  rejects({ ...base(), time: "" }, "time", "non-empty");
});

test("validate - datacontenttype is an RFC 2046 media type", () => {
  for (const ok of [
    "application/json",
    "text/plain; charset=utf-8",
    "text/plain;charset=\"utf-8\"",
    "application/vnd.api+json",
    "multipart/form-data; boundary=\"a b\\\"c\"",
  ]) {
    assert.equal(validateCloudEvent({ ...base(), datacontenttype: ok }).datacontenttype, ok);
  }
  for (const bad of ["json", "application/", "/json", "text/plain;", "text/plain; charset", "a b/c", "text/plain; x=\"unterminated", "application/json, text/plain"]) {
    rejects({ ...base(), datacontenttype: bad }, "datacontenttype", "media-type");
  }
});

test("validate - dataschema is an absolute URI", () => {
  assert.equal(validateCloudEvent({ ...base(), dataschema: "https://x.example/s.json" }).dataschema, "https://x.example/s.json");
  assert.equal(validateCloudEvent({ ...base(), dataschema: "urn:schema:order" }).dataschema, "urn:schema:order");
  for (const bad of ["/relative/schema", "schema.json", "https://x/s.json#frag", "https://x/a b"]) {
    rejects({ ...base(), dataschema: bad }, "dataschema", "uri");
  }
  rejects({ ...base(), dataschema: "" }, "dataschema", "non-empty");
});

test("validate - extension names are 1 to 20 lower-case letters or digits", () => {
  assert.equal(validateCloudEvent({ ...base(), a1234567890123456789: "x" }).a1234567890123456789, "x");
  assert.equal(validateCloudEvent({ ...base(), "0": "digits only" })["0"], "digits only");
  for (const bad of ["Upper", "with_underscore", "dash-ed", "a".repeat(21), "ünï", "with space", "__proto__", "constructor1!"]) {
    const err = rejects(JSON.parse(`{"specversion":"1.0","id":"1","source":"/s","type":"t",${JSON.stringify(bad)}:"v"}`), bad, "extension-name");
    assert.ok(err.path.startsWith("$"));
  }
  rejects({ ...base(), "": "v" }, "", "extension-name");
  rejects({ ...base(), "Bad Name": 1 }, "Bad Name", "extension-name", '$["Bad Name"]');
});

test("validate - extension values follow the CloudEvents type system", () => {
  const out = validateCloudEvent({ ...base(), s: "x", i: -2147483648, j: 2147483647, b: true, n: null });
  assert.deepEqual([out.s, out.i, out.j, out.b, "n" in out], ["x", -2147483648, 2147483647, true, false]);
  rejects({ ...base(), f: 1.5 }, "f", "extension-value", "$.f");
  rejects({ ...base(), f: 2147483648 }, "f", "integer-range");
  rejects({ ...base(), f: -2147483649 }, "f", "integer-range");
  rejects({ ...base(), f: Number.NaN }, "f", "extension-value");
  rejects({ ...base(), f: [1] }, "f", "extension-value");
  rejects({ ...base(), f: { a: 1 } }, "f", "extension-value");
});

test("validate - data and data_base64 are mutually exclusive and data_base64 must be base64", () => {
  rejects({ ...base(), data: { a: 1 }, data_base64: "AAAA" }, "data_base64", "data-exclusive", "$.data_base64");
  rejects({ ...base(), data: "", data_base64: "AAAA" }, "data_base64", "data-exclusive");
  rejects({ ...base(), data_base64: "not base64!" }, "data_base64", "base64");
  rejects({ ...base(), data_base64: "AAA" }, "data_base64", "base64");
  rejects({ ...base(), data_base64: "A===" }, "data_base64", "base64");
  rejects({ ...base(), data_base64: "AA=A" }, "data_base64", "base64");
  rejects({ ...base(), data_base64: 12 }, "data_base64", "type");
  assert.equal(validateCloudEvent({ ...base(), data_base64: "aGVsbG8=" }).data_base64, "aGVsbG8=");
  assert.equal(validateCloudEvent({ ...base(), data_base64: "" }).data_base64, "");
  // data: null alongside data_base64 is the JSON format's "absent".
  const both = validateCloudEvent({ ...base(), data: null, data_base64: "aGk=" });
  assert.equal("data" in both, false);
  // data: null alone is a JSON null payload.
  const nul = validateCloudEvent({ ...base(), data: null });
  assert.equal("data" in nul, true);
  assert.equal(nul.data, null);
});

test("validate - binary data given as a Buffer becomes data_base64", () => {
  const out = validateCloudEvent({ ...base(), data: Buffer.from("hello") });
  assert.equal(out.data_base64, "aGVsbG8=");
  assert.equal("data" in out, false);
  const view = new Uint8Array([0, 1, 2, 3, 4, 5]).subarray(2, 4);
  assert.equal(validateCloudEvent({ ...base(), data: view }).data_base64, Buffer.from([2, 3]).toString("base64"));
});

test("validate - data that JSON cannot hold is rejected", () => {
  rejects({ ...base(), data: () => 1 }, "data", "encodable");
  rejects({ ...base(), data: 10n }, "data", "encodable");
  rejects({ ...base(), data: Symbol("x") }, "data", "encodable");
});

test("validate - the error serialises with attribute and rule", () => {
  const err = rejects({ ...base(), time: "x" }, "time", "rfc3339");
  assert.deepEqual(JSON.parse(JSON.stringify(err)), {
    code: "E_EVENT_INVALID",
    message: err.message,
    path: "$.time",
    retryable: false,
    attribute: "time",
    rule: "rfc3339",
  });
  assert.match(err.message, /time/);
});

test("validate - inherited properties are not attributes", () => {
  const proto = { id: "inherited" };
  const obj = Object.assign(Object.create(proto) as object, { specversion: "1.0", source: "/s", type: "t" });
  rejects(obj, "id", "required");
});

test("grammar - recognisers agree with their RFCs on corner cases", () => {
  assert.equal(isUriReference(""), true);
  assert.equal(isAbsoluteUri(""), false);
  assert.equal(isAbsoluteUri("a+b-c.d:x"), true);
  assert.equal(isAbsoluteUri("http://[v1.fe]/"), true);
  assert.equal(isAbsoluteUri("http://[]/"), false);
  assert.equal(isRfc3339("2024-01-31T10:00:00.5-23:59"), true);
  assert.equal(isMediaType("a/b ; c=d"), true);
  assert.equal(isBase64("===="), false);
  assert.equal(isBase64("YQ=="), true);
});
