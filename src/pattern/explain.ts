/**
 * Why an event does not match a pattern: the first failing field with what was expected and what the event
 * holds, in the pattern's own text.
 */
import { isObject } from "../util/validate.ts";
import type { Leaf, Matcher, PatternMismatch, PatternNode } from "./compile.ts";
import { hasLeafAt, matchLeaf, objectsIn, own } from "./match.ts";

/** The JSON path of `key` under `path` (`$.a.b`, `$["odd key"]`). */
export function keyPath(path: string, key: string): string {
  return /^[A-Za-z_$][A-Za-z0-9_$-]*$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`;
}

function segsPath(segs: readonly string[]): string {
  let p = "$";
  for (const s of segs) p = keyPath(p, s);
  return p;
}


/** The pattern text of a compiled matcher (case-insensitive operands appear lower-cased). */
function renderMatcher(m: Matcher): unknown {
  switch (m.k) {
    case "eq":
      return m.v;
    case "eqci":
      return { "equals-ignore-case": m.v };
    case "prefix":
    case "suffix":
      return { [m.k]: m.ci ? { "equals-ignore-case": m.v } : m.v };
    case "wild":
      return { wildcard: m.parts.map((p) => p.replace(/[\\*]/g, (c) => `\\${c}`)).join("*") };
    case "num": {
      if (m.lo === m.hi) return { numeric: ["=", m.lo] };
      const lo = m.lo === -Infinity ? [] : [m.loIn ? ">=" : ">", m.lo];
      const hi = m.hi === Infinity ? [] : [m.hiIn ? "<=" : "<", m.hi];
      return { numeric: [...lo, ...hi] };
    }
    case "exists":
      return { exists: true };
    case "cidr4":
    case "cidr6":
      return { cidr: m.text };
    case "not": {
      const inner = m.any.map(renderMatcher);
      if (m.any.every((x) => x.k === "eq")) return { "anything-but": inner.length === 1 ? inner[0] : inner };
      const key = Object.keys(inner[0] as object)[0] as string;
      const vals = inner.map((x) => (x as Record<string, unknown>)[key]);
      return { "anything-but": { [key]: vals.length === 1 ? vals[0] : vals } };
    }
  }
}

function renderLeaf(leaf: Leaf): unknown[] {
  const out = leaf.matchers.map(renderMatcher);
  if (leaf.absent) out.push({ exists: false });
  return out;
}

/** JSON text for explain output: never throws, at most 200 characters. */
export function json(v: unknown): string {
  if (v === undefined) return "absent";
  let text: string;
  try {
    text = JSON.stringify(v) ?? String(v);
  } catch {
    text = "(nested too deep to print)";
  }
  return text.length > 200 ? `${text.slice(0, 199)}…` : text;
}

export function explainNode(
  node: PatternNode,
  ctx: Record<string, unknown> | undefined,
  root: unknown,
  segs: readonly string[],
): PatternMismatch | null {
  for (const leaf of node.leaves) {
    const v = ctx === undefined ? undefined : own(ctx, leaf.key);
    if (!matchLeaf(leaf, v, root)) {
      const path = segsPath(leaf.segs);
      const present = hasLeafAt(root, leaf.segs, 0);
      const message =
        leaf.matchers.length === 0
          ? `${path} must be absent but the event has a value there`
          : v === undefined || (!present && !isObject(v))
            ? `${path} is absent from the event`
            : `${path} holds no value the pattern allows`;
      return { path, expected: json(renderLeaf(leaf)), actual: json(v), message };
    }
  }
  for (const c of node.children) {
    const v = ctx === undefined ? undefined : own(ctx, c.key);
    const childSegs = [...segs, c.key];
    if (isObject(v)) {
      const m = explainNode(c.node, v, root, childSegs);
      if (m) return m;
      continue;
    }
    const objs = Array.isArray(v) ? objectsIn(v, []) : [];
    if (objs.length === 0) {
      const m = explainNode(c.node, undefined, root, childSegs);
      if (m) return m;
      continue;
    }
    let first: PatternMismatch | null = null;
    let ok = false;
    for (const o of objs) {
      const m = explainNode(c.node, o, root, childSegs);
      if (m === null) {
        ok = true;
        break;
      }
      first ??= m;
    }
    if (!ok && first) {
      return { ...first, message: `no element of the array at ${segsPath(childSegs)} matches: ${first.message}` };
    }
  }
  for (const group of node.ors) {
    let first: PatternMismatch | null = null;
    let ok = false;
    for (const alt of group) {
      const m = explainNode(alt, ctx, root, segs);
      if (m === null) {
        ok = true;
        break;
      }
      first ??= m;
    }
    if (!ok && first) {
      return { ...first, message: `none of the ${group.length} $or alternatives matches; the first fails: ${first.message}` };
    }
  }
  return null;
}
