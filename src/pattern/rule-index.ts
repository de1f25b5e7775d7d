/**
 * RuleIndex: many event patterns compiled into one shared structure, so that `match` costs far less than
 * evaluating every rule.
 *
 * How it works (an "access predicate" index, as content-based pub/sub systems use):
 * - Each rule's pattern is expanded into alternatives (one per combination of `$or` branches); an alternative
 *   is a flat list of leaf conditions that must all hold.
 * - Every alternative is filed under ONE of its required leaves, its anchor (chosen by `cost`, below). Exact values (and numeric `=`) go into a hash map per field path, equals-ignore-case
 *   into a map of lower-cased values, prefixes and suffixes (and wildcards with a literal head or tail) into
 *   maps probed once per distinct affix length; leaves no map can serve (anything-but, numeric ranges,
 *   exists:true, cidr) go into a per-path list that is taken whenever the path holds a value.
 * - The field paths form a trie; `match` walks the event along the trie only (not the whole event), probes the
 *   maps with the leaf values found, and collects the rules whose anchor was hit.
 * - Each slot entry carries a 32-bit signature of what its alternative requires besides the anchor (one hashed
 *   bit per single exact value or single prefix on a path, and the bits of one leaf listing several values, of
 *   which one must be present); the walk builds the event's signature from the
 *   same paths, and an entry whose bits the event lacks is skipped without touching the rule (a Bloom-style
 *   necessary condition: collisions only let extra candidates through). The candidates, and the
 *   rules with an alternative that has no required leaf (e.g. only `exists: false`), are then checked with the
 *   rule's own compiled pattern. The answer is therefore exactly what evaluating each pattern alone gives: the
 *   index only decides which rules are worth evaluating, and an anchor is a necessary condition of its
 *   alternative.
 * - The anchor is the leaf with the lowest expected number of candidates per event (see `cost`); as the index
 *   grows, every anchor is chosen again each time the rule count doubles.
 */
import {
  compilePattern,
  expandAlternatives,
  matchRoot,
  MAX_ARRAY_NESTING,
  patternRoot,
  type Leaf,
  type Matcher,
  type PatternNode,
} from "./compile.ts";
import {
  DECIDED_YES,
  programStrings,
  runProgram,
  UNDECIDED,
  writeProgram,
  type Program,
  type ProgramWord,
  type Registers,
} from "./program.ts";

/**
 * A rule is itself the entry in the index slots (one entry per alternative's anchor), so a hit reaches the
 * compiled tree in two hops; alternatives are not kept, they are expanded again when anchors are re-chosen.
 */
interface Rule {
  readonly id: string;
  readonly root: PatternNode;
  /** The anchor leaf of each alternative; empty when the rule is checked on every event. */
  anchors: readonly Leaf[];
  /** What the slots point to: everything `match` reads of a candidate in one array (see Head). */
  readonly head: Head;
}

/**
 * A rule as `match` sees it, one array: `[rule, id, stamp, hasProgram, ...program]`. `stamp` is the last `match`
 * that made the rule a candidate; for a rule with one alternative, the program (see program.ts) is evaluated on
 * the values the walk collected, and the rule object (with its compiled tree) is only read when the program
 * cannot decide or the rule has `$or` (hasProgram 0). A candidate that matches costs this array and the
 * strings it shares with other rules, not a walk through a tree of objects scattered over the heap.
 */
type Head = (Rule | ProgramWord)[];
const H_RULE = 0;
const H_ID = 1;
const H_STAMP = 2;
const H_HAS_PROGRAM = 3;
const H_PROGRAM = 4;

type Scalar = string | number | boolean | null;
type AffixKind = "prefix" | "prefixCi" | "suffix" | "suffixCi";
type SlotRef = { kind: "exact"; key: Scalar } | { kind: "ci"; key: string } | { kind: AffixKind; key: string };

/**
 * The rules filed under one key: entries of 4 words, interleaved so one event reads one array (the maps hold it
 * directly, no wrapper object): the rule's head, the signature words A and B of what its alternative requires
 * besides the anchor (the event needs every bit; two independent words cut false positives from ~30% to ~9%), and
 * the any-of bits (the event needs one of them; 0 when there is no such requirement). Entries the event's
 * signature rules out are skipped here, in the slot's own memory, without reading the rule. Signature words use
 * 30 bits so they are small integers stored inline (a boxed number would be one more object to read).
 */
type Slot = (Head | number)[];

/** Number of entries in a slot. */
const entries = (slot: Slot | null | undefined): number | undefined => (slot == null ? undefined : slot.length >> 2);

/** Removes one entry of the rule with this head (a rule has one entry per alternative anchored here). */
function removeEntry(e: Slot, head: Head): void {
  const i = e.indexOf(head);
  if (i < 0) return;
  const last = e.length - 4;
  for (let k = 0; k < 4; k++) e[i + k] = e[last + k] as Head | number;
  e.length = last;
}

/** Maps probed by affix: one lookup per distinct affix length that fits the value. */
class AffixIndex {
  readonly map = new Map<string, Slot>();
  /** Distinct key lengths, ascending, with the number of keys of each length. */
  lengths: number[] = [];
  private readonly lengthCount = new Map<number, number>();

  slot(key: string, create: boolean): Slot | undefined {
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
  exact: Map<Scalar, Slot> | null = null;
  ci: Map<string, Slot> | null = null;
  prefix: AffixIndex | null = null;
  prefixCi: AffixIndex | null = null;
  suffix: AffixIndex | null = null;
  suffixCi: AffixIndex | null = null;
  broad: Slot | null = null;
}

class PathNode {
  /** Mixed into signature hashes so equal values on different paths set different bits. */
  readonly id: number;
  /** Some rule's signature uses an exact value on this path: the walk hashes the event's values here. */
  signed = false;
  /** Prefix lengths some rule's signature uses on this path (ascending): the walk hashes those prefixes too. */
  signedPrefixes: number[] | null = null;
  constructor(id: number) {
    this.id = id;
  }
  children: Map<string, PathNode> | null = null;
  /** For the walk: children as an array (faster to iterate than the map). */
  childList: [string, PathNode][] = [];
  index: FieldIndex | null = null;
  /** The value register of this path (see program.ts), or -1 when no program reads it. */
  reg = -1;
}

const NO_LEAVES: readonly Leaf[] = Object.freeze([]);
const BROAD_PENALTY = 32;
const AFFIX_PENALTY = 1.5;
/** Re-anchoring starts once this many rules were added since the last time (and the count has doubled). */
const REANCHOR_FROM = 64;

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
  private nodes = 0;
  private readonly root = new PathNode(this.nodes++);
  /** Reused by `match`: the slots hit and the event's signature. */
  private hits: Slot[] = [];
  private eventSig = 0;
  private eventSigB = 0;
  private candidates: Head[] = [];
  private readonly alwaysRules = new Set<Rule>();
  private epoch = 0;
  /** Value registers filled by the walk, one per path some program reads. */
  private regs: Registers = { seen: new Float64Array(8), through: new Float64Array(8), value: [] };
  private regCount = 0;
  /**
   * One shared instance per string the programs and slot keys hold (with a reference count), so that comparing
   * an event value with a rule's string reads memory every rule with that string shares: it stays in cache.
   */
  private readonly strings = new Map<string, { s: string; n: number }>();
  private addedSinceReanchor = 0;
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
    const root = patternRoot(compilePattern(pattern));
    this.remove(ruleId);
    const alts = expandAlternatives(root);
    const head: Head = [null, ruleId, 0, alts.length === 1 ? 1 : 0];
    if (alts.length === 1 && !writeProgram(head as ProgramWord[], alts[0] as Leaf[], (segs) => this.register(segs), (t) => this.intern(t))) {
      for (const t of programStrings(head as Program, H_PROGRAM)) this.release(t);
      head.length = H_PROGRAM;
      head[H_HAS_PROGRAM] = 0;
    }
    const rule: Rule = { id: ruleId, root, anchors: [], head: head.slice() };
    rule.head[H_RULE] = rule;
    this.rules.set(ruleId, rule);
    this.anchorRule(rule);
    if (++this.addedSinceReanchor >= Math.max(REANCHOR_FROM, this.rules.size / 2)) {
      this.addedSinceReanchor = 0;
      this.reanchorAll();
    }
  }

  /** Removes a rule; returns false when there was none with that id. */
  remove(ruleId: string): boolean {
    const rule = this.rules.get(ruleId);
    if (rule === undefined) return false;
    this.rules.delete(ruleId);
    this.unanchorRule(rule);
    for (const t of programStrings(rule.head as Program, H_PROGRAM)) this.release(t);
    return true;
  }

  /** Ids of all rules whose pattern matches the event, each once, in no particular order. Never throws. */
  match(event: unknown): string[] {
    if (this.epoch >= 0x3fffffff) this.resetEpoch();
    const epoch = ++this.epoch;
    const hits = this.hits;
    hits.length = 0;
    this.eventSig = 0;
    this.eventSigB = 0;
    this.walk(event, this.root, 0, false);
    const sig = this.eventSig;
    const sigB = this.eventSigB;
    const candidates = this.candidates;
    candidates.length = 0;
    for (const slot of hits) {
      const e = slot;
      for (let i = 0; i < e.length; i += 4) {
        if (((e[i + 1] as number) & ~sig) !== 0 || ((e[i + 2] as number) & ~sigB) !== 0) continue;
        const any = e[i + 3] as number;
        if (any !== 0 && (any & sig) === 0) continue;
        const head = e[i] as Head;
        if (head[H_STAMP] !== epoch) {
          head[H_STAMP] = epoch;
          candidates.push(head);
        }
      }
    }
    hits.length = 0;
    for (const rule of this.alwaysRules) {
      if (rule.head[H_STAMP] !== epoch) {
        rule.head[H_STAMP] = epoch;
        candidates.push(rule.head);
      }
    }
    this.lastCandidates = candidates.length;
    const out: string[] = [];
    const regs = this.regs;
    for (const head of candidates) {
      const verdict = head[H_HAS_PROGRAM] === 1 ? runProgram(head as Program, H_PROGRAM, regs, epoch) : UNDECIDED;
      if (verdict === DECIDED_YES || (verdict === UNDECIDED && matchRoot((head[H_RULE] as Rule).root, event))) {
        out.push(head[H_ID] as string);
      }
    }
    candidates.length = 0;
    return out;
  }

  /** Walk numbers stay small integers (stored inline in the heads); past 2^30 walks they start again. */
  private resetEpoch(): void {
    this.epoch = 0;
    for (const rule of this.rules.values()) rule.head[H_STAMP] = 0;
    this.regs.seen.fill(0);
    this.regs.through.fill(0);
  }

  // ---- matching ----

  /** `through`: the value was reached through an array (its path's register cannot decide a program). */
  private walk(v: unknown, node: PathNode, nest: number, through: boolean): void {
    if (Array.isArray(v)) {
      // as deep as the compiled patterns look, no deeper (see MAX_ARRAY_NESTING)
      if (nest === MAX_ARRAY_NESTING) return;
      for (const e of v) this.walk(e, node, nest + 1, true);
      return;
    }
    if (v === undefined) return;
    if (typeof v === "object" && v !== null) {
      const obj = v as Record<string, unknown>;
      for (const [key, child] of node.childList) {
        if (Object.hasOwn(obj, key)) this.walk(obj[key], child, 0, through);
      }
      return;
    }
    const reg = node.reg;
    if (reg >= 0) {
      const r = this.regs;
      if (through || r.seen[reg] === this.epoch) r.through[reg] = this.epoch;
      else {
        r.seen[reg] = this.epoch;
        r.value[reg] = v;
      }
    }
    if (node.signed) this.addToSig(sigHash(node.id, v as Scalar));
    if (node.signedPrefixes !== null && typeof v === "string") this.addPrefixesToSig(node, v);
    const fi = node.index;
    if (fi === null) return;
    const hits = this.hits;
    if (fi.broad !== null) hits.push(fi.broad);
    if (fi.exact !== null) {
      const slot = fi.exact.get(v as Scalar);
      if (slot !== undefined) hits.push(slot);
    }
    if (typeof v !== "string") return;
    if (fi.prefix !== null) probePrefix(fi.prefix, v, hits);
    if (fi.suffix !== null) probeSuffix(fi.suffix, v, hits);
    if (fi.ci !== null || fi.prefixCi !== null || fi.suffixCi !== null) {
      const lower = v.toLowerCase();
      if (fi.ci !== null) {
        const slot = fi.ci.get(lower);
        if (slot !== undefined) hits.push(slot);
      }
      if (fi.prefixCi !== null) probePrefix(fi.prefixCi, lower, hits);
      if (fi.suffixCi !== null) probeSuffix(fi.suffixCi, lower, hits);
    }
  }

  /** Adds sigHash(-1 - node.id, v.slice(0, len)) for each signed prefix length, in one pass and no slices. */
  private addPrefixesToSig(node: PathNode, v: string): void {
    const lens = node.signedPrefixes as number[];
    let h = Math.imul(-1 - node.id + 1, 0x9e3779b1);
    let i = 0;
    for (const len of lens) {
      if (len > v.length) break;
      const upto = Math.min(len, 64);
      for (; i < upto; i++) h = Math.imul(h ^ v.charCodeAt(i), 0x01000193);
      this.addToSig(finish(h ^ len));
    }
  }

  private addToSig(h: number): void {
    this.eventSig |= bitA(h);
    this.eventSigB |= bitB(h);
  }

  // ---- registers and shared strings ----

  /** The register of a path, created on first use (paths, like trie nodes, are never freed). */
  private register(segs: readonly string[]): number {
    const node = this.node(segs, true);
    if (node.reg < 0) {
      node.reg = this.regCount++;
      const regs = this.regs;
      if (node.reg >= regs.seen.length) {
        const seen = new Float64Array(regs.seen.length * 2);
        const through = new Float64Array(regs.seen.length * 2);
        seen.set(regs.seen);
        through.set(regs.through);
        this.regs = { seen, through, value: regs.value };
      }
      this.regs.value.push(undefined);
    }
    return node.reg;
  }

  private intern(t: string): string {
    const e = this.strings.get(t);
    if (e !== undefined) {
      e.n++;
      return e.s;
    }
    this.strings.set(t, { s: t, n: 1 });
    return t;
  }

  private release(t: string): void {
    const e = this.strings.get(t);
    if (e !== undefined && --e.n === 0) this.strings.delete(t);
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
        next = new PathNode(this.nodes++);
        n.children ??= new Map();
        n.children.set(s, next);
        n.childList.push([s, next]);
      }
      n = next;
    }
    return n;
  }

  /**
   * Expected number of candidates an anchor on `leaf` adds per event (lower is better); Infinity if unusable.
   * Assuming event values spread over a field like the rules' values do, a slot in a map of k keys is hit by
   * about 1/k of the events that carry the field, so joining a slot of n costs about (n + 1) / k: a field with
   * thousands of distinct values (a tenant id) beats one with forty (the event type) even when its slots are
   * fuller. Affix maps are probed once per key length; lists that no map can serve are taken on every event.
   */
  private cost(leaf: Leaf): number {
    if (leaf.absent || leaf.matchers.length === 0) return Infinity;
    const fi = this.node(leaf.segs, false)?.index ?? null;
    let total = 0;
    for (const m of leaf.matchers) {
      const ref = slotRef(m);
      if (ref === null) return (entries(fi?.broad) ?? 0) + 1 + BROAD_PENALTY;
      if (fi === null) {
        total += 1;
        continue;
      }
      if (ref.kind === "exact" || ref.kind === "ci") {
        const map = ref.kind === "exact" ? fi.exact : (fi.ci as Map<Scalar, Slot> | null);
        const n = entries(map?.get(ref.key));
        total += ((n ?? 0) + 1) / ((map?.size ?? 0) + (n === undefined ? 1 : 0));
      } else {
        const affix = fi[ref.kind];
        const n = entries(affix?.map.get(ref.key));
        const lengths = (affix?.lengths.length ?? 0) + (affix?.lengths.includes(ref.key.length) ? 0 : 1);
        total += (AFFIX_PENALTY * ((n ?? 0) + 1) * lengths) / ((affix?.map.size ?? 0) + (n === undefined ? 1 : 0));
      }
    }
    return total;
  }

  private bestLeaf(leaves: readonly Leaf[]): Leaf | null {
    let best: Leaf | null = null;
    let bestCost = Infinity;
    for (const leaf of leaves) {
      const c = this.cost(leaf);
      if (c < bestCost) {
        best = leaf;
        bestCost = c;
      }
    }
    return best;
  }

  /** Files every alternative of the rule under its best leaf, or the rule in the always-checked set. */
  private anchorRule(rule: Rule): void {
    const alts = expandAlternatives(rule.root);
    const anchors: Leaf[] = [];
    for (const leaves of alts) {
      const best = this.bestLeaf(leaves);
      if (best === null) {
        // an alternative without a required leaf (e.g. only exists:false): check the rule on every event
        for (const leaf of anchors) this.unanchor(rule, leaf);
        rule.anchors = [];
        this.alwaysRules.add(rule);
        return;
      }
      this.anchor(rule, best, this.signature(leaves, best));
      anchors.push(best);
    }
    rule.anchors = anchors.slice();
  }

  private unanchorRule(rule: Rule): void {
    this.alwaysRules.delete(rule);
    for (const leaf of rule.anchors) this.unanchor(rule, leaf);
    rule.anchors = NO_LEAVES;
  }

  /**
   * The signature bit of one matcher on a path: an exact value, or a case-sensitive prefix (the walk then hashes
   * the event's strings at that prefix length). Null for matchers a bit cannot stand for.
   */
  private matcherHash(segs: readonly string[], m: Matcher): number | null {
    if (m.k === "prefix") {
      if (m.ci) return null;
      const node = this.node(segs, true);
      const lens = (node.signedPrefixes ??= []);
      if (!lens.includes(m.v.length)) {
        lens.push(m.v.length);
        lens.sort((x, y) => x - y);
      }
      return sigHash(-1 - node.id, m.v);
    }
    const value = exactValue(m);
    if (value === undefined) return null;
    const node = this.node(segs, true);
    node.signed = true;
    return sigHash(node.id, value);
  }

  /**
   * What an alternative requires besides its anchor, as bits: `all`, one bit per leaf with a single exact value
   * or prefix (the event must have every bit); `any`, the bits of one leaf listing several such values (the
   * event must have one of them; 0 when there is none). Other leaves add nothing.
   */
  private signature(leaves: readonly Leaf[], anchor: Leaf): Signature {
    let all = 0;
    let allB = 0;
    let any = 0;
    let anyValues = Infinity;
    for (const leaf of leaves) {
      if (leaf === anchor || leaf.absent || leaf.matchers.length === 0) continue;
      if (signable(leaf)) {
        const h = this.matcherHash(leaf.segs, leaf.matchers[0] as Matcher) as number;
        all |= bitA(h);
        allB |= bitB(h);
        continue;
      }
      if (leaf.matchers.length >= anyValues || leaf.matchers.length > 8) continue;
      let bits = 0;
      for (const m of leaf.matchers) {
        const h = m.k === "prefix" || exactValue(m) !== undefined ? this.matcherHash(leaf.segs, m) : null;
        if (h === null) {
          bits = 0;
          break;
        }
        bits |= bitA(h);
      }
      if (bits !== 0) {
        any = bits;
        anyValues = leaf.matchers.length;
      }
    }
    return { all, allB, any };
  }

  private anchor(rule: Rule, leaf: Leaf, sig: Signature): void {
    const fi = (this.node(leaf.segs, true).index ??= new FieldIndex());
    const refs = leaf.matchers.map(slotRef);
    if (refs.some((r) => r === null)) {
      (fi.broad ??= []).push(rule.head, sig.all, sig.allB, sig.any);
      return;
    }
    for (const ref of refs as SlotRef[]) this.slot(fi, ref, true).push(rule.head, sig.all, sig.allB, sig.any);
  }

  private unanchor(rule: Rule, leaf: Leaf): void {
    const fi = this.node(leaf.segs, false)?.index;
    if (fi === undefined || fi === null) return;
    const refs = leaf.matchers.map(slotRef);
    if (refs.some((r) => r === null)) {
      if (fi.broad !== null) {
        removeEntry(fi.broad, rule.head);
        if (fi.broad.length === 0) fi.broad = null;
      }
      return;
    }
    for (const ref of refs as SlotRef[]) {
      const slot = this.slot(fi, ref, false);
      if (slot === undefined) continue;
      removeEntry(slot, rule.head);
      if (slot.length === 0) this.dropSlot(fi, ref);
    }
  }

  private slot(fi: FieldIndex, ref: SlotRef, create: true): Slot;
  private slot(fi: FieldIndex, ref: SlotRef, create: false): Slot | undefined;
  private slot(fi: FieldIndex, ref: SlotRef, create: boolean): Slot | undefined {
    if (ref.kind === "exact" || ref.kind === "ci") {
      const map = ref.kind === "exact" ? (fi.exact ??= new Map()) : ((fi.ci ??= new Map()) as Map<Scalar, Slot>);
      let s = map.get(ref.key);
      if (s === undefined && create) {
        s = [];
        map.set(typeof ref.key === "string" ? this.intern(ref.key) : ref.key, s);
      }
      return s;
    }
    const affix = (fi[ref.kind] ??= new AffixIndex());
    return affix.slot(ref.key, false) ?? (create ? affix.slot(this.intern(ref.key), true) : undefined);
  }

  private dropSlot(fi: FieldIndex, ref: SlotRef): void {
    if (typeof ref.key === "string") this.release(ref.key);
    if (ref.kind === "exact") fi.exact?.delete(ref.key);
    else if (ref.kind === "ci") fi.ci?.delete(ref.key);
    else fi[ref.kind]?.drop(ref.key);
  }

  /**
   * Re-chooses every anchor. Anchors chosen while the index was small can be poor once it has grown (the
   * tenant field had few keys then); running this each time the rule count doubles keeps the cost amortised O(1).
   */
  private reanchorAll(): void {
    for (const rule of this.rules.values()) {
      if (this.alwaysRules.has(rule)) continue;
      this.unanchorRule(rule);
      this.anchorRule(rule);
    }
  }
}

/** The single exact value, or the single case-sensitive prefix, a leaf requires (what a signature can hold). */
function exactValue(m: Matcher): Scalar | undefined {
  return m.k === "eq" ? m.v : m.k === "num" && m.lo === m.hi ? m.lo : undefined;
}
function signable(leaf: Leaf): boolean {
  if (leaf.matchers.length === 0) return false;
  const first = leaf.matchers[0] as Matcher;
  if (first.k === "prefix" && !first.ci) return leaf.matchers.every((m) => m.k === "prefix" && !m.ci && m.v === first.v);
  const value = exactValue(first);
  return value !== undefined && leaf.matchers.every((m) => exactValue(m) === value);
}

interface Signature {
  all: number;
  allB: number;
  any: number;
}

/** Signature bits: 30 of them per word, so every word is a small integer (see Slot). */
const bitA = (h: number) => 1 << ((h >>> 0) % 30);
const bitB = (h: number) => 1 << ((h >>> 8) % 30);

/**
 * The signature hash of a value on a path; equal values (SameValueZero, as exact matching uses) hash alike.
 */
function sigHash(pathId: number, v: Scalar): number {
  let h = Math.imul(pathId + 1, 0x9e3779b1);
  if (typeof v === "string") {
    const n = Math.min(v.length, 64);
    for (let i = 0; i < n; i++) h = Math.imul(h ^ v.charCodeAt(i), 0x01000193);
    h ^= v.length;
  } else if (typeof v === "number") {
    h ^= v === 0 ? 0x7f4a7c15 : Math.imul((v | 0) ^ ((v * 1048576) | 0), 0x85ebca6b) ^ 0x2c1b3c6d;
  } else {
    h ^= v === true ? 0x165667b1 : v === false ? 0x27d4eb2f : 0x61c88647;
  }
  return finish(h);
}

function finish(h: number): number {
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d);
  h ^= h >>> 13;
  return h;
}

function probePrefix(affix: AffixIndex, s: string, hits: Slot[]): void {
  for (const len of affix.lengths) {
    if (len > s.length) break;
    const slot = affix.map.get(len === s.length ? s : s.slice(0, len));
    if (slot !== undefined) hits.push(slot);
  }
}

function probeSuffix(affix: AffixIndex, s: string, hits: Slot[]): void {
  for (const len of affix.lengths) {
    if (len > s.length) break;
    const slot = affix.map.get(len === s.length ? s : s.slice(s.length - len));
    if (slot !== undefined) hits.push(slot);
  }
}
