/** Option checks shared by the broker source kinds; each problem names its key (`sources.orders.url`). */
import type { ProblemSink } from "../source.ts";

/** What every broker source takes: where to connect, the bus it publishes into, the type of wrapped messages. */
export interface BrokerSourceOptions {
  url: string;
  bus: string;
  type: string;
  /** Largest event a message may become (bytes); larger ones are dead-lettered. */
  maxEventBytes?: number;
}

export const commonKeys = ["url", "bus", "type", "maxEventBytes"] as const;

export class OptionReader {
  ok = true;
  constructor(
    readonly options: Record<string, unknown>,
    readonly key: string,
    readonly problems: ProblemSink,
  ) {}

  problem(name: string, message: string, fix?: string): undefined {
    this.ok = false;
    this.problems.add(`${this.key}.${name}`, message, fix);
    return undefined;
  }

  string(name: string, required: true): string;
  string(name: string, required?: false): string | undefined;
  string(name: string, required = false): string | undefined {
    const v = this.options[name];
    if (v === undefined) return required ? this.problem(name, "is missing") : undefined;
    if (typeof v !== "string" || v.length === 0) return this.problem(name, "must be a non-empty string");
    return v;
  }

  int(name: string, min: number, max: number): number | undefined {
    const v = this.options[name];
    if (v === undefined) return undefined;
    if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) return this.problem(name, `must be a whole number from ${min} to ${max}`);
    return v;
  }

  bool(name: string): boolean | undefined {
    const v = this.options[name];
    if (v === undefined) return undefined;
    if (typeof v !== "boolean") return this.problem(name, "must be true or false");
    return v;
  }

  url(protocols: readonly string[]): string | undefined {
    const v = this.string("url", true);
    if (v === undefined) return undefined;
    let url: URL;
    try {
      url = new URL(v);
    } catch {
      return this.problem("url", "is not a URL", `e.g. ${protocols[0]}//127.0.0.1`);
    }
    if (!protocols.includes(url.protocol)) return this.problem("url", `must start with ${protocols.map((p) => `${p}//`).join(" or ")}`);
    return v;
  }

  /** url, bus (default `default`), type (required), maxEventBytes; unknown keys are reported against `known`. */
  common(protocols: readonly string[], known: readonly string[]): BrokerSourceOptions | undefined {
    this.problems.unknownKeys(this.options, [...commonKeys, ...known], this.key);
    const url = this.url(protocols);
    const bus = this.options.bus ?? "default";
    this.problems.busRef(bus, `${this.key}.bus`);
    const type = this.string("type", true);
    const maxEventBytes = this.int("maxEventBytes", 1, 16 * 1024 * 1024);
    if (url === undefined || type === undefined || typeof bus !== "string") return undefined;
    return { url, bus, type, ...(maxEventBytes === undefined ? {} : { maxEventBytes }) };
  }
}

/** A broker URL without its credentials, for `source` attributes, logs and status. */
export function publicUrl(url: string): string {
  const u = new URL(url);
  return `${u.protocol}//${u.host}`;
}
