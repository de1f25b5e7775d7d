/**
 * The redisStream sink, `{ redisStream: { url, stream, maxLen? } }`: XADD of the event in Sluice's field layout
 * (what the redis-stream source reads as a CloudEvent): one field per attribute, `data` (JSON text, or the
 * string for text types) or `data_base64`. Done when Redis answers the XADD; `maxLen` trims approximately.
 */
import type { Redis } from "ioredis";
import { ErrorCode, SluiceError } from "../../../errors.ts";
import { isJsonMediaType } from "../../../event/grammar.ts";
import type { CloudEvent } from "../../../event/types.ts";
import type { TargetHandler } from "../target.ts";
import { ConnectionCache, SpecReader } from "./spec.ts";

export interface RedisStreamSinkSpec {
  url: string;
  stream: string;
  maxLen?: number;
}

export function eventFields(event: CloudEvent): string[] {
  const fields: string[] = [];
  for (const [k, v] of Object.entries(event)) {
    if (k === "data" || v === undefined || v === null) continue;
    fields.push(k, String(v));
  }
  if (event.data !== undefined && event.data_base64 === undefined) {
    const ct = event.datacontenttype;
    const asText = typeof event.data === "string" && ct !== undefined && !isJsonMediaType(ct);
    fields.push("data", asText ? (event.data as string) : JSON.stringify(event.data));
    if (ct === undefined) fields.push("datacontenttype", "application/json");
  }
  return fields;
}

export const redisStreamTarget: TargetHandler<RedisStreamSinkSpec> = {
  kind: "redisStream",
  compile(value, path) {
    const r = SpecReader.of("redisStream", value, path, ["url", "stream", "maxLen"], "{ url, stream, maxLen? }");
    const url = r.url(["redis:", "rediss:"]);
    const stream = r.string("stream", true);
    const maxLen = r.int("maxLen", 1, 1_000_000_000);
    return { url, stream, ...(maxLen === undefined ? {} : { maxLen }) };
  },
  defaultId: (value) => `redis-${String((value as { stream?: unknown })?.stream ?? "")}`,
  open() {
    const cache = new ConnectionCache<Redis>(
      async (url) => {
        const { Redis } = await import("ioredis");
        const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, connectionName: "sluice-sink" });
        client.on("error", () => undefined);
        await client.connect();
        return client;
      },
      async (c) => void c.disconnect(),
    );
    return {
      async deliver(spec, event) {
        const client = await cache.get(spec.url);
        const trim = spec.maxLen === undefined ? [] : ["MAXLEN", "~", String(spec.maxLen)];
        try {
          await client.call("XADD", spec.stream, ...trim, "*", ...eventFields(event));
        } catch (err) {
          if (client.status !== "ready") cache.drop(spec.url);
          throw new SluiceError(ErrorCode.SinkFailed, `XADD to ${spec.stream} failed: ${(err as Error).message}`, { retryable: true, cause: err });
        }
      },
      close: () => cache.close(),
    };
  },
};
