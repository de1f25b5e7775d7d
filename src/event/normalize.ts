import { ErrorCode } from "../errors.ts";
import { encodeEvent } from "./codec.ts";
import { jsonTextDepth, MAX_JSON_DEPTH } from "./json-depth.ts";
import type { CloudEvent } from "./types.ts";
import { EventRule, EventValidationError, validateEvent } from "./validate.ts";

/** EventBridge's limit, measured on the encoded (UTF-8 JSON) event. */
export const DEFAULT_MAX_EVENT_SIZE_BYTES = 256 * 1024;

export interface NormalizeOptions {
  /** Largest encoded event accepted, in UTF-8 bytes. Default 256 KiB. */
  maxSizeBytes?: number;
  /** Clock for the default `time` and the id's timestamp, in epoch ms. Default `Date.now`. */
  now?: () => number;
}

export interface NormalizedEvent {
  /** The validated event with Sluice's defaults applied. */
  event: CloudEvent;
  /** Its JSON (structured) encoding, ready to store. */
  encoded: string;
  /** `encoded`'s length in UTF-8 bytes. */
  sizeBytes: number;
}

/**
 * Applies Sluice's defaults, validates and encodes an event, as publish does:
 * `id` defaults to a new UUIDv7 (time-sortable) and `time` to now (RFC 3339, UTC, milliseconds); then the event is
 * validated (CloudEvents 1.0, see `validateCloudEvent`), encoded once, and its encoded size checked.
 *
 * Throws {@link EventValidationError}: code `E_EVENT_INVALID`, or `E_EVENT_TOO_LARGE` (rule `max-size`) when the
 * encoding is larger than `maxSizeBytes`, or `E_JSON_TOO_DEEP` (rule `max-depth`) when it nests more than
 * `MAX_JSON_DEPTH` levels. The input is never modified.
 *
 * @example
 * ```ts
 * const { event, encoded, sizeBytes } = normalizeEvent({ specversion: "1.0", source: "/shop", type: "order.created" });
 * ```
 */
export function normalizeEvent(input: unknown, options: NormalizeOptions = {}): NormalizedEvent {
  const maxSizeBytes = options.maxSizeBytes ?? DEFAULT_MAX_EVENT_SIZE_BYTES;
  const event = validateEvent(input, { now: options.now ?? Date.now });
  const encoded = encodeEvent(event);
  const sizeBytes = Buffer.byteLength(encoded, "utf8");
  if (sizeBytes > maxSizeBytes) {
    throw new EventValidationError(
      "",
      EventRule.MaxSize,
      `the encoded event is ${sizeBytes} bytes, over the ${maxSizeBytes}-byte limit`,
      { code: ErrorCode.EventTooLarge },
    );
  }
  const depth = jsonTextDepth(encoded, MAX_JSON_DEPTH);
  if (depth > MAX_JSON_DEPTH) {
    throw new EventValidationError(
      "data",
      EventRule.MaxDepth,
      `the event nests objects and arrays more than ${MAX_JSON_DEPTH} levels deep (the limit is ${MAX_JSON_DEPTH}, counting the event itself)`,
      { code: ErrorCode.JsonTooDeep },
    );
  }
  return { event, encoded, sizeBytes };
}
