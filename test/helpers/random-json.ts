/**
 * Seeded random JSON for fuzz tests: the same seed gives the same values, so a failure can be replayed.
 */

/** mulberry32: a tiny, fast, seedable PRNG returning floats in [0, 1). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class RandomJson {
  constructor(readonly rand: () => number) {}

  int(n: number): number {
    return Math.floor(this.rand() * n);
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)] as T;
  }

  string(): string {
    const pools = [
      "abcxyz",
      "0123456789",
      "ABC-_.:/?#[]@!$&'()*+,;=%",
      " \t\n\r\"\\<>{}",
      "éü\u2028\u0000\ud83d\ude00\ud800",
      "T Z + - .",
    ];
    const len = this.pick([0, 1, 2, 5, 12, 30, 200]);
    let s = "";
    for (let i = 0; i < len; i++) {
      const pool = this.pick(pools);
      s += pool[this.int(pool.length)];
    }
    return s;
  }

  key(): string {
    return this.pick([
      "id",
      "source",
      "type",
      "specversion",
      "subject",
      "time",
      "datacontenttype",
      "dataschema",
      "data",
      "data_base64",
      "__proto__",
      "constructor",
      "prototype",
      "toString",
      "ext1",
      "x".repeat(21),
      "Upper",
      "",
      this.string(),
    ]);
  }

  number(): number {
    return this.pick([0, -0, 1, -1, 1.5, 2147483647, 2147483648, -2147483649, 1e308, -1e-308, Number.MAX_SAFE_INTEGER, this.rand() * 1e6]);
  }

  /** A random JSON value, nested at most `depth` levels. */
  value(depth = 4): unknown {
    const kind = this.int(depth <= 0 ? 4 : 7);
    switch (kind) {
      case 0:
        return null;
      case 1:
        return this.rand() < 0.5;
      case 2:
        return this.number();
      case 3:
        return this.string();
      case 4: {
        const n = this.int(5);
        const arr: unknown[] = [];
        for (let i = 0; i < n; i++) arr.push(this.value(depth - 1));
        return arr;
      }
      default: {
        const n = this.int(6);
        const obj: Record<string, unknown> = {};
        for (let i = 0; i < n; i++) {
          Object.defineProperty(obj, this.key(), { value: this.value(depth - 1), enumerable: true, writable: true, configurable: true });
        }
        return obj;
      }
    }
  }

  /** A deeply nested array or object (to probe stack depth). */
  deep(levels: number): unknown {
    let v: unknown = this.value(1);
    for (let i = 0; i < levels; i++) v = this.rand() < 0.5 ? [v] : { a: v };
    return v;
  }
}
