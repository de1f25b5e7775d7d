import { ErrorCode, SluiceError } from "../errors.ts";
import type { CloudEvent } from "./types.ts";
import { EventRule, EventValidationError, validateCloudEvent } from "./validate.ts";

/**
 * Encodes an event in the CloudEvents JSON (structured) format. Binary `data` (a `Uint8Array` or Buffer) is
 * written as `data_base64`, as the JSON format requires.
 *
 * Throws {@link EventValidationError} (`rule: "encodable"`) when `data` cannot be encoded: a cycle, a bigint,
 * or nesting deeper than the encoder's stack.
 *
 * @example
 * ```ts
 * encodeEvent({ specversion: "1.0", id: "1", source: "/shop", type: "order.created", data: { total: 5 } });
 * ```
 */
export function encodeEvent(event: CloudEvent): string {
  let value: CloudEvent = event;
  if (event.data instanceof Uint8Array) {
    const { data, ...rest } = event;
    value = { ...rest, data_base64: Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("base64") };
  }
  let encoded: string | undefined;
  try {
    encoded = JSON.stringify(value);
  } catch (cause) {
    throw new EventValidationError("data", EventRule.Encodable, `the event cannot be encoded as JSON: ${String(cause)}`, {
      cause,
    });
  }
  if (typeof encoded !== "string") {
    throw new EventValidationError("", EventRule.Object, "the event cannot be encoded as JSON");
  }
  return encoded;
}

/**
 * Decodes and validates an event in the CloudEvents JSON (structured) format. `data_base64` stays a base64
 * string (binary data); `data` is the decoded JSON value.
 *
 * Throws `SluiceError` `E_JSON_INVALID` when the text is not JSON, and {@link EventValidationError} when the
 * JSON is not a valid CloudEvent.
 *
 * @example
 * ```ts
 * const event = decodeEvent('{"specversion":"1.0","id":"1","source":"/shop","type":"order.created"}');
 * ```
 */
export function decodeEvent(json: string): CloudEvent {
  if (typeof json !== "string") {
    throw new SluiceError(ErrorCode.JsonInvalid, `an encoded event must be a string, got ${typeof json}`, { path: "$" });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch (cause) {
    throw new SluiceError(ErrorCode.JsonInvalid, `the event is not valid JSON: ${(cause as Error).message}`, {
      path: "$",
      cause,
    });
  }
  return validateCloudEvent(parsed);
}
