/**
 * Evaluating a compiled pattern against an event: the matcher operators, EventBridge's array semantics (a
 * field matches when any of its values does), `$or` groups and `exists`. Pure functions over the compiled tree.
 */
import { isObject } from "../util/validate.ts";
import type { Leaf, Matcher, PatternNode } from "./compile.ts";
import { parseIPv4, parseIPv6 } from "./ip.ts";

/**
 * Arrays nested deeper than this inside one event field (`[[[...]]]`) are not looked into: their contents are no
 * values. Bounds the recursion (a 256 KiB event can nest 100 000 arrays); JSON from real producers nests far less.
 */
export const MAX_ARRAY_NESTING = 64;

export function own(obj: Record<string, unknown>, key: string): unknown {
  return Object.hasOwn(obj, key) ? obj[key] : undefined;
}


export function wildMatch(parts: readonly string[], s: string): boolean {
  const first = parts[0] as string;
  const last = parts[parts.length - 1] as string;
  if (s.length < first.length + last.length || !s.startsWith(first) || !s.endsWith(last)) return false;
  let pos = first.length;
  const end = s.length - last.length;
  for (let i = 1; i < parts.length - 1; i++) {
    const part = parts[i] as string;
    const at = s.indexOf(part, pos);
    if (at < 0 || at + part.length > end) return false;
    pos = at + part.length;
  }
  return true;
}

/** @internal True when matcher `m` accepts the single leaf value `v`. */
export function testValue(m: Matcher, v: unknown): boolean {
  switch (m.k) {
    case "eq":
      return v === m.v;
    case "eqci":
      return typeof v === "string" && v.toLowerCase() === m.v;
    case "prefix":
      return typeof v === "string" && (m.ci ? v.toLowerCase() : v).startsWith(m.v);
    case "suffix":
      return typeof v === "string" && (m.ci ? v.toLowerCase() : v).endsWith(m.v);
    case "wild":
      return typeof v === "string" && wildMatch(m.parts, v);
    case "num":
      return (
        typeof v === "number" && (m.loIn ? v >= m.lo : v > m.lo) && (m.hiIn ? v <= m.hi : v < m.hi)
      );
    case "exists":
      return true;
    case "cidr4": {
      if (typeof v !== "string") return false;
      const ip = parseIPv4(v);
      return ip >= 0 && (ip & m.mask) >>> 0 === m.net;
    }
    case "cidr6": {
      if (typeof v !== "string" || !v.includes(":")) return false;
      const ip = parseIPv6(v);
      if (ip === null) return false;
      for (let i = 0; i < 8; i++) {
        const keep = Math.max(0, Math.min(16, m.bits - i * 16));
        if (keep === 0) break;
        const mask = (0xffff << (16 - keep)) & 0xffff;
        if (((ip[i] as number) & mask) !== m.net[i]) return false;
      }
      return true;
    }
    case "not":
      for (const inner of m.any) if (testValue(inner, v)) return false;
      return true;
  }
}

/** True when some leaf value (flattening arrays, skipping objects) in `v` satisfies one of `matchers`. */
export function anyValue(matchers: readonly Matcher[], v: unknown, nest = 0): boolean {
  if (Array.isArray(v)) {
    if (nest === MAX_ARRAY_NESTING) return false;
    for (const e of v) if (anyValue(matchers, e, nest + 1)) return true;
    return false;
  }
  if (v === undefined || isObject(v)) return false;
  for (const m of matchers) if (testValue(m, v)) return true;
  return false;
}

/** @internal True when the event holds a leaf value at `segs` anywhere (through every array element). */
export function hasLeafAt(v: unknown, segs: readonly string[], i: number, nest = 0): boolean {
  if (Array.isArray(v)) {
    if (nest === MAX_ARRAY_NESTING) return false;
    for (const e of v) if (hasLeafAt(e, segs, i, nest + 1)) return true;
    return false;
  }
  if (i === segs.length) return v !== undefined && !isObject(v);
  if (!isObject(v)) return false;
  const key = segs[i] as string;
  return Object.hasOwn(v, key) && hasLeafAt(v[key], segs, i + 1);
}

export function matchLeaf(leaf: Leaf, v: unknown, root: unknown): boolean {
  if (leaf.matchers.length > 0 && anyValue(leaf.matchers, v)) return true;
  return leaf.absent && !hasLeafAt(root, leaf.segs, 0);
}

export function matchNode(node: PatternNode, ctx: Record<string, unknown> | undefined, root: unknown): boolean {
  for (const leaf of node.leaves) {
    if (!matchLeaf(leaf, ctx === undefined ? undefined : own(ctx, leaf.key), root)) return false;
  }
  for (const c of node.children) {
    if (!matchChild(c.node, ctx === undefined ? undefined : own(ctx, c.key), root)) return false;
  }
  for (const group of node.ors) {
    let ok = false;
    for (const alt of group) {
      if (matchNode(alt, ctx, root)) {
        ok = true;
        break;
      }
    }
    if (!ok) return false;
  }
  return true;
}

/** Collects the objects in `v`, flattening arrays (array consistency: each is tried on its own). */
export function objectsIn(v: unknown, out: Record<string, unknown>[], nest = 0): Record<string, unknown>[] {
  if (Array.isArray(v)) {
    if (nest < MAX_ARRAY_NESTING) for (const e of v) objectsIn(e, out, nest + 1);
  } else if (isObject(v)) {
    out.push(v);
  }
  return out;
}

export function matchChild(node: PatternNode, v: unknown, root: unknown): boolean {
  if (isObject(v)) return matchNode(node, v, root);
  const objs = Array.isArray(v) ? objectsIn(v, []) : [];
  if (objs.length === 0) return matchNode(node, undefined, root);
  for (const o of objs) if (matchNode(node, o, root)) return true;
  return false;
}
