import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { ErrorCode, SluiceError, httpStatus, isSluiceError, statusForCode } from "../src/errors.ts";

test("errors - every code is documented in docs/errors.md", () => {
  const doc = readFileSync(new URL("../docs/errors.md", import.meta.url), "utf8");
  const missing = Object.values(ErrorCode).filter((code) => !doc.includes(`\`${code}\``));
  assert.deepEqual(missing, []);
});

test("errors - SluiceError keeps code, path, retryable and cause, and serialises to JSON", () => {
  const cause = new Error("boom");
  const err = new SluiceError(ErrorCode.PatternInvalid, "bad operator", { path: "$.data.x", cause });
  assert.equal(err.code, "E_PATTERN_INVALID");
  assert.equal(err.path, "$.data.x");
  assert.equal(err.retryable, false);
  assert.equal(err.cause, cause);
  assert.ok(isSluiceError(err, ErrorCode.PatternInvalid));
  assert.ok(!isSluiceError(err, ErrorCode.EventInvalid));
  assert.deepEqual(JSON.parse(JSON.stringify(err)), {
    code: "E_PATTERN_INVALID",
    message: "bad operator",
    path: "$.data.x",
    retryable: false,
  });
});

test("errors - the HTTP column of docs/errors.md is the status the server answers with", () => {
  const doc = readFileSync(new URL("../docs/errors.md", import.meta.url), "utf8");
  for (const code of Object.values(ErrorCode)) {
    const row = doc.split("\n").find((l) => l.startsWith(`| \`${code}\` |`));
    assert.ok(row, `a row for ${code}`);
    assert.equal(Number(row.split("|").at(-2)?.trim()), httpStatus[code], code);
  }
  assert.equal(statusForCode("E_SOMETHING_ELSE"), 500);
});
