import { test } from "node:test";
import assert from "node:assert/strict";
import { nextTick, parseScheduleExpression, ticksBetween } from "../../src/triggers/schedule-expression.ts";

const at = (iso: string) => Date.parse(iso);
const iso = (t: number | undefined) => (t === undefined ? undefined : new Date(t).toISOString());

test("schedules - cron with 5 fields in a time zone follows the zone's DST changes", () => {
  const expr = parseScheduleExpression({ cron: "0 2 * * *", timezone: "Europe/Berlin" });
  // Winter: 02:00 CET = 01:00Z. Summer: 02:00 CEST = 00:00Z.
  assert.equal(iso(nextTick(expr, at("2026-01-10T12:00:00Z"))), "2026-01-11T01:00:00.000Z");
  assert.equal(iso(nextTick(expr, at("2026-07-10T12:00:00Z"))), "2026-07-11T00:00:00.000Z");
  // 2026-03-29 02:00 does not exist in Berlin (clocks jump 02:00 -> 03:00).
  const spring = nextTick(expr, at("2026-03-28T12:00:00Z"));
  assert.ok(spring !== undefined && spring >= at("2026-03-29T00:00:00Z") && spring <= at("2026-03-30T00:00:00Z"), iso(spring));
});

test("schedules - cron with 6 fields has seconds first", () => {
  const expr = parseScheduleExpression({ cron: "*/10 * * * * *" });
  assert.equal(iso(nextTick(expr, at("2026-01-01T00:00:01Z"))), "2026-01-01T00:00:10.000Z");
});

test("schedules - rate ticks are aligned to the epoch, so every node agrees", () => {
  const expr = parseScheduleExpression({ rate: "rate(5 minutes)" });
  assert.equal(iso(nextTick(expr, at("2026-01-01T00:03:00Z"))), "2026-01-01T00:05:00.000Z");
  assert.equal(iso(nextTick(expr, at("2026-01-01T00:05:00Z"))), "2026-01-01T00:10:00.000Z");
  assert.deepEqual(ticksBetween(expr, at("2026-01-01T00:00:00Z"), at("2026-01-01T00:27:00Z")), {
    count: 5,
    latest: at("2026-01-01T00:25:00Z"),
  });
});

test("schedules - at fires once, in UTC, an offset or a time zone", () => {
  assert.equal(nextTick(parseScheduleExpression({ at: "at(2027-01-01T00:00:00Z)" }), at("2026-01-01T00:00:00Z")), at("2027-01-01T00:00:00Z"));
  assert.equal(nextTick(parseScheduleExpression({ at: "2027-01-01T00:00:00Z" }), at("2028-01-01T00:00:00Z")), undefined);
  const local = parseScheduleExpression({ at: "2027-07-01T09:00:00", timezone: "America/New_York" });
  assert.equal(local.kind === "at" && iso(local.at), "2027-07-01T13:00:00.000Z");
  const offset = parseScheduleExpression({ at: "2027-07-01T09:00:00+02:00" });
  assert.equal(offset.kind === "at" && iso(offset.at), "2027-07-01T07:00:00.000Z");
});

test("schedules - bad expressions name the key and how to write it", () => {
  assert.throws(() => parseScheduleExpression({ cron: "61 * * * *" }, "$.s"), { code: "E_CONFIG_INVALID", path: "$.s.cron" });
  assert.throws(() => parseScheduleExpression({ cron: "* * *" }, "$.s"), /has 3 fields/);
  assert.throws(() => parseScheduleExpression({ rate: "0 minutes" }), /positive whole number/);
  assert.throws(() => parseScheduleExpression({ rate: "5 minutes", cron: "* * * * *" }), /only one of cron, rate or at/);
  assert.throws(() => parseScheduleExpression({}), /needs one of cron, rate or at/);
});
