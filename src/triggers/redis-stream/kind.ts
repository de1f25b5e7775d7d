/**
 * The `redis-stream` source kind:
 * `{ kind: "redis-stream", url: "redis://127.0.0.1:6379", stream: "clicks", group: "sluice", type: "click.recorded" }`.
 * Options: `bus`, `group` (default `sluice`, created with MKSTREAM), `start` (where a new group begins: `0`, the
 * default, takes the stream's existing entries; `$` only new ones), `consumer` (default: this node's id),
 * `count` (entries per read, default 100), `claimIdleMs` (pending entries idle this long, of a consumer that
 * died, are claimed with XAUTOCLAIM; default 30000), `maxEventBytes`.
 */
import type { SourceKind } from "../source.ts";
import { OptionReader, type BrokerSourceOptions } from "../broker/options.ts";

export interface RedisStreamSourceOptions extends BrokerSourceOptions {
  stream: string;
  group: string;
  start: string;
  consumer?: string;
  count: number;
  claimIdleMs: number;
}

export const redisStreamSource: SourceKind<RedisStreamSourceOptions> = {
  kind: "redis-stream",
  validate(_name, options, key, problems) {
    const r = new OptionReader(options, key, problems);
    const common = r.common(["redis:", "rediss:"], ["stream", "group", "start", "consumer", "count", "claimIdleMs"]);
    const stream = r.string("stream", true);
    const group = r.string("group") ?? "sluice";
    const start = r.string("start") ?? "0";
    if (start !== "0" && start !== "$" && !/^\d+-\d+$/.test(start)) r.problem("start", 'must be "0" (the whole stream), "$" (new entries only) or an entry id');
    const consumer = r.string("consumer");
    const count = r.int("count", 1, 10_000) ?? 100;
    const claimIdleMs = r.int("claimIdleMs", 1000, 86_400_000) ?? 30_000;
    if (!r.ok || common === undefined || stream === undefined) return undefined;
    return { ...common, stream, group, start, ...(consumer === undefined ? {} : { consumer }), count, claimIdleMs };
  },
  async create(name, options) {
    const { RedisStreamSource } = await import("./source.ts");
    return new RedisStreamSource(name, options);
  },
};
