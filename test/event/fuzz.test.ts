import { test } from "node:test";
import assert from "node:assert/strict";
import { validateCloudEvent, EventValidationError } from "../../src/event/validate.ts";
import { normalizeEvent } from "../../src/event/normalize.ts";
import { decodeEvent, encodeEvent } from "../../src/event/codec.ts";
import { SluiceError } from "../../src/errors.ts";
import { RandomJson, prng } from "../helpers/random-json.ts";
import { compileTransformer } from "../../src/pattern/transform.ts";

const SEED = Number(process.env.FUZZ_SEED ?? 20260101);
const ROUNDS = 4000;

function validEvent(r: RandomJson): Record<string, unknown> {
  const e: Record<string, unknown> = {
    specversion: "1.0",
    id: `id-${r.int(1e9)}`,
    source: r.pick(["/shop", "https://x.example/a?b#c", "urn:x:y", "svc"]),
    type: r.pick(["order.created", "a", "sluice.x"]),
  };
  if (r.rand() < 0.5) e.subject = "s";
  if (r.rand() < 0.5) e.time = "2024-01-01T00:00:00.5+01:00";
  if (r.rand() < 0.5) e.datacontenttype = "application/json";
  if (r.rand() < 0.3) e.dataschema = "https://s.example/v1";
  if (r.rand() < 0.5) e.ext = r.pick(["v", 1, true]);
  if (r.rand() < 0.5) e.data = r.value(3);
  else if (r.rand() < 0.3) e.data_base64 = "aGVsbG8=";
  return e;
}

function mutate(r: RandomJson, e: Record<string, unknown>): unknown {
  const out: Record<string, unknown> = { ...e };
  const n = 1 + r.int(3);
  for (let i = 0; i < n; i++) {
    const op = r.int(5);
    const keys = Object.keys(out);
    const k = keys.length > 0 ? r.pick(keys) : "id";
    if (op === 0) delete out[k];
    else if (op === 1) out[k] = r.value(2);
    else if (op === 2) Object.defineProperty(out, r.key(), { value: r.value(2), enumerable: true, configurable: true, writable: true });
    else if (op === 3 && typeof out[k] === "string") {
      const s = out[k] as string;
      const at = r.int(s.length + 1);
      out[k] = s.slice(0, at) + r.string() + s.slice(at + r.int(3));
    } else out[k] = r.pick([null, "", 0, [], {}, "1.0"]);
  }
  return r.rand() < 0.05 ? r.value(3) : out;
}

function typedOnly(what: string, input: unknown, fn: () => unknown): unknown {
  try {
    return fn();
  } catch (err) {
    if (!(err instanceof SluiceError)) {
      assert.fail(`${what} threw ${String(err)} for ${JSON.stringify(input)?.slice(0, 300)} (seed ${SEED})`);
    }
    return err;
  }
}

test("fuzz - validator, normalizer and codec only ever throw typed errors, and accepted events round-trip", () => {
  const r = new RandomJson(prng(SEED));
  let accepted = 0;
  let rejected = 0;
  for (let i = 0; i < ROUNDS; i++) {
    const input = i % 3 === 0 ? r.value(5) : mutate(r, validEvent(r));
    const v = typedOnly("validateCloudEvent", input, () => validateCloudEvent(input));
    if (v instanceof SluiceError) {
      assert.ok(v instanceof EventValidationError && v.code === "E_EVENT_INVALID" && v.path.startsWith("$"));
      rejected++;
    } else {
      accepted++;
      const text = encodeEvent(v as never);
      // JSON has no -0: compare with the JSON image of the accepted event.
      assert.deepEqual(decodeEvent(text), JSON.parse(JSON.stringify(v)));
    }
    typedOnly("normalizeEvent", input, () => normalizeEvent(input, { maxSizeBytes: 4096 }));
    let text: string | undefined;
    try {
      text = JSON.stringify(input);
    } catch {
      text = undefined;
    }
    if (text !== undefined) {
      typedOnly("decodeEvent", text, () => decodeEvent(text));
      // Truncated and spliced texts.
      const cut = text.slice(0, r.int(text.length + 1)) + r.string();
      typedOnly("decodeEvent", cut, () => decodeEvent(cut));
    }
  }
  // The generator must exercise both outcomes or the test proves little.
  assert.ok(accepted > ROUNDS / 10, `accepted ${accepted}`);
  assert.ok(rejected > ROUNDS / 10, `rejected ${rejected}`);
});

test("fuzz - huge strings, deep nesting and many keys give typed results", () => {
  const r = new RandomJson(prng(SEED + 1));
  const big = "x".repeat(5_000_000);
  const inputs: unknown[] = [
    { specversion: "1.0", id: big, source: "/s", type: "t" },
    { specversion: "1.0", id: "1", source: big, type: "t" },
    { specversion: "1.0", id: "1", source: "/s", type: "t", time: big },
    { specversion: "1.0", id: "1", source: "/s", type: "t", data_base64: "A".repeat(4_000_000) },
    { specversion: "1.0", id: "1", source: "/s", type: "t", data: r.deep(100_000) },
    r.deep(100_000),
    Object.fromEntries(Array.from({ length: 50_000 }, (_, i) => [`e${i}`, i])),
  ];
  for (const input of inputs) {
    typedOnly("validateCloudEvent", input, () => validateCloudEvent(input));
    const n = typedOnly("normalizeEvent", input, () => normalizeEvent(input));
    assert.ok(n instanceof SluiceError, "each of these is too large or too deep for the default limits");
  }
  const deepText = `${"[".repeat(200_000)}${"]".repeat(200_000)}`;
  typedOnly("decodeEvent", deepText, () => decodeEvent(deepText));
  const deepData = `{"specversion":"1.0","id":"1","source":"/s","type":"t","data":${deepText}}`;
  typedOnly("decodeEvent", deepData, () => decodeEvent(deepData));
});

function randomTemplate(r: RandomJson, names: string[]): string {
  const parts = ['{"a": ', "<", ">", '"', "[", "]", "{", "}", ",", ":", "\\", " ", "x", "1", "null", "<sluice.event>", "<sluice.event.data>"];
  for (const n of names) parts.push(`<${n}>`, `"<${n}>"`);
  let t = "";
  const n = 1 + r.int(12);
  for (let i = 0; i < n; i++) t += r.pick(parts);
  return r.rand() < 0.3 ? r.string() + t : t;
}

function randomPath(r: RandomJson): string {
  const parts = [".data", ".source", "[0]", "[*]", ".*", "['k']", '["x\\"y"]', ".", "[", "]", "'", "a", "$", "-", "[99]", ".items"];
  let p = r.rand() < 0.9 ? "$" : "";
  const n = r.int(6);
  for (let i = 0; i < n; i++) p += r.pick(parts);
  return p;
}

test("fuzz - the transformer compiler only throws TransformError, and compiled transformers never throw", () => {
  const r = new RandomJson(prng(SEED + 2));
  let compiled = 0;
  let rejected = 0;
  for (let i = 0; i < ROUNDS; i++) {
    let definition: unknown;
    if (i % 4 === 0) definition = r.value(4);
    else {
      const names = Array.from({ length: r.int(4) }, () => r.pick(["a", "b", "order-id", "x.y", "sluice.event", "bad name", ""]));
      const inputPaths: Record<string, unknown> = {};
      for (const n of names) inputPaths[n] = r.rand() < 0.95 ? randomPath(r) : r.value(1);
      definition = { inputPaths: r.rand() < 0.95 ? inputPaths : r.value(2), inputTemplate: r.rand() < 0.95 ? randomTemplate(r, names) : r.value(1) };
    }
    const t = typedOnly("compileTransformer", definition, () => compileTransformer(definition));
    if (t instanceof SluiceError) {
      assert.equal(t.code, "E_TRANSFORM_INVALID");
      assert.ok(t.path?.startsWith("$"));
      rejected++;
      continue;
    }
    compiled++;
    const transformer = t as ReturnType<typeof compileTransformer>;
    for (let k = 0; k < 3; k++) {
      const raw = validEvent(r);
      const event = validateCloudEvent(raw);
      const out = transformer.apply(event, { ruleName: "r", busName: "b", ingestedAt: 0 });
      if (transformer.mode === "text") assert.equal(typeof out, "string");
      else assert.doesNotThrow(() => JSON.stringify(out));
    }
  }
  assert.ok(compiled > ROUNDS / 20, `compiled ${compiled}`);
  assert.ok(rejected > ROUNDS / 10, `rejected ${rejected}`);
});
