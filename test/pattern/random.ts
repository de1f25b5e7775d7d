/**
 * Seeded generators of random patterns and events over a shared vocabulary, for the differential and fuzz tests.
 * The vocabulary is small on purpose, so that random patterns and events often meet.
 */

import { prng } from "../helpers/random-json.ts";

export { prng };

export class Gen {
  constructor(readonly rnd: () => number) {}
  int(n: number): number {
    return Math.floor(this.rnd() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)] as T;
  }
  chance(p: number): boolean {
    return this.rnd() < p;
  }
}

const STRINGS = ["a", "b", "ab", "Ab", "AB", "abc", "ba", "bab", "", "x*y", "x\\y", "10.0.0.1", "10.0.1.9", "::1", "2001:db8::5", "fe80::1"];
const NUMBERS = [0, 1, 2, 5, -1, 300, 1.5, 1e10, -0.5];
const SCALARS: readonly unknown[] = [...STRINGS, ...NUMBERS, true, false, null];
const LEAF_KEYS = ["type", "s", "n", "ip", "tags"];
const OBJ_KEYS = ["data", "items"];

function randomMatcher(g: Gen): unknown {
  switch (g.int(16)) {
    case 0:
      return { prefix: g.pick(["", "a", "ab", "b", "10.", "x"]) };
    case 1:
      return { suffix: g.pick(["", "b", "ab", "1", "y"]) };
    case 2:
      return { prefix: { "equals-ignore-case": g.pick(["A", "aB", "b"]) } };
    case 3:
      return { suffix: { "equals-ignore-case": g.pick(["B", "Ab"]) } };
    case 4:
      return { "equals-ignore-case": g.pick(["AB", "a", "BAB", "x*Y"]) };
    case 5:
      return { wildcard: g.pick(["a*", "*b", "a*b", "*a*", "b*b", "x\\*y", "*", "a*b*", "ab"]) };
    case 6:
      return { "anything-but": g.pick<unknown>(["a", 1, ["a", "b"], [0, 5], { prefix: "a" }, { suffix: "b" }, { "equals-ignore-case": "ab" }, { wildcard: "*b" }, { prefix: ["a", "x"] }]) };
    case 7: {
      const ops = [[">", 0], ["<", 2], [">=", 1.5], ["<=", -1], ["=", 300], ["=", 5], [">", 0, "<=", 5], [">=", -1, "<", 1.5]];
      return { numeric: g.pick(ops) };
    }
    case 8:
      return { exists: g.chance(0.5) };
    case 9:
      return { cidr: g.pick(["10.0.0.0/24", "10.0.0.0/8", "2001:db8::/32", "::1/128", "0.0.0.0/0"]) };
    default:
      return g.pick(SCALARS);
  }
}

function randomLeaf(g: Gen): unknown[] {
  const n = 1 + g.int(3);
  return Array.from({ length: n }, () => randomMatcher(g));
}

/** A random valid pattern. */
export function randomPattern(g: Gen, depth = 0): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const fields = 1 + g.int(3);
  for (let i = 0; i < fields; i++) {
    if (depth < 2 && g.chance(0.25)) out[g.pick(OBJ_KEYS)] = randomPattern(g, depth + 1);
    else out[g.pick(LEAF_KEYS)] = randomLeaf(g);
  }
  if (depth < 2 && g.chance(0.15)) {
    out.$or = Array.from({ length: 2 + g.int(2) }, () => randomPattern(g, depth + 1));
  }
  return out;
}

function randomLeafValue(g: Gen): unknown {
  if (g.chance(0.2)) return Array.from({ length: g.int(3) }, () => g.pick(SCALARS));
  return g.pick(SCALARS);
}

/** A random event over the same vocabulary: scalars, arrays, nested objects, arrays of objects, absent fields. */
export function randomEvent(g: Gen, depth = 0): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of LEAF_KEYS) if (g.chance(0.6)) out[k] = randomLeafValue(g);
  if (depth < 2) {
    for (const k of OBJ_KEYS) {
      const r = g.rnd();
      if (r < 0.4) out[k] = randomEvent(g, depth + 1);
      else if (r < 0.6) out[k] = Array.from({ length: g.int(3) }, () => randomEvent(g, depth + 1));
      else if (r < 0.7) out[k] = g.pick(SCALARS);
    }
  }
  return out;
}

/** Arbitrary JSON-ish values (including invalid pattern shapes and operator objects with wrong operands). */
export function randomJson(g: Gen, depth = 0): unknown {
  const r = g.int(depth > 4 ? 6 : 10);
  switch (r) {
    case 0:
      return g.pick(SCALARS);
    case 1:
      return g.pick(["prefix", "suffix", "numeric", "exists", "anything-but", "cidr", "wildcard", "equals-ignore-case", "$or", "a**", "1.2.3.4/40", "\\", ">", "<=", "="]);
    case 2:
      return g.pick([0, -1, 1e308, 5e9, 0.000001, Number.MAX_SAFE_INTEGER]);
    case 3:
      return g.chance(0.5);
    case 4:
      return null;
    case 5:
      return randomMatcher(g);
    case 6:
    case 7:
      return Array.from({ length: g.int(4) }, () => randomJson(g, depth + 1));
    default: {
      const o: Record<string, unknown> = {};
      const n = g.int(4);
      for (let i = 0; i < n; i++) {
        const key = g.pick(["type", "data", "$or", "prefix", "numeric", "anything-but", "exists", "cidr", "x", "wildcard", "suffix"]);
        o[key] = randomJson(g, depth + 1);
      }
      return o;
    }
  }
}
