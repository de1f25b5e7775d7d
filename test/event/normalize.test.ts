import { test } from "node:test";
import assert from "node:assert/strict";
import { DEFAULT_MAX_EVENT_SIZE_BYTES, normalizeEvent } from "../../src/event/normalize.ts";
import { decodeEvent } from "../../src/event/codec.ts";
import { EventValidationError } from "../../src/event/validate.ts";
import { newEventId } from "../../src/event/ids.ts";

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

test("normalize - fills id (UUIDv7 carrying the clock) and time (RFC 3339 UTC) when absent", () => {
  const nowMs = Date.UTC(2025, 4, 6, 7, 8, 9, 123);
  const input = { specversion: "1.0", source: "/shop", type: "order.created", data: { n: 1 } };
  const { event, encoded, sizeBytes } = normalizeEvent(input, { now: () => nowMs });
  assert.match(event.id, UUID_V7);
  assert.equal(Number.parseInt(event.id.replaceAll("-", "").slice(0, 12), 16), nowMs);
  assert.equal(event.time, "2025-05-06T07:08:09.123Z");
  assert.deepEqual(decodeEvent(encoded), event);
  assert.equal(sizeBytes, Buffer.byteLength(encoded));
  assert.equal("id" in input, false, "the input is not modified");
});

test("normalize - null id and time count as absent; given ones are kept", () => {
  const a = normalizeEvent({ specversion: "1.0", source: "/s", type: "t", id: null, time: null });
  assert.match(a.event.id, UUID_V7);
  assert.ok(a.event.time);
  const b = normalizeEvent({ specversion: "1.0", source: "/s", type: "t", id: "mine", time: "2020-01-01T00:00:00Z" });
  assert.equal(b.event.id, "mine");
  assert.equal(b.event.time, "2020-01-01T00:00:00Z");
});

test("normalize - an invalid given id or time is rejected, not replaced", () => {
  assert.throws(() => normalizeEvent({ specversion: "1.0", source: "/s", type: "t", id: "" }), { attribute: "id", rule: "non-empty" });
  assert.throws(() => normalizeEvent({ specversion: "1.0", source: "/s", type: "t", time: "now" }), { attribute: "time", rule: "rfc3339" });
  assert.throws(() => normalizeEvent([]), { rule: "object" });
});

test("normalize - the size limit is measured on the UTF-8 encoding, default 256 KiB", () => {
  assert.equal(DEFAULT_MAX_EVENT_SIZE_BYTES, 262144);
  const shell = normalizeEvent({ specversion: "1.0", id: "x", source: "/s", type: "t", time: "2020-01-01T00:00:00Z", data: "" });
  const room = DEFAULT_MAX_EVENT_SIZE_BYTES - shell.sizeBytes;
  const fits = normalizeEvent({ ...shell.event, data: "a".repeat(room) });
  assert.equal(fits.sizeBytes, DEFAULT_MAX_EVENT_SIZE_BYTES);
  const err = (() => {
    try {
      normalizeEvent({ ...shell.event, data: "a".repeat(room + 1) });
    } catch (e) {
      return e;
    }
    return undefined;
  })();
  assert.ok(err instanceof EventValidationError);
  assert.equal(err.code, "E_EVENT_TOO_LARGE");
  assert.equal(err.rule, "max-size");
  // "é" is two bytes in UTF-8 but one UTF-16 unit: the limit counts bytes.
  const half = Math.floor(room / 2);
  assert.equal(normalizeEvent({ ...shell.event, data: "é".repeat(half) }).sizeBytes, shell.sizeBytes + half * 2);
  assert.throws(() => normalizeEvent({ ...shell.event, data: "é".repeat(half + 1) }), { code: "E_EVENT_TOO_LARGE" });
  assert.throws(() => normalizeEvent({ ...shell.event, data: "abc" }, { maxSizeBytes: shell.sizeBytes + 2 }), {
    code: "E_EVENT_TOO_LARGE",
  });
});

test("normalize - data nested deeper than the encoder can go is a typed error", () => {
  let deep: unknown = 1;
  for (let i = 0; i < 200_000; i++) deep = [deep];
  assert.throws(() => normalizeEvent({ specversion: "1.0", source: "/s", type: "t", data: deep }), {
    code: "E_EVENT_INVALID",
    rule: "encodable",
  });
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  assert.throws(() => normalizeEvent({ specversion: "1.0", source: "/s", type: "t", data: cyclic }), { rule: "encodable" });
});

test("ids - newEventId is a UUIDv7, unique and strictly increasing, also on a stuck or backward clock", () => {
  const ids: string[] = [];
  for (let i = 0; i < 20_000; i++) ids.push(newEventId());
  assert.equal(new Set(ids).size, ids.length);
  for (let i = 1; i < ids.length; i++) assert.ok((ids[i - 1] as string) < (ids[i] as string), `ids[${i}] not increasing`);
  for (const id of ids.slice(0, 10)) assert.match(id, UUID_V7);
  const stuck = [newEventId(1_000), newEventId(1_000), newEventId(999), newEventId(1_000)];
  for (let i = 1; i < stuck.length; i++) assert.ok((stuck[i - 1] as string) < (stuck[i] as string));
});
