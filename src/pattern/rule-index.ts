/**
 * RuleIndex: many event patterns compiled into one shared structure, so that `match` costs far less than
 * evaluating every rule.
 *
 * How it works (an "access predicate" index, as content-based pub/sub systems use):
 * - Each rule's pattern is expanded into alternatives (one per combination of `$or` branches); an alternative
 *   is a flat list of leaf conditions that must all hold.
 * - Every alternative is filed under ONE of its required leaves, its anchor: the leaf whose index slot is
 *   currently the smallest. Exact values (and numeric `=`) go into a hash map per field path, equals-ignore-case
 *   into a map of lower-cased values, prefixes and suffixes (and wildcards with a literal head or tail) into
 *   maps probed once per distinct affix length; leaves no map can serve (anything-but, numeric ranges,
 *   exists:true, cidr) go into a per-path list that is taken whenever the path holds a value.
 * - The field paths form a trie; `match` walks the event along the trie only (not the whole event), probes the
 *   maps with the leaf values found, and collects the rules whose anchor was hit. Those candidates, and the
 *   rules with an alternative that has no required leaf (e.g. only `exists: false`), are then checked with the
 *   rule's own compiled pattern. The answer is therefore exactly what evaluating each pattern alone gives: the
 *   index only decides which rules are worth evaluating, and an anchor is a necessary condition of its
 *   alternative.
 * - Slots are kept small: when a slot reaches 64, 128, 256… entries, its alternatives move to another of their
 *   leaves when that leaf's slot is less than half as big (e.g. off a shared `type` onto a per-tenant field).
 */
import {
  compilePattern,
  expandAlternatives,
  patternRoot,
  type CompiledPattern,
  type Leaf,
  type Matcher,
} from "./compile.ts";

interface Rule {
  readonly id: string;
  readonly compiled: CompiledPattern;
  readonly alts: Alt[];
  /** True when some alternative has no required leaf: the rule is checked on every event. */
  readonly always: boolean;
  /** Last `match` call that made this rule a candidate. */
  stamp: number;
}

interface Alt {
  readonly rule: Rule;
  readonly leaves: readonly Leaf[];
  anchor: Leaf | null;
}

type Scalar = string | number | boolean | null;
type AffixKind = "prefix" | "prefixCi" | "suffix" | "suffixCi";
type SlotRef = { kind: "exact"; key: Scalar } | { kind: "ci"; key: string } | { kind: AffixKind; key: string };

/** Maps probed by affix: one lookup per distinct affix length that fits the value. */
class AffixIndex {
  readonly map = new Map<string, Alt[]>();
  /** Distinct key lengths, ascending, with the number of keys of each length. */
  lengths: number[] = [];
  private readonly lengthCount = new Map<number, number>();

  slot(key: string, create: boolean): Alt[] | undefined {
    let s = this.map.get(key);
    if (s === undefined && create) {
      s = [];
      this.map.set(key, s);
      const n = this.lengthCount.get(key.length) ?? 0;
      this.lengthCount.set(key.length, n + 1);
      if (n === 0) this.lengths = [...this.lengths, key.length].sort((a, b) => a - b);
    }
    return s;
  }

  drop(key: string): void {
    this.map.delete(key);
    const n = (this.lengthCount.get(key.length) ?? 1) - 1;
    if (n === 0) {
      this.lengthCount.delete(key.length);
      this.lengths = this.lengths.filter((l) => l !== key.length);
    } else {
      this.lengthCount.set(key.length, n);
    }
  }
}

/** Everything filed under one field path. */
class FieldIndex {
  exact: Map<Scalar, Alt[]> | null = null;
  ci: Map<string, Alt[]> | null = null;
  prefix: AffixIndex | null = null;
  prefixCi: AffixIndex | null = null;
  suffix: AffixIndex | null = null;
  suffixCi: AffixIndex | null = null;
  broad: Alt[] | null = null;
}

class PathNode {
  children: Map<string, PathNode> | null = null;
  /** For the walk: children as an array (faster to iterate than the map). */
  childList: [string, PathNode][] = [];
  index: FieldIndex | null = null;
}

const BROAD_PENALTY = 32;
const REBALANCE_FROM = 64;

/** The index slot a positive matcher can be filed under, or null when no map can serve it. */
function slotRef(m: Matcher): SlotRef | null {
  switch (m.k) {
    case "eq":
      return { kind: "exact", key: m.v };
    case "eqci":
      return { kind: "ci", key: m.v };
    case "prefix":
      return { kind: m.ci ? "prefixCi" : "prefix", key: m.v };
    case "suffix":
      return { kind: m.ci ? "suffixCi" : "suffix", key: m.v };
    case "wild": {
      const head = m.parts[0] as string;
      const tail = m.parts[m.parts.length - 1] as string;
      if (head.length > 0) return { kind: "prefix", key: head };
      if (tail.length > 0) return { kind: "suffix", key: tail };
      return null;
    }
    case "num":
      return m.lo === m.hi ? { kind: "exact", key: m.lo } : null;
    default:
      return null;
  }
}

/**
 * A set of rules (id → event pattern) that answers "which rules match this event" without evaluating every rule.
 * Results are exactly those of evaluating each rule's compiled pattern on its own.
 *
 * @example
 * ```ts
 * const index = new RuleIndex();
 * index.add("big-orders", { type: ["order.created"], data: { total: [{ numeric: [">", 100] }] } });
 * index.match({ type: "order.created", data: { total: 250 } }); // ["big-orders"]
 * ```
 */
export class RuleIndex {
  private readonly rules = new Map<string, Rule>();
  private readonly root = new PathNode();
  private readonly alwaysRules = new Set<Rule>();
  private epoch = 0;
  /** Diagnostics: how many rules the last `match` evaluated (candidates from the index plus always-checked rules). */
  lastCandidates = 0;

  /** Number of rules. */
  get size(): number {
    return this.rules.size;
  }

  has(ruleId: string): boolean {
    return this.rules.has(ruleId);
  }

  /**
   * Adds a rule, or replaces the rule with the same id.
   * @throws {PatternError} when the pattern is invalid; the index is then unchanged.
   */
  add(ruleId: string, pattern: unknown): void {
    const compiled = compilePattern(pattern);
    this.remove(ruleId);
    const leafAlts = expandAlternatives(patternRoot(compiled));
    const always = leafAlts.some((leaves) => !leaves.some((l) => !l.absent && l.matchers.length > 0));
    const rule: Rule = { id: ruleId, compiled, alts: [], always, stamp: 0 };
    this.rules.set(ruleId, rule);
    if (always) {
      this.alwaysRules.add(rule);
      return;
    }
    for (const leaves of leafAlts) {
      const alt: Alt = { rule, leaves, anchor: null };
      rule.alts.push(alt);
      this.anchor(alt, this.bestLeaf(alt));
    }
  }

  /** Removes a rule; returns false when there was none with that id. */
  remove(ruleId: string): boolean {
    const rule = this.rules.get(ruleId);
    if (rule === undefined) return false;
    this.rules.delete(ruleId);
    this.alwaysRules.delete(rule);
    for (const alt of rule.alts) this.unanchor(alt);
    return true;
  }

  /** Ids of all rules whose pattern matches the event, each once, in no particular order. Never throws. */
  match(event: unknown): string[] {
    const epoch = ++this.epoch;
    const candidates: Rule[] = [];
    const hit = (slot: Alt[] | undefined) => {
      if (slot === undefined) return;
      for (let i = 0; i < slot.length; i++) {
        const rule = (slot[i] as Alt).rule;
        if (rule.stamp !== epoch) {
          rule.stamp = epoch;
          candidates.push(rule);
        }
      }
    };
    this.walk(event, this.root, hit);
    for (const rule of this.alwaysRules) {
      if (rule.stamp !== epoch) {
        rule.stamp = epoch;
        candidates.push(rule);
      }
    }
    this.lastCandidates = candidates.length;
    const out: string[] = [];
    for (const rule of candidates) if (rule.compiled.matches(event)) out.push(rule.id);
    return out;
  }

  // ---- matching ----

  private walk(v: unknown, node: PathNode, hit: (slot: Alt[] | undefined) => void): void {
    if (Array.isArray(v)) {
      for (const e of v) this.walk(e, node, hit);
      return;
    }
    if (v === undefined) return;
    if (typeof v === "object" && v !== null) {
      const obj = v as Record<string, unknown>;
      for (const [key, child] of node.childList) {
        if (Object.hasOwn(obj, key)) this.walk(obj[key], child, hit);
      }
      return;
    }
    const fi = node.index;
    if (fi === null) return;
    if (fi.broad !== null) hit(fi.broad);
    if (fi.exact !== null) hit(fi.exact.get(v as Scalar));
    if (typeof v !== "string") return;
    if (fi.prefix !== null) probePrefix(fi.prefix, v, hit);
    if (fi.suffix !== null) probeSuffix(fi.suffix, v, hit);
    if (fi.ci !== null || fi.prefixCi !== null || fi.suffixCi !== null) {
      const lower = v.toLowerCase();
      if (fi.ci !== null) hit(fi.ci.get(lower));
      if (fi.prefixCi !== null) probePrefix(fi.prefixCi, lower, hit);
      if (fi.suffixCi !== null) probeSuffix(fi.suffixCi, lower, hit);
    }
  }

  // ---- anchoring ----

  private node(segs: readonly string[], create: true): PathNode;
  private node(segs: readonly string[], create: false): PathNode | undefined;
  private node(segs: readonly string[], create: boolean): PathNode | undefined {
    let n = this.root;
    for (const s of segs) {
      let next = n.children?.get(s);
      if (next === undefined) {
        if (!create) return undefined;
        next = new PathNode();
        n.children ??= new Map();
        n.children.set(s, next);
        n.childList.push([s, next]);
      }
      n = next;
    }
    return n;
  }

  /** Current size of the slot `ref` under `fi` (0 when absent). */
  private slotSize(fi: FieldIndex | null, ref: SlotRef): number {
    if (fi === null) return 0;
    switch (ref.kind) {
      case "exact":
        return fi.exact?.get(ref.key)?.length ?? 0;
      case "ci":
        return fi.ci?.get(ref.key)?.length ?? 0;
      default:
        return fi[ref.kind]?.map.get(ref.key)?.length ?? 0;
    }
  }

  /** Expected number of candidates an anchor on `leaf` brings per event (lower is better); Infinity if unusable. */
  private cost(leaf: Leaf): number {
    if (leaf.absent || leaf.matchers.length === 0) return Infinity;
    const fi = this.node(leaf.segs, false)?.index ?? null;
    let total = 0;
    for (const m of leaf.matchers) {
      const ref = slotRef(m);
      if (ref === null) return (fi?.broad?.length ?? 0) + 1 + BROAD_PENALTY;
      total += this.slotSize(fi, ref) + (ref.kind === "exact" || ref.kind === "ci" ? 1 : 2);
    }
    return total;
  }

  private bestLeaf(alt: Alt): Leaf {
    let best: Leaf | null = null;
    let bestCost = Infinity;
    for (const leaf of alt.leaves) {
      const c = this.cost(leaf);
      if (c < bestCost) {
        best = leaf;
        bestCost = c;
      }
    }
    if (best === null) throw new Error("RuleIndex: alternative without a required leaf"); // excluded by add()
    return best;
  }

  private anchor(alt: Alt, leaf: Leaf): void {
    alt.anchor = leaf;
    const fi = (this.node(leaf.segs, true).index ??= new FieldIndex());
    const refs = leaf.matchers.map(slotRef);
    if (refs.some((r) => r === null)) {
      (fi.broad ??= []).push(alt);
      return;
    }
    const grown: Alt[][] = [];
    for (const ref of refs as SlotRef[]) {
      const slot = this.slot(fi, ref, true);
      slot.push(alt);
      if (slot.length >= REBALANCE_FROM && (slot.length & (slot.length - 1)) === 0) grown.push(slot);
    }
    for (const slot of grown) this.rebalance(slot);
  }

  private unanchor(alt: Alt): void {
    const leaf = alt.anchor;
    if (leaf === null) return;
    alt.anchor = null;
    const fi = this.node(leaf.segs, false)?.index;
    if (fi === undefined || fi === null) return;
    const refs = leaf.matchers.map(slotRef);
    if (refs.some((r) => r === null)) {
      if (fi.broad !== null) {
        removeOne(fi.broad, alt);
        if (fi.broad.length === 0) fi.broad = null;
      }
      return;
    }
    for (const ref of refs as SlotRef[]) {
      const slot = this.slot(fi, ref, false);
      if (slot === undefined) continue;
      removeOne(slot, alt);
      if (slot.length === 0) this.dropSlot(fi, ref);
    }
  }

  private slot(fi: FieldIndex, ref: SlotRef, create: true): Alt[];
  private slot(fi: FieldIndex, ref: SlotRef, create: false): Alt[] | undefined;
  private slot(fi: FieldIndex, ref: SlotRef, create: boolean): Alt[] | undefined {
    if (ref.kind === "exact" || ref.kind === "ci") {
      const map = ref.kind === "exact" ? (fi.exact ??= new Map()) : ((fi.ci ??= new Map()) as Map<Scalar, Alt[]>);
      let s = map.get(ref.key);
      if (s === undefined && create) {
        s = [];
        map.set(ref.key, s);
      }
      return s;
    }
    const affix = (fi[ref.kind] ??= new AffixIndex());
    return affix.slot(ref.key, create);
  }

  private dropSlot(fi: FieldIndex, ref: SlotRef): void {
    if (ref.kind === "exact") fi.exact?.delete(ref.key);
    else if (ref.kind === "ci") fi.ci?.delete(ref.key);
    else fi[ref.kind]?.drop(ref.key);
  }

  /** Moves alternatives off a crowded slot onto a leaf whose slot is less than half as big. */
  private rebalance(slot: Alt[]): void {
    const seen = new Set<Alt>();
    for (const alt of [...slot]) {
      if (seen.has(alt)) continue;
      seen.add(alt);
      const current = alt.anchor;
      let best: Leaf | null = null;
      let bestCost = slot.length / 2;
      for (const leaf of alt.leaves) {
        if (leaf === current) continue;
        const c = this.cost(leaf);
        if (c < bestCost) {
          best = leaf;
          bestCost = c;
        }
      }
      if (best !== null) {
        this.unanchor(alt);
        this.anchor(alt, best);
      }
    }
  }
}

function removeOne(list: Alt[], alt: Alt): void {
  const i = list.indexOf(alt);
  if (i < 0) return;
  list[i] = list[list.length - 1] as Alt;
  list.pop();
}

function probePrefix(affix: AffixIndex, s: string, hit: (slot: Alt[] | undefined) => void): void {
  for (const len of affix.lengths) {
    if (len > s.length) break;
    hit(affix.map.get(len === s.length ? s : s.slice(0, len)));
  }
}

function probeSuffix(affix: AffixIndex, s: string, hit: (slot: Alt[] | undefined) => void): void {
  for (const len of affix.lengths) {
    if (len > s.length) break;
    hit(affix.map.get(len === s.length ? s : s.slice(s.length - len)));
  }
}
