/** Spec checks shared by the broker sink kinds: each names the field that is wrong (`$.targets[0].amqp.url`). */
import { ErrorCode, SluiceError } from "../../../errors.ts";
import { isObject } from "../../../util/validate.ts";

export class SpecReader {
  constructor(
    readonly kind: string,
    readonly value: Record<string, unknown>,
    readonly path: string,
  ) {}

  static of(kind: string, value: unknown, path: string, known: readonly string[], shape: string): SpecReader {
    if (!isObject(value)) throw new SluiceError(ErrorCode.BadRequest, `${kind} must be ${shape}`, { path });
    for (const key of Object.keys(value)) {
      if (!known.includes(key)) throw new SluiceError(ErrorCode.BadRequest, `unknown ${kind} field "${key}"; fields are ${known.join(", ")}`, { path: `${path}.${key}` });
    }
    return new SpecReader(kind, value, path);
  }

  fail(key: string, message: string): never {
    throw new SluiceError(ErrorCode.BadRequest, `${this.kind} ${key} ${message}`, { path: `${this.path}.${key}` });
  }

  string(key: string, required: true): string;
  string(key: string, required?: false): string | undefined;
  string(key: string, required = false): string | undefined {
    const v = this.value[key];
    if (v === undefined) return required ? this.fail(key, "is missing") : undefined;
    if (typeof v !== "string" || v.length === 0) this.fail(key, "must be a non-empty string");
    return v;
  }

  url(protocols: readonly string[]): string {
    const v = this.string("url", true);
    let u: URL | undefined;
    try {
      u = new URL(v);
    } catch {
      // reported below
    }
    if (u === undefined || !protocols.includes(u.protocol)) this.fail("url", `must be a URL starting with ${protocols.map((p) => `${p}//`).join(" or ")}`);
    return v;
  }

  int(key: string, min: number, max: number): number | undefined {
    const v = this.value[key];
    if (v === undefined) return undefined;
    if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) this.fail(key, `must be a whole number from ${min} to ${max}`);
    return v;
  }
}

/**
 * Connections of one sink kind, one per URL, opened on first use and dropped when they fail (the next delivery
 * opens a new one; the failed delivery is retried by the dispatcher).
 */
export class ConnectionCache<C> {
  readonly #open = new Map<string, Promise<C>>();
  constructor(
    readonly connect: (url: string, drop: () => void) => Promise<C>,
    readonly closeOne: (c: C) => Promise<void>,
  ) {}

  get(url: string): Promise<C> {
    let c = this.#open.get(url);
    if (c === undefined) {
      const drop = () => {
        if (this.#open.get(url) === c) this.#open.delete(url);
      };
      c = this.connect(url, drop);
      c.catch(drop);
      this.#open.set(url, c);
    }
    return c;
  }

  drop(url: string): void {
    const c = this.#open.get(url);
    this.#open.delete(url);
    void c?.then((x) => this.closeOne(x)).catch(() => undefined);
  }

  async close(): Promise<void> {
    const all = [...this.#open.values()];
    this.#open.clear();
    await Promise.allSettled(all.map(async (c) => this.closeOne(await c)));
  }
}
