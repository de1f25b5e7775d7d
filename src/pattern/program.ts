/**
 * Flat check programs: a rule with one alternative, written as one small array that RuleIndex evaluates against
 * the event values its walk already collected, instead of walking the rule's compiled tree.
 *
 * Why: with 100 000 rules the compiled trees do not fit in the CPU caches, and evaluating one candidate through
 * its tree (node, leaf array, leaves, matcher arrays, matchers, path arrays) costs a cache miss per object. A
 * program is one array whose strings are interned (shared with every other rule and with the index's own map
 * keys, so they stay cached), read front to back.
 *
 * Layout: one record per leaf of the alternative, `[header, op, operands..., op, operands...]`: the header packs
 * the record's length in words, the index's value register for the leaf's path and 1 for `exists: false` into
 * one small integer; then one op per positive matcher (the leaf holds when one of them accepts the value).
 *
 * Exactness: a register holds the path's value only when the event has exactly one leaf value there and reached
 * it through no array (then the leaf's outcome does not depend on array consistency: it is the outcome of
 * testing that one value, or of absence). When a path's value came through an array, the program cannot
 * decide and the caller evaluates the compiled tree; a leaf that fails on a decided register still rejects the
 * rule (every leaf of a single alternative is required, whatever the other leaves do).
 */
import { testValue, type Leaf, type Matcher } from "./compile.ts";

/** One operand or op code of a program. */
export type ProgramWord = string | number | boolean | null | Matcher;
export type Program = readonly ProgramWord[];

/** A leaf record's header packs its length, register and `exists: false` flag into one small integer. */
const MAX_REGISTER = 2 ** 18 - 1;
const MAX_RECORD = 2 ** 12 - 1;

const OP_EQ = 0;
const OP_NUM = 1;
const OP_PREFIX = 2;
const OP_NOT_EQ = 3;
const OP_TEST = 4;

/** Outcome of {@link runProgram}. */
export const DECIDED_NO = 0;
export const DECIDED_YES = 1;
export const UNDECIDED = 2;

/** The registers a walk fills: value per path, and the walk number that set it (or made it undecidable). */
export interface Registers {
  /** `seen[rec] === walk`: the path has exactly one value, `value[rec]`, reached through no array. */
  seen: Float64Array;
  /** `through[rec] === walk`: some value at the path came through an array: programs cannot decide. */
  through: Float64Array;
  value: unknown[];
}

/**
 * Appends the program of one alternative to `p`. `rec` gives the register of a path; `intern` the shared
 * instance of a string. Leaves most likely to reject come first (numeric ranges and anything-but, then the rest).
 * Returns false when the program cannot be written (a register or a record past what a header holds); the
 * strings interned so far are in `p` for the caller to release.
 */
export function writeProgram(
  p: ProgramWord[],
  leaves: readonly Leaf[],
  rec: (segs: readonly string[]) => number,
  intern: (s: string) => string,
): boolean {
  const order = [...leaves].sort((a, b) => rank(a) - rank(b));
  for (const leaf of order) {
    const at = p.length;
    const reg = rec(leaf.segs);
    if (reg > MAX_REGISTER) return false;
    p.push(0);
    for (const m of leaf.matchers) {
      if (m.k === "eq") p.push(OP_EQ, typeof m.v === "string" ? intern(m.v) : m.v);
      else if (m.k === "num") {
        // an unbounded side is a flag, not a stored Infinity (a boxed number: one more object to read)
        const flags = (m.loIn ? 1 : 0) | (m.hiIn ? 2 : 0) | (m.lo === -Infinity ? 4 : 0) | (m.hi === Infinity ? 8 : 0);
        p.push(OP_NUM, m.lo === -Infinity ? 0 : m.lo, m.hi === Infinity ? 0 : m.hi, flags);
      }
      else if (m.k === "prefix" && !m.ci) p.push(OP_PREFIX, intern(m.v));
      else if (m.k === "not" && m.any.every((x) => x.k === "eq")) {
        p.push(OP_NOT_EQ, m.any.length);
        for (const x of m.any) p.push(x.k === "eq" && typeof x.v === "string" ? intern(x.v) : (x as { v: ProgramWord }).v);
      } else {
        p.push(OP_TEST, m);
      }
    }
    const words = p.length - at;
    if (words > MAX_RECORD) return false;
    p[at] = words * 2 ** 19 + reg * 2 + (leaf.absent ? 1 : 0);
  }
  return true;
}

function rank(leaf: Leaf): number {
  const k = leaf.matchers[0]?.k;
  return k === "num" || k === "not" ? 0 : 1;
}

/** The strings of the program that starts at `start` in `p` (each was interned once by {@link writeProgram}). */
export function programStrings(p: Program, start: number): string[] {
  return p.slice(start).filter((w): w is string => typeof w === "string");
}

/**
 * Evaluates a program against the registers of walk `walk`: DECIDED_YES / DECIDED_NO, or UNDECIDED when a
 * leaf's path held values through an array (and no decided leaf failed).
 */
export function runProgram(p: Program, start: number, r: Registers, walk: number): number {
  let undecided = false;
  let i = start;
  const n = p.length;
  while (i < n) {
    const header = p[i] as number;
    const reg = (header >>> 1) & MAX_REGISTER;
    const end = i + (header >>> 19);
    if (r.through[reg] === walk) {
      undecided = true;
      i = end;
      continue;
    }
    let ok: boolean;
    if (r.seen[reg] !== walk) {
      ok = (header & 1) === 1;
    } else {
      ok = false;
      const v = r.value[reg];
      i += 1;
      while (i < end) {
        const op = p[i] as number;
        if (op === OP_EQ) {
          if (v === p[i + 1]) {
            ok = true;
            break;
          }
          i += 2;
        } else if (op === OP_NUM) {
          if (typeof v === "number") {
            const lo = p[i + 1] as number;
            const hi = p[i + 2] as number;
            const f = p[i + 3] as number;
            if ((f & 4 || (f & 1 ? v >= lo : v > lo)) && (f & 8 || (f & 2 ? v <= hi : v < hi))) {
              ok = true;
              break;
            }
          }
          i += 4;
        } else if (op === OP_PREFIX) {
          if (typeof v === "string" && v.startsWith(p[i + 1] as string)) {
            ok = true;
            break;
          }
          i += 2;
        } else if (op === OP_NOT_EQ) {
          const count = p[i + 1] as number;
          let excluded = false;
          for (let k = i + 2; k < i + 2 + count; k++) {
            if (v === p[k]) {
              excluded = true;
              break;
            }
          }
          if (!excluded) {
            ok = true;
            break;
          }
          i += 2 + count;
        } else {
          if (testValue(p[i + 1] as Matcher, v)) {
            ok = true;
            break;
          }
          i += 2;
        }
      }
    }
    if (!ok) return DECIDED_NO;
    i = end;
  }
  return undecided ? UNDECIDED : DECIDED_YES;
}
