/**
 * EventBridge-style input transformers: pick values out of an event with `inputPaths` and place them into an
 * `inputTemplate`, giving the payload a rule's target receives instead of the event.
 *
 * ## Semantics (EventBridge's, with the differences marked)
 * - `inputPaths` maps up to 100 names to JSONPath-like paths into the CloudEvent's JSON form:
 *   `$` (the whole event), `$.data.order.id`, `$.source`, `$.data.items[0]`, `$.data['odd key']`, and the
 *   wildcards `$.data.items[*].sku` / `$.data.*` (a path with a wildcard gives the array of every match).
 *   A path that matches nothing gives `null`.
 * - `inputTemplate` is either JSON or text:
 *   - JSON when, trimmed, it starts with `{` or `[` (it must then be valid JSON once placeholders are filled),
 *     when it is a single JSON string (`"<id> is <state>"`), or when it is a lone placeholder (`<sluice.event.data>`).
 *     `apply` returns a JSON value. A placeholder outside a JSON string is replaced by the value itself (an
 *     object, array, number, string, boolean or null); inside a JSON string it is replaced by the value's text,
 *     escaped, so the result is always valid JSON (EventBridge does not escape; Sluice does). Placeholders cannot
 *     be object keys.
 *   - Text otherwise: `apply` returns a string, with each placeholder replaced by the value's text.
 *   - A value's text: a string as is; a number, boolean, object or array as JSON; `null` (or a missing path) as
 *     the empty string (EventBridge strips the quotes inside objects; Sluice writes proper JSON).
 * - `<` and `>` cannot be escaped: `<name>` (name of letters, digits, `_`, `-`, `.`) is always a placeholder, and
 *   an unknown name is an error when the transformer is compiled.
 *
 * ## Reserved placeholders (EventBridge's `aws.events.*` counterparts)
 * Names starting with `sluice.` are reserved; an `inputPaths` entry cannot use them.
 * - `<sluice.event>`: the whole event (attributes, extensions and data) as JSON (EventBridge: `aws.events.event.json`).
 * - `<sluice.event.attributes>`: the event without `data`/`data_base64` (EventBridge: `aws.events.event`).
 * - `<sluice.event.data>`: the event's `data` (or its `data_base64` string; null when it has none).
 * - `<sluice.event.json>`: the event encoded as one JSON string (text, so it can travel inside a string).
 * - `<sluice.event.ingestion-time>`: when the bus received the event (RFC 3339), from the apply context.
 * - `<sluice.rule-name>`, `<sluice.bus-name>`: the rule and bus that routed the event, from the apply context.
 *
 * Compile errors are {@link TransformError} (`E_TRANSFORM_INVALID`) with the JSON path of the offending part:
 * `$.inputPaths.orderId`, `$.inputTemplate`.
 *
 * @example
 * ```ts
 * const t = compileTransformer({
 *   inputPaths: { order: "$.data.order.id", total: "$.data.total" },
 *   inputTemplate: '{"orderId": <order>, "summary": "order <order> costs <total>", "event": <sluice.event.attributes>}',
 * });
 * t.apply(event); // { orderId: "o-1", summary: "order o-1 costs 12.5", event: { specversion: "1.0", ... } }
 * ```
 */
import { ErrorCode, SluiceError } from "../errors.ts";
import type { CloudEvent } from "../event/types.ts";
import { isObject } from "../util/validate.ts";

/** An input transformer as a rule target declares it. */
export interface TransformerDefinition {
  /** Names → paths into the event (at most 100). */
  inputPaths?: Record<string, string>;
  /** A JSON template or text with `<name>` placeholders (at most 8192 characters). */
  inputTemplate: string;
}

/** What the bus knows when it applies a transformer, for the reserved placeholders. */
export interface TransformContext {
  ruleName?: string;
  busName?: string;
  /** When the bus received the event, epoch ms. */
  ingestedAt?: number;
}

export interface CompiledTransformer {
  /** `json`: `apply` returns a JSON value; `text`: it returns a string. */
  readonly mode: "json" | "text";
  /**
   * The transformed payload for one event. Never throws for a CloudEvent. The result may share sub-values
   * with the event (e.g. `<sluice.event.data>`): treat it as read-only or encode it.
   */
  apply(event: CloudEvent, context?: TransformContext): unknown;
}

/** An input transformer is malformed; `path` names the part (`$.inputPaths.orderId`, `$.inputTemplate`). */
export class TransformError extends SluiceError {
  override readonly name: string = "TransformError";
  constructor(message: string, path: string, options: { cause?: unknown } = {}) {
    super(ErrorCode.TransformInvalid, message, { path, ...options });
  }
}

export const MAX_INPUT_PATHS = 100;
export const MAX_TEMPLATE_LENGTH = 8192;
const MAX_PATH_LENGTH = 1024;
const MAX_TEMPLATE_DEPTH = 100;

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;
const NAME = /^[A-Za-z0-9_.-]{1,256}$/;

function memberPath(base: string, key: string): string {
  return IDENTIFIER.test(key) ? `${base}.${key}` : `${base}[${JSON.stringify(key)}]`;
}

// ---------- paths ----------

/** A compiled path step: a property name, an array index, or a wildcard (every member or element). */
type Step = { key: string } | { index: number } | { wildcard: true };

const NAME_CHAR_STOP = new Set([".", "[", "]", " ", "\t", "\n", "\r", "'", '"']);

/** Parses `$`, `$.a.b`, `$.a[0]`, `$['k']`, `$.a[*]`, `$.*`. Throws a message on bad syntax. */
function parsePath(path: string): Step[] {
  if (path.length > MAX_PATH_LENGTH) throw new Error(`longer than ${MAX_PATH_LENGTH} characters`);
  if (path[0] !== "$") throw new Error('must start with "$"');
  const steps: Step[] = [];
  let i = 1;
  while (i < path.length) {
    const c = path[i];
    if (c === ".") {
      i++;
      if (path[i] === "*") {
        steps.push({ wildcard: true });
        i++;
        continue;
      }
      const start = i;
      while (i < path.length && !NAME_CHAR_STOP.has(path[i] as string)) i++;
      if (i === start) throw new Error(`expected a name at offset ${start}`);
      steps.push({ key: path.slice(start, i) });
    } else if (c === "[") {
      i++;
      const q = path[i];
      if (q === "*") {
        if (path[i + 1] !== "]") throw new Error(`expected "]" at offset ${i + 1}`);
        steps.push({ wildcard: true });
        i += 2;
      } else if (q === "'" || q === '"') {
        let key = "";
        i++;
        for (;;) {
          if (i >= path.length) throw new Error("unterminated quoted name");
          const ch = path[i] as string;
          if (ch === q) break;
          if (ch === "\\" && i + 1 < path.length) {
            key += path[i + 1];
            i += 2;
          } else {
            key += ch;
            i++;
          }
        }
        if (path[i + 1] !== "]") throw new Error(`expected "]" at offset ${i + 1}`);
        steps.push({ key });
        i += 2;
      } else {
        const start = i;
        while (i < path.length && path.charCodeAt(i) >= 0x30 && path.charCodeAt(i) <= 0x39) i++;
        if (i === start || path[i] !== "]") throw new Error(`expected an array index, "*" or a quoted name at offset ${start}`);
        if (i - start > 9) throw new Error(`array index too large at offset ${start}`);
        steps.push({ index: Number(path.slice(start, i)) });
        i++;
      }
    } else {
      throw new Error(`unexpected ${JSON.stringify(c)} at offset ${i}`);
    }
  }
  return steps;
}


function step(values: unknown[], s: Step, out: unknown[]): void {
  for (const v of values) {
    if ("key" in s) {
      if (isObject(v) && Object.hasOwn(v, s.key)) out.push(v[s.key]);
    } else if ("index" in s) {
      if (Array.isArray(v) && s.index < v.length) out.push(v[s.index]);
    } else if (Array.isArray(v)) {
      for (const e of v) out.push(e);
    } else if (isObject(v)) {
      for (const k of Object.keys(v)) out.push(v[k]);
    }
  }
}

/** Resolves a compiled path: the value, `undefined` when missing; an array of matches for a wildcard path. */
function compilePathGetter(steps: Step[]): (root: unknown) => unknown {
  if (steps.some((s) => "wildcard" in s)) {
    return (root) => {
      let values: unknown[] = [root];
      for (const s of steps) {
        const next: unknown[] = [];
        step(values, s, next);
        values = next;
      }
      return values;
    };
  }
  return (root) => {
    let v: unknown = root;
    for (const s of steps) {
      if ("key" in s) {
        if (!isObject(v) || !Object.hasOwn(v, s.key)) return undefined;
        v = v[s.key];
      } else {
        const index = (s as { index: number }).index;
        if (!Array.isArray(v) || index >= v.length) return undefined;
        v = v[index];
      }
    }
    return v;
  };
}

// ---------- reserved placeholders ----------

type Getter = (event: CloudEvent, context: TransformContext | undefined) => unknown;

function attributesOf(event: CloudEvent): Record<string, unknown> {
  const { data: _data, data_base64: _b64, ...attributes } = event;
  return attributes;
}

const RESERVED: ReadonlyMap<string, Getter> = new Map<string, Getter>([
  ["sluice.event", (event) => event],
  ["sluice.event.attributes", (event) => attributesOf(event)],
  ["sluice.event.data", (event) => (event.data !== undefined ? event.data : (event.data_base64 ?? null))],
  ["sluice.event.json", (event) => JSON.stringify(event)],
  [
    "sluice.event.ingestion-time",
    (_e, ctx) => (ctx?.ingestedAt === undefined || !Number.isFinite(ctx.ingestedAt) ? null : new Date(ctx.ingestedAt).toISOString()),
  ],
  ["sluice.rule-name", (_e, ctx) => ctx?.ruleName ?? null],
  ["sluice.bus-name", (_e, ctx) => ctx?.busName ?? null],
]);

const EVENTBRIDGE_HINT: Readonly<Record<string, string>> = {
  "aws.events.event.json": "sluice.event",
  "aws.events.event": "sluice.event.attributes",
  "aws.events.rule-name": "sluice.rule-name",
  "aws.events.rule-arn": "sluice.rule-name",
  "aws.events.event.ingestion-time": "sluice.event.ingestion-time",
};

// ---------- template ----------

interface Slot {
  name: string;
  /** Inside a JSON string (text substitution) or outside (value substitution). */
  inString: boolean;
  start: number;
  end: number;
}

const PLACEHOLDER_CHAR = /[A-Za-z0-9_.-]/;

/** Finds every `<name>` in the template, noting whether it sits inside a JSON string (for JSON templates). */
function scanSlots(template: string, trackStrings: boolean): Slot[] {
  const slots: Slot[] = [];
  let inString = false;
  for (let i = 0; i < template.length; i++) {
    const c = template[i];
    if (trackStrings && c === '"') inString = !inString;
    else if (trackStrings && inString && c === "\\") i++;
    else if (c === "<") {
      let j = i + 1;
      while (j < template.length && PLACEHOLDER_CHAR.test(template[j] as string)) j++;
      if (j > i + 1 && template[j] === ">") {
        slots.push({ name: template.slice(i + 1, j), inString: trackStrings && inString, start: i, end: j + 1 });
        i = j;
      }
    }
  }
  return slots;
}

/** The text a value takes inside a string: strings as is, null/missing empty, everything else as JSON. */
function textOf(value: unknown): string {
  if (typeof value === "string") return value;
  if (value === undefined || value === null) return "";
  return JSON.stringify(value) ?? "";
}

type Build = (values: unknown[]) => unknown;

function setOwn(obj: Record<string, unknown>, key: string, value: unknown): void {
  if (key === "__proto__") Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
  else obj[key] = value;
}

/**
 * Compiles an EventBridge input transformer. See the module documentation for paths, template modes and
 * reserved placeholders. Throws {@link TransformError} for any malformed part, whatever the input.
 *
 * @example
 * ```ts
 * const t = compileTransformer({ inputPaths: { id: "$.data.id" }, inputTemplate: "order <id> created" });
 * t.apply(event); // "order o-1 created"
 * ```
 */
export function compileTransformer(definition: unknown): CompiledTransformer {
  if (!isObject(definition)) throw new TransformError("an input transformer must be an object", "$");
  for (const key of Object.keys(definition)) {
    if (key !== "inputPaths" && key !== "inputTemplate") {
      throw new TransformError(`unknown input transformer field ${JSON.stringify(key)}`, memberPath("$", key));
    }
  }
  const template = definition.inputTemplate;
  if (typeof template !== "string") throw new TransformError("`inputTemplate` must be a string", "$.inputTemplate");
  if (template.length === 0 || template.length > MAX_TEMPLATE_LENGTH) {
    throw new TransformError(`\`inputTemplate\` must have 1 to ${MAX_TEMPLATE_LENGTH} characters`, "$.inputTemplate");
  }

  const getters = new Map<string, Getter>();
  const paths = definition.inputPaths;
  if (paths !== undefined) {
    if (!isObject(paths)) throw new TransformError("`inputPaths` must be an object of names to paths", "$.inputPaths");
    const names = Object.keys(paths);
    if (names.length > MAX_INPUT_PATHS) {
      throw new TransformError(`\`inputPaths\` has ${names.length} entries; at most ${MAX_INPUT_PATHS}`, "$.inputPaths");
    }
    for (const name of names) {
      const at = memberPath("$.inputPaths", name);
      if (!NAME.test(name)) {
        throw new TransformError(`input path name ${JSON.stringify(name)} must be 1 to 256 letters, digits, "_", "-" or "."`, at);
      }
      if (name.startsWith("sluice.")) throw new TransformError(`input path name ${JSON.stringify(name)} is reserved`, at);
      const path = paths[name];
      if (typeof path !== "string") throw new TransformError(`input path \`${name}\` must be a string`, at);
      let steps: Step[];
      try {
        steps = parsePath(path);
      } catch (cause) {
        throw new TransformError(`input path \`${name}\` (${JSON.stringify(path.slice(0, 100))}) is invalid: ${(cause as Error).message}`, at, {
          cause,
        });
      }
      const get = compilePathGetter(steps);
      getters.set(name, (event) => get(event));
    }
  }

  const trimmed = template.trim();
  const first = trimmed[0];
  // Every `<name>` token, wherever it is: in valid JSON a backslash never precedes "<", so JSON and text
  // scanning find the same placeholders.
  const textSlots = scanSlots(template, false);
  const isLonePlaceholder = textSlots.length === 1 && (textSlots[0] as Slot).end - (textSlots[0] as Slot).start === trimmed.length;
  const jsonLike = first === "{" || first === "[" || first === '"' || isLonePlaceholder;

  // Resolve every placeholder name once; values are computed once per apply.
  const order: string[] = [];
  const indexOf = new Map<string, number>();
  for (const slot of textSlots) {
    if (indexOf.has(slot.name)) continue;
    if (!getters.has(slot.name) && !RESERVED.has(slot.name)) {
      const hint = EVENTBRIDGE_HINT[slot.name];
      throw new TransformError(
        `the template uses <${slot.name}>, which is neither in inputPaths nor reserved${hint === undefined ? "" : `; in Sluice it is <${hint}>`}`,
        "$.inputTemplate",
      );
    }
    indexOf.set(slot.name, order.length);
    order.push(slot.name);
  }
  const resolvers = order.map((name) => (getters.get(name) ?? RESERVED.get(name)) as Getter);
  const resolve = (event: CloudEvent, context: TransformContext | undefined): unknown[] => {
    const values = new Array<unknown>(resolvers.length);
    for (let i = 0; i < resolvers.length; i++) values[i] = (resolvers[i] as Getter)(event, context);
    return values;
  };

  if (jsonLike) {
    const build = compileJsonTemplate(template, scanSlots(template, true), indexOf, first === '"');
    if (build !== undefined) {
      return { mode: "json", apply: (event, context) => build(resolve(event, context)) };
    }
  }
  // Text: literal pieces interleaved with the values' text.
  const literals: string[] = [];
  const refs: number[] = [];
  let last = 0;
  for (const slot of textSlots) {
    literals.push(template.slice(last, slot.start));
    refs.push(indexOf.get(slot.name) as number);
    last = slot.end;
  }
  literals.push(template.slice(last));
  return {
    mode: "text",
    apply(event, context) {
      const values = resolve(event, context);
      let out = literals[0] as string;
      for (let i = 0; i < refs.length; i++) out += textOf(values[refs[i] as number]) + (literals[i + 1] as string);
      return out;
    },
  };
}

/**
 * Compiles a JSON template into a builder. Each placeholder is swapped for a sentinel (a JSON string outside
 * strings, an escaped marker inside them), the result parsed once, and the tree turned into closures that fill
 * the sentinels from the resolved values. Returns undefined for a `"…"` template that is not JSON (it is text).
 */
function compileJsonTemplate(template: string, slots: Slot[], indexOf: Map<string, number>, mayBeText: boolean): Build | undefined {
  const nonce = Math.random().toString(36).slice(2, 10);
  const marker = (kind: "V" | "S", i: number) => `\\u0000${kind}${nonce}:${i}\\u0000`;
  let text = "";
  let last = 0;
  for (const slot of slots) {
    const i = indexOf.get(slot.name);
    if (i === undefined) throw new TransformError(`unknown placeholder <${slot.name}>`, "$.inputTemplate");
    text += template.slice(last, slot.start) + (slot.inString ? marker("S", i) : `"${marker("V", i)}"`);
    last = slot.end;
  }
  text += template.slice(last);
  let tree: unknown;
  try {
    tree = JSON.parse(text);
  } catch (cause) {
    if (mayBeText) return undefined;
    throw new TransformError(
      `\`inputTemplate\` looks like JSON but is not valid JSON once placeholders are filled: ${(cause as Error).message}`,
      "$.inputTemplate",
      { cause },
    );
  }
  const sentinel = new RegExp(`\\u0000([VS])${nonce}:(\\d+)\\u0000`, "g");
  const whole = new RegExp(`^\\u0000V${nonce}:(\\d+)\\u0000$`);

  const compileString = (s: string): Build | string => {
    const w = whole.exec(s);
    if (w !== null) {
      const i = Number(w[1]);
      return (values) => {
        const v = values[i];
        return v === undefined ? null : v;
      };
    }
    if (!s.includes("\u0000")) return s;
    const literals: string[] = [];
    const refs: number[] = [];
    let at = 0;
    for (const m of s.matchAll(sentinel)) {
      literals.push(s.slice(at, m.index));
      refs.push(Number(m[2]));
      at = (m.index as number) + m[0].length;
    }
    if (refs.length === 0) return s;
    literals.push(s.slice(at));
    return (values) => {
      let out = literals[0] as string;
      for (let i = 0; i < refs.length; i++) out += textOf(values[refs[i] as number]) + (literals[i + 1] as string);
      return out;
    };
  };

  const compileNode = (node: unknown, depth: number): Build | { constant: unknown } => {
    if (depth > MAX_TEMPLATE_DEPTH) {
      throw new TransformError(`\`inputTemplate\` is nested deeper than ${MAX_TEMPLATE_DEPTH} levels`, "$.inputTemplate");
    }
    if (typeof node === "string") {
      const s = compileString(node);
      return typeof s === "string" ? { constant: s } : s;
    }
    if (Array.isArray(node)) {
      const items = node.map((n) => compileNode(n, depth + 1));
      return (values) => items.map((it) => (typeof it === "function" ? it(values) : it.constant));
    }
    if (isObject(node)) {
      const entries: Array<[string, Build | { constant: unknown }]> = [];
      for (const key of Object.keys(node)) {
        if (key.includes(`\u0000V${nonce}:`) || key.includes(`\u0000S${nonce}:`)) {
          throw new TransformError("a placeholder cannot be used as an object key in `inputTemplate`", "$.inputTemplate");
        }
        entries.push([key, compileNode(node[key], depth + 1)]);
      }
      return (values) => {
        const out: Record<string, unknown> = {};
        for (const [key, it] of entries) setOwn(out, key, typeof it === "function" ? it(values) : it.constant);
        return out;
      };
    }
    return { constant: node };
  };

  // Objects and arrays always compile to builders (fresh output per apply); constants are primitives.
  const root = compileNode(tree, 0);
  return typeof root === "function" ? root : () => root.constant;
}
