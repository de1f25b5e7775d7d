/**
 * EventBridge event patterns: validation, compilation and matching against an event's JSON form.
 *
 * Semantics (EventBridge / aws/event-ruler, checked against their documentation):
 * - A pattern is an object; each key names an event field. An array value lists the allowed values ("any of"),
 *   an object value descends into a nested field. Several keys must all match ("and").
 * - Exact values: strings, numbers, booleans and null. Numbers compare by value (`300` equals `3.0e2`), never
 *   against strings (`300` does not match `"300"`).
 * - An event field holding an array matches when any of its elements matches (arrays of arrays are flattened).
 * - Array consistency (event-ruler's `rulesForJSONEvent`): fields matched inside an array of objects must come
 *   from the same element. `{"items": {"sku": ["a"], "qty": [2]}}` needs one item with sku "a" and qty 2.
 * - Leaves only: a field whose value is an object is not a leaf; `exists` and every other matcher see only leaf
 *   values (strings, numbers, booleans, null). `null` is a value: a field that is null exists.
 * - `{"exists": false}` matches when the event holds no leaf value at that path anywhere (through every array
 *   element), as event-ruler's absence check does; a missing parent, an object or `[]` there count as absent.
 * - `anything-but` tests each leaf value on its own: it matches when some value at the path is not excluded.
 *   It needs a present value: an absent field never matches `anything-but`. Values of another type than the
 *   excluded ones match (`{"anything-but": "x"}` matches the number 5 and null).
 * - `numeric` matches JSON numbers only. Deliberate deviation: EventBridge limits numeric matching to ±5e9 with
 *   six decimals because its automaton encodes numbers as fixed-width strings; we compare IEEE-754 doubles
 *   directly, so every finite number is allowed and compared at full double precision (`0.0000001 > 0` holds).
 *   JSON numbers beyond 2^53 lose precision when parsed, in the event and in the pattern alike.
 * - `equals-ignore-case` and the `equals-ignore-case` forms of prefix/suffix fold with `String#toLowerCase`.
 * - `wildcard`: `*` matches any run of characters, `\*` a literal star and `\\` a backslash; consecutive `**`
 *   and a backslash before any other character are rejected, as in EventBridge.
 * - `cidr`: an IPv4 CIDR matches dotted-quad IPv4 strings, an IPv6 CIDR matches IPv6 strings (with `::` and an
 *   embedded IPv4 tail); host bits in the CIDR are ignored. Strings that are not addresses do not match.
 * - `$or` (at any level) takes an array of at least two non-empty objects; the object holding it must also
 *   match its other keys. `$or` is always the operator here, never a field name (event-ruler's legacy
 *   fallback to a field name is not kept: it made the same text mean two things).
 *
 * Limits (a {@link PatternError} past any of them): nesting depth {@link PATTERN_LIMITS.maxDepth}, total values
 * and operators {@link PATTERN_LIMITS.maxValues}, approximate encoded size {@link PATTERN_LIMITS.maxSizeChars}
 * characters, and {@link PATTERN_LIMITS.maxAlternatives} alternatives once every `$or` is expanded. In events,
 * arrays nested deeper than {@link MAX_ARRAY_NESTING} inside one field are not looked into.
 */
import { ErrorCode, SluiceError } from "../errors.ts";
import { isObject } from "../util/validate.ts";
import { explainNode, json, keyPath } from "./explain.ts";
import { parseIPv4, parseIPv6 } from "./ip.ts";
import { matchNode } from "./match.ts";

export { parseIPv4, parseIPv6 } from "./ip.ts";
export { hasLeafAt, MAX_ARRAY_NESTING, testValue } from "./match.ts";

/** Limits enforced by {@link compilePattern}; generous for hand-written rules, small enough to bound matching cost. */
export const PATTERN_LIMITS = {
  /** Object nesting levels, counting the top level and every `$or` alternative. */
  maxDepth: 16,
  /** Exact values plus operators (each `anything-but` list item counts). */
  maxValues: 1000,
  /** Approximate JSON size in characters (keys, strings and 8 per node). */
  maxSizeChars: 64 * 1024,
  /** Alternatives after expanding every `$or` (the product of the `$or` sizes). */
  maxAlternatives: 1024,
} as const;

/** A pattern failed validation. `path` is the JSON path into the pattern, e.g. `$.data.total[0].numeric[1]`. */
export class PatternError extends SluiceError {
  override readonly name = "PatternError";
  constructor(message: string, path: string) {
    super(ErrorCode.PatternInvalid, message, { path });
  }
  declare readonly path: string;
}

/** Why an event did not match: the first failing field, for humans (the CLI). */
export interface PatternMismatch {
  /** JSON path of the event field, e.g. `$.data.total`. */
  path: string;
  /** The pattern's allowed values for that field, as JSON. */
  expected: string;
  /** The event's value at that path as JSON, or `"absent"`. */
  actual: string;
  message: string;
}

export interface CompiledPattern {
  /** True when the event (a CloudEvent's JSON form, or any JSON object) matches. Never throws. */
  matches(event: unknown): boolean;
  /** Null when the event matches, otherwise the first field that failed. */
  explain(event: unknown): PatternMismatch | null;
}

// ---- compiled form (internal; rule-index.ts reads it) ----

/** @internal One value test against a single leaf value of the event. */
export type Matcher =
  | { readonly k: "eq"; readonly v: string | number | boolean | null }
  | { readonly k: "eqci"; readonly v: string }
  | { readonly k: "prefix"; readonly v: string; readonly ci: boolean }
  | { readonly k: "suffix"; readonly v: string; readonly ci: boolean }
  | { readonly k: "wild"; readonly parts: readonly string[] }
  | { readonly k: "num"; readonly lo: number; readonly loIn: boolean; readonly hi: number; readonly hiIn: boolean }
  | { readonly k: "exists" }
  | { readonly k: "cidr4"; readonly net: number; readonly mask: number; readonly text: string }
  | { readonly k: "cidr6"; readonly net: Uint16Array; readonly bits: number; readonly text: string }
  | { readonly k: "not"; readonly any: readonly Matcher[] };

/** @internal A leaf field of the pattern: the allowed values at one path. */
export interface Leaf {
  /** Field name in its parent object. */
  readonly key: string;
  /** Full path from the event's root. */
  readonly segs: readonly string[];
  /** Positive matchers (everything but `exists: false`); the leaf matches when one matches one value. */
  readonly matchers: readonly Matcher[];
  /** The leaf also matches when the path holds no leaf value anywhere (`exists: false`). */
  readonly absent: boolean;
}

/** @internal An object level of the pattern. */
export interface PatternNode {
  readonly leaves: readonly Leaf[];
  readonly children: readonly { readonly key: string; readonly node: PatternNode }[];
  /** Each group is one `$or`: at least one alternative must match. */
  readonly ors: readonly (readonly PatternNode[])[];
}

const OPERATORS = new Set(["prefix", "suffix", "equals-ignore-case", "wildcard", "anything-but", "numeric", "exists", "cidr"]);

const EMPTY: readonly never[] = Object.freeze([]);

/** An exact-capacity copy: arrays grown by push keep spare capacity, which adds up over 100 000 rules. */
function trim<T>(xs: T[]): readonly T[] {
  return xs.length === 0 ? EMPTY : xs.slice();
}

/**
 * Field paths shared by all patterns (rules mostly name the same fields), so each leaf does not carry its own
 * array. Bounded: past the limit new paths are simply not shared.
 */
const pathCache = new Map<string, readonly string[]>();
const PATH_CACHE_MAX = 10_000;
function internPath(parent: readonly string[], key: string): readonly string[] {
  const id = JSON.stringify([...parent, key]);
  let segs = pathCache.get(id);
  if (segs === undefined) {
    segs = Object.freeze([...parent, key]);
    if (pathCache.size < PATH_CACHE_MAX) pathCache.set(id, segs);
  }
  return segs;
}

// ---- JSON path helpers ----


function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  if (typeof v === "number" && !Number.isFinite(v)) return String(v);
  return typeof v === "object" ? "an object" : `a ${typeof v}`;
}

// ---- compiler ----

class Compiler {
  private values = 0;
  private size = 0;

  count(path: string, n = 1): void {
    this.values += n;
    if (this.values > PATTERN_LIMITS.maxValues) {
      throw new PatternError(`pattern has more than ${PATTERN_LIMITS.maxValues} values and operators`, path);
    }
  }
  grow(path: string, chars: number): void {
    this.size += chars;
    if (this.size > PATTERN_LIMITS.maxSizeChars) {
      throw new PatternError(`pattern is larger than ${PATTERN_LIMITS.maxSizeChars} characters`, path);
    }
  }

  node(input: unknown, path: string, segs: readonly string[], depth: number): PatternNode {
    if (!isPlainObject(input)) throw new PatternError(`expected an object, got ${describe(input)}`, path);
    if (depth > PATTERN_LIMITS.maxDepth) {
      throw new PatternError(`pattern is nested deeper than ${PATTERN_LIMITS.maxDepth} levels`, path);
    }
    const keys = Object.keys(input);
    if (keys.length === 0) throw new PatternError("an object in a pattern needs at least one field", path);
    this.grow(path, 8);
    const leaves: Leaf[] = [];
    const children: { key: string; node: PatternNode }[] = [];
    const ors: PatternNode[][] = [];
    for (const key of keys) {
      const value = input[key];
      const p = keyPath(path, key);
      this.grow(p, key.length + 8);
      if (key === "$or") {
        if (!Array.isArray(value)) throw new PatternError(`"$or" needs an array of objects, got ${describe(value)}`, p);
        if (value.length < 2) throw new PatternError(`"$or" needs at least 2 alternatives, got ${value.length}`, p);
        ors.push(value.map((alt, i) => this.node(alt, `${p}[${i}]`, segs, depth + 1)));
      } else if (Array.isArray(value)) {
        leaves.push(this.leaf(key, value, p, internPath(segs, key)));
      } else if (isPlainObject(value)) {
        children.push({ key, node: this.node(value, p, internPath(segs, key), depth + 1) });
      } else {
        throw new PatternError(`a field must hold an array of allowed values or an object, got ${describe(value)}`, p);
      }
    }
    return { leaves: trim(leaves), children: trim(children), ors: trim(ors) };
  }

  leaf(key: string, values: unknown[], path: string, segs: readonly string[]): Leaf {
    if (values.length === 0) throw new PatternError("an array of allowed values must not be empty", path);
    const matchers: Matcher[] = [];
    let absent = false;
    values.forEach((v, i) => {
      const p = `${path}[${i}]`;
      this.count(p);
      if (isPlainObject(v)) {
        const m = this.operator(v, p);
        if (m === "absent") absent = true;
        else matchers.push(m);
      } else {
        matchers.push({ k: "eq", v: this.scalar(v, p) });
      }
    });
    return { key, segs, matchers: trim(matchers), absent };
  }

  scalar(v: unknown, path: string): string | number | boolean | null {
    if (typeof v === "string") {
      this.grow(path, v.length + 2);
      return v;
    }
    if (typeof v === "number") {
      if (!Number.isFinite(v)) throw new PatternError(`a number must be finite, got ${String(v)}`, path);
      return v;
    }
    if (typeof v === "boolean" || v === null) return v;
    throw new PatternError(`an allowed value must be a string, number, boolean, null or operator object, got ${describe(v)}`, path);
  }

  str(v: unknown, path: string, what: string): string {
    if (typeof v !== "string") throw new PatternError(`${what} needs a string, got ${describe(v)}`, path);
    this.grow(path, v.length + 2);
    return v;
  }

  operator(obj: Record<string, unknown>, path: string): Matcher | "absent" {
    const keys = Object.keys(obj);
    if (keys.length !== 1) {
      throw new PatternError(`an operator object must have exactly one key, got ${keys.length}`, path);
    }
    const op = keys[0] as string;
    const arg = obj[op];
    const p = keyPath(path, op);
    if (!OPERATORS.has(op)) throw new PatternError(`unknown operator ${JSON.stringify(op)}`, p);
    switch (op) {
      case "prefix":
      case "suffix": {
        if (isPlainObject(arg)) {
          const inner = Object.keys(arg);
          if (inner.length !== 1 || inner[0] !== "equals-ignore-case") {
            throw new PatternError(`${op} takes a string or {"equals-ignore-case": string}`, p);
          }
          const s = this.str(arg["equals-ignore-case"], keyPath(p, "equals-ignore-case"), `${op} equals-ignore-case`);
          return { k: op, v: s.toLowerCase(), ci: true };
        }
        return { k: op, v: this.str(arg, p, op), ci: false };
      }
      case "equals-ignore-case":
        return { k: "eqci", v: this.str(arg, p, "equals-ignore-case").toLowerCase() };
      case "wildcard":
        return wildcard(this.str(arg, p, "wildcard"), p);
      case "exists":
        if (typeof arg !== "boolean") throw new PatternError(`exists needs true or false, got ${describe(arg)}`, p);
        return arg ? { k: "exists" } : "absent";
      case "cidr":
        return cidr(this.str(arg, p, "cidr"), p);
      case "numeric":
        return this.numeric(arg, p);
      default:
        return this.anythingBut(arg, p);
    }
  }

  numeric(arg: unknown, path: string): Matcher {
    if (!Array.isArray(arg)) throw new PatternError(`numeric needs an array like [">", 0, "<=", 5], got ${describe(arg)}`, path);
    if (arg.length !== 2 && arg.length !== 4) {
      throw new PatternError(`numeric needs 2 or 4 elements ([op, n] or [op, n, op, n]), got ${arg.length}`, path);
    }
    let lo = -Infinity;
    let hi = Infinity;
    let loIn = false;
    let hiIn = false;
    let hasLo = false;
    let hasHi = false;
    for (let i = 0; i < arg.length; i += 2) {
      const op = arg[i];
      const n = arg[i + 1];
      if (typeof n !== "number" || !Number.isFinite(n)) {
        throw new PatternError(`numeric bound must be a finite number, got ${describe(n)}`, `${path}[${i + 1}]`);
      }
      if (op === "=") {
        if (arg.length !== 2) throw new PatternError(`"=" cannot be combined with another comparison`, `${path}[${i}]`);
        return { k: "num", lo: n, loIn: true, hi: n, hiIn: true };
      }
      if (op === ">" || op === ">=") {
        if (hasLo) throw new PatternError("numeric range has two lower bounds", `${path}[${i}]`);
        hasLo = true;
        lo = n;
        loIn = op === ">=";
      } else if (op === "<" || op === "<=") {
        if (hasHi) throw new PatternError("numeric range has two upper bounds", `${path}[${i}]`);
        hasHi = true;
        hi = n;
        hiIn = op === "<=";
      } else {
        throw new PatternError(`numeric operator must be one of =, <, <=, >, >=, got ${JSON.stringify(op) ?? describe(op)}`, `${path}[${i}]`);
      }
    }
    if (lo > hi || (lo === hi && !(loIn && hiIn))) {
      throw new PatternError("numeric range is empty: the lower bound must be below the upper bound", path);
    }
    return { k: "num", lo, loIn, hi, hiIn };
  }

  anythingBut(arg: unknown, path: string): Matcher {
    if (typeof arg === "string" || typeof arg === "number") {
      return { k: "not", any: [{ k: "eq", v: this.scalar(arg, path) }] };
    }
    if (Array.isArray(arg)) {
      if (arg.length === 0) throw new PatternError("anything-but list must not be empty", path);
      const kind = typeof arg[0];
      const any: Matcher[] = arg.map((v, i) => {
        const p = `${path}[${i}]`;
        if ((typeof v !== "string" && typeof v !== "number") || typeof v !== kind) {
          throw new PatternError(`anything-but list must hold only strings or only numbers, got ${describe(v)}`, p);
        }
        this.count(p);
        return { k: "eq", v: this.scalar(v, p) };
      });
      return { k: "not", any };
    }
    if (isPlainObject(arg)) {
      const keys = Object.keys(arg);
      const op = keys[0];
      if (keys.length !== 1 || (op !== "prefix" && op !== "suffix" && op !== "wildcard" && op !== "equals-ignore-case")) {
        throw new PatternError(
          "anything-but takes a string, a number, a list of those, or one of {prefix | suffix | wildcard | equals-ignore-case}",
          path,
        );
      }
      const p = keyPath(path, op);
      const inner = arg[op];
      const make = (s: unknown, sp: string): Matcher => {
        const v = this.str(s, sp, `anything-but ${op}`);
        if (op === "wildcard") return wildcard(v, sp);
        if (op === "equals-ignore-case") return { k: "eqci", v: v.toLowerCase() };
        return { k: op, v, ci: false };
      };
      if (Array.isArray(inner)) {
        if (inner.length === 0) throw new PatternError(`anything-but ${op} list must not be empty`, p);
        return {
          k: "not",
          any: inner.map((s, i) => {
            this.count(`${p}[${i}]`);
            return make(s, `${p}[${i}]`);
          }),
        };
      }
      return { k: "not", any: [make(inner, p)] };
    }
    throw new PatternError(`anything-but takes a string, a number, a list or an operator object, got ${describe(arg)}`, path);
  }
}

function wildcard(text: string, path: string): Matcher {
  const parts: string[] = [];
  let cur = "";
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === "\\") {
      const next = text[i + 1];
      if (next !== "*" && next !== "\\") {
        throw new PatternError("wildcard: a backslash may only escape * or \\", path);
      }
      cur += next;
      i++;
    } else if (c === "*") {
      if (text[i + 1] === "*") throw new PatternError("wildcard: consecutive * are not allowed", path);
      parts.push(cur);
      cur = "";
    } else {
      cur += c;
    }
  }
  parts.push(cur);
  if (parts.length === 1) return { k: "eq", v: parts[0] as string };
  return { k: "wild", parts };
}

function cidr(text: string, path: string): Matcher {
  const slash = text.indexOf("/");
  const lenText = slash < 0 ? "" : text.slice(slash + 1);
  if (!/^(0|[1-9][0-9]{0,2})$/.test(lenText)) {
    throw new PatternError(`cidr needs an address and a prefix length like "10.0.0.0/24", got ${JSON.stringify(text)}`, path);
  }
  const bits = Number(lenText);
  const addr = text.slice(0, slash);
  const v4 = parseIPv4(addr);
  if (v4 >= 0) {
    if (bits > 32) throw new PatternError(`cidr prefix length for IPv4 must be 0..32, got ${bits}`, path);
    const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
    return { k: "cidr4", net: (v4 & mask) >>> 0, mask, text };
  }
  const v6 = parseIPv6(addr);
  if (v6 === null) throw new PatternError(`cidr address is neither IPv4 nor IPv6: ${JSON.stringify(addr)}`, path);
  if (bits > 128) throw new PatternError(`cidr prefix length for IPv6 must be 0..128, got ${bits}`, path);
  const net = new Uint16Array(8);
  for (let i = 0; i < 8; i++) {
    const keep = Math.max(0, Math.min(16, bits - i * 16));
    net[i] = keep === 0 ? 0 : (v6[i] as number) & ((0xffff << (16 - keep)) & 0xffff);
  }
  return { k: "cidr6", net, bits, text };
}

/** @internal Number of alternatives once every `$or` is expanded. */
export function countAlternatives(node: PatternNode): number {
  let n = 1;
  for (const c of node.children) n *= countAlternatives(c.node);
  for (const group of node.ors) {
    let sum = 0;
    for (const alt of group) sum += countAlternatives(alt);
    n *= sum;
  }
  return n;
}

/** @internal Expands `$or` into alternatives, each a flat list of leaves that must all match. */
export function expandAlternatives(node: PatternNode): Leaf[][] {
  let alts: Leaf[][] = [[...node.leaves]];
  const cross = (right: Leaf[][]) => {
    const out: Leaf[][] = [];
    for (const a of alts) for (const b of right) out.push(a.concat(b));
    alts = out;
  };
  for (const c of node.children) cross(expandAlternatives(c.node));
  for (const group of node.ors) cross(group.flatMap((alt) => expandAlternatives(alt)));
  return alts;
}

class Compiled implements CompiledPattern {
  constructor(readonly root: PatternNode) {}

  matches(event: unknown): boolean {
    return matchNode(this.root, isObject(event) ? event : undefined, event);
  }

  explain(event: unknown): PatternMismatch | null {
    if (this.matches(event)) return null;
    return (
      explainNode(this.root, isObject(event) ? event : undefined, event, []) ?? {
        path: "$",
        expected: "an object",
        actual: json(event),
        message: "the event does not match",
      }
    );
  }
}

/** @internal Evaluates a compiled tree directly (what {@link CompiledPattern.matches} does). */
export function matchRoot(root: PatternNode, event: unknown): boolean {
  return matchNode(root, isObject(event) ? event : undefined, event);
}

/** @internal The compiled tree behind a {@link CompiledPattern} made by {@link compilePattern}. */
export function patternRoot(compiled: CompiledPattern): PatternNode {
  if (!(compiled instanceof Compiled)) throw new TypeError("not a pattern compiled by compilePattern");
  return compiled.root;
}

/**
 * Validates an EventBridge event pattern and compiles it for matching.
 *
 * @throws {PatternError} (code `E_PATTERN_INVALID`) with the JSON path of the offending part and why.
 * @example
 * ```ts
 * const p = compilePattern({ type: ["order.created"], data: { total: [{ numeric: [">", 100] }] } });
 * p.matches({ type: "order.created", data: { total: 250 } }); // true
 * p.explain({ type: "order.created", data: { total: 5 } });  // { path: "$.data.total", ... }
 * ```
 */
export function compilePattern(pattern: unknown): CompiledPattern {
  const root = new Compiler().node(pattern, "$", [], 1);
  const alternatives = countAlternatives(root);
  if (alternatives > PATTERN_LIMITS.maxAlternatives) {
    throw new PatternError(
      `pattern expands to ${alternatives} alternatives through $or, more than ${PATTERN_LIMITS.maxAlternatives}`,
      "$",
    );
  }
  return new Compiled(root);
}
