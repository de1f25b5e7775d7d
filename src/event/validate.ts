import { ErrorCode, SluiceError } from "../errors.ts";
import { isAbsoluteUri, isAttributeName, isBase64, isMediaType, isRfc3339, isUriReference } from "./grammar.ts";
import { newEventId } from "./ids.ts";
import type { CloudEvent } from "./types.ts";

/** The rule an event broke; stable strings, carried by {@link EventValidationError.rule}. */
export const EventRule = {
  /** The event is not a JSON object. */
  Object: "object",
  /** A required attribute (`id`, `source`, `specversion`, `type`) is absent or null. */
  Required: "required",
  /** An attribute has the wrong JSON type (e.g. `time` is a number). */
  Type: "type",
  /** A string attribute that must not be empty is empty. */
  NonEmpty: "non-empty",
  /** `specversion` is not `"1.0"`. */
  SpecVersion: "specversion",
  /** `source` is not an RFC 3986 URI-reference. */
  UriReference: "uri-reference",
  /** `dataschema` is not an absolute RFC 3986 URI. */
  Uri: "uri",
  /** `time` is not an RFC 3339 timestamp. */
  Timestamp: "rfc3339",
  /** `datacontenttype` is not an RFC 2046 media type. */
  MediaType: "media-type",
  /** An extension attribute name is not 1–20 lower-case ASCII letters or digits. */
  ExtensionName: "extension-name",
  /** An extension attribute value is not a string, an integer or a boolean. */
  ExtensionValue: "extension-value",
  /** An integer attribute is outside the CloudEvents Integer range (32-bit signed). */
  IntegerRange: "integer-range",
  /** Both `data` and `data_base64` are present. */
  DataExclusive: "data-exclusive",
  /** `data_base64` is not valid RFC 4648 base64. */
  Base64: "base64",
  /** `data` holds a value JSON cannot encode (a function, a bigint, a cycle, nesting too deep for the encoder). */
  Encodable: "encodable",
  /** The data could not be decoded according to its content type (e.g. a JSON body that is not JSON). */
  DataDecode: "data-decode",
  /** An HTTP header could not be percent-decoded as UTF-8. */
  PercentEncoding: "percent-encoding",
  /** The encoded event is larger than the size limit (code `E_EVENT_TOO_LARGE`). */
  MaxSize: "max-size",
  /** The encoded event nests objects and arrays deeper than `MAX_JSON_DEPTH` (code `E_JSON_TOO_DEEP`). */
  MaxDepth: "max-depth",
} as const;
export type EventRule = (typeof EventRule)[keyof typeof EventRule];

/** The codes an {@link EventValidationError} carries. */
export type EventErrorCode = typeof ErrorCode.EventInvalid | typeof ErrorCode.EventTooLarge | typeof ErrorCode.JsonTooDeep;

/**
 * An event broke a CloudEvents 1.0 rule or a Sluice limit. `attribute` names the attribute (empty for the whole
 * event), `rule` the rule it broke, `path` its JSON path (`$.time`, `$["Bad-Name"]`).
 *
 * @example
 * ```ts
 * try { validateCloudEvent({ specversion: "1.0", id: "1", source: "/x", type: "t", time: "yesterday" }); }
 * catch (err) { if (err instanceof EventValidationError) console.log(err.attribute, err.rule); } // "time" "rfc3339"
 * ```
 */
export class EventValidationError extends SluiceError {
  override readonly name: string = "EventValidationError";
  override readonly path: string;

  constructor(
    readonly attribute: string,
    readonly rule: EventRule,
    message: string,
    options: { code?: EventErrorCode; cause?: unknown; path?: string } = {},
  ) {
    const path = options.path ?? attributePath(attribute);
    super(options.code ?? ErrorCode.EventInvalid, message, {
      path,
      ...(options.cause === undefined ? {} : { cause: options.cause }),
    });
    this.path = path;
  }

  override toJSON(): ReturnType<SluiceError["toJSON"]> & { attribute: string; rule: EventRule } {
    return { ...super.toJSON(), attribute: this.attribute, rule: this.rule };
  }
}

const SIMPLE_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** `$`, `$.time`, or `$["Odd Name"]` for names that are not identifiers. */
export function attributePath(attribute: string): string {
  if (attribute === "") return "$";
  return SIMPLE_NAME.test(attribute) ? `$.${attribute}` : `$[${JSON.stringify(attribute)}]`;
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value === "object" ? "an object" : typeof value;
}

function fail(attribute: string, rule: EventRule, message: string): never {
  throw new EventValidationError(attribute, rule, message);
}

function requireString(attribute: string, value: unknown): string {
  if (typeof value !== "string") fail(attribute, EventRule.Type, `\`${attribute}\` must be a string, got ${describe(value)}`);
  if (value.length === 0) fail(attribute, EventRule.NonEmpty, `\`${attribute}\` must be a non-empty string`);
  return value;
}

const INT32_MIN = -2147483648;
const INT32_MAX = 2147483647;

/** CloudEvents type system in JSON: String (and URI, Timestamp, Binary as strings), Integer, Boolean. */
function checkExtensionValue(name: string, value: unknown): void {
  switch (typeof value) {
    case "string":
    case "boolean":
      return;
    case "number":
      if (!Number.isInteger(value)) {
        fail(name, EventRule.ExtensionValue, `extension \`${name}\` is a number but not an integer (CloudEvents Integer)`);
      }
      if (value < INT32_MIN || value > INT32_MAX) {
        fail(name, EventRule.IntegerRange, `extension \`${name}\` is outside the CloudEvents Integer range (32-bit signed)`);
      }
      return;
    default:
      fail(
        name,
        EventRule.ExtensionValue,
        `extension \`${name}\` must be a string, an integer or a boolean, got ${describe(value)}`,
      );
  }
}

/**
 * Validates a CloudEvents 1.0 event in its JSON (structured) form and returns a clean copy: attributes in
 * canonical order, extensions after them, data last. Applies no Sluice defaults (see `normalizeEvent`).
 *
 * Per the JSON format, an attribute whose value is `null` is treated as absent. `data: null` is kept as a JSON
 * null payload unless `data_base64` is present. A `Uint8Array` (or Buffer) `data` becomes `data_base64`.
 *
 * Throws {@link EventValidationError} naming the first attribute that breaks a rule. Never throws anything else,
 * whatever the input.
 *
 * @example
 * ```ts
 * const event = validateCloudEvent(JSON.parse(body));
 * ```
 */
export function validateCloudEvent(input: unknown): CloudEvent {
  return validateEvent(input, undefined);
}

/** Sluice's defaults for absent `id` and `time`, applied by `normalizeEvent` while validating (no copy). */
export interface EventDefaults {
  /** The current time in epoch ms; read at most once per event. */
  now(): number;
}

let lastIsoMs = Number.NaN;
let lastIso = "";

/** `new Date(ms).toISOString()`, remembered for the last millisecond (bursts publish many events per ms). */
function isoTime(ms: number): string {
  if (ms !== lastIsoMs) {
    lastIso = new Date(ms).toISOString();
    lastIsoMs = ms;
  }
  return lastIso;
}

/** Internal: {@link validateCloudEvent}, filling an absent (or null) `id` and `time` when `defaults` is given. */
export function validateEvent(input: unknown, defaults: EventDefaults | undefined): CloudEvent {
  if (input === null || typeof input !== "object" || Array.isArray(input)) {
    fail("", EventRule.Object, `an event must be a JSON object, got ${describe(input)}`);
  }
  const src = input as Record<string, unknown>;
  let specversion: unknown;
  let id: unknown;
  let source: unknown;
  let type: unknown;
  let subject: unknown;
  let time: unknown;
  let datacontenttype: unknown;
  let dataschema: unknown;
  let data: unknown;
  let hasData = false;
  let dataBase64: unknown;
  let extensions: string[] | undefined;

  for (const key of Object.keys(src)) {
    const value = src[key];
    if (value === undefined) continue;
    if (value === null && key !== "data") continue; // JSON format: null means absent
    switch (key) {
      case "specversion":
        specversion = value;
        break;
      case "id":
        id = value;
        break;
      case "source":
        source = value;
        break;
      case "type":
        type = value;
        break;
      case "subject":
        subject = value;
        break;
      case "time":
        time = value;
        break;
      case "datacontenttype":
        datacontenttype = value;
        break;
      case "dataschema":
        dataschema = value;
        break;
      case "data":
        data = value;
        hasData = true;
        break;
      case "data_base64":
        dataBase64 = value;
        break;
      default:
        if (!isAttributeName(key)) {
          fail(
            key,
            EventRule.ExtensionName,
            `extension attribute names must be 1 to 20 lower-case ASCII letters or digits, got ${JSON.stringify(key)}`,
          );
        }
        checkExtensionValue(key, value);
        (extensions ??= []).push(key);
    }
  }

  if (specversion === undefined) fail("specversion", EventRule.Required, "`specversion` is required");
  if (specversion !== "1.0") {
    if (typeof specversion !== "string") {
      fail("specversion", EventRule.Type, `\`specversion\` must be a string, got ${describe(specversion)}`);
    }
    fail("specversion", EventRule.SpecVersion, `\`specversion\` must be "1.0", got ${JSON.stringify(specversion)}`);
  }
  let nowMs: number | undefined;
  if (defaults !== undefined) {
    if (id === undefined) id = newEventId((nowMs ??= defaults.now()));
    if (time === undefined) time = isoTime((nowMs ??= defaults.now()));
  }
  if (id === undefined) fail("id", EventRule.Required, "`id` is required");
  requireString("id", id);
  if (source === undefined) fail("source", EventRule.Required, "`source` is required");
  if (!isUriReference(requireString("source", source))) {
    fail("source", EventRule.UriReference, "`source` must be an RFC 3986 URI-reference");
  }
  if (type === undefined) fail("type", EventRule.Required, "`type` is required");
  requireString("type", type);

  const out: CloudEvent = { specversion: "1.0", id: id as string, source: source as string, type: type as string };
  if (subject !== undefined) out.subject = requireString("subject", subject);
  if (time !== undefined) {
    if (!isRfc3339(requireString("time", time))) fail("time", EventRule.Timestamp, "`time` must be an RFC 3339 timestamp");
    out.time = time as string;
  }
  if (datacontenttype !== undefined) {
    if (!isMediaType(requireString("datacontenttype", datacontenttype))) {
      fail("datacontenttype", EventRule.MediaType, "`datacontenttype` must be an RFC 2046 media type");
    }
    out.datacontenttype = datacontenttype as string;
  }
  if (dataschema !== undefined) {
    if (!isAbsoluteUri(requireString("dataschema", dataschema))) {
      fail("dataschema", EventRule.Uri, "`dataschema` must be an absolute RFC 3986 URI");
    }
    out.dataschema = dataschema as string;
  }
  if (extensions !== undefined) for (const name of extensions) out[name] = src[name];

  if (dataBase64 !== undefined) {
    if (hasData && data !== null) {
      fail("data_base64", EventRule.DataExclusive, "`data` and `data_base64` are mutually exclusive");
    }
    if (typeof dataBase64 !== "string") {
      fail("data_base64", EventRule.Type, `\`data_base64\` must be a string, got ${describe(dataBase64)}`);
    }
    if (!isBase64(dataBase64)) fail("data_base64", EventRule.Base64, "`data_base64` must be RFC 4648 base64");
    out.data_base64 = dataBase64;
  } else if (hasData) {
    if (data instanceof Uint8Array) {
      out.data_base64 = Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("base64");
    } else {
      const t = typeof data;
      if (t === "function" || t === "symbol" || t === "bigint") {
        fail("data", EventRule.Encodable, `\`data\` must be a JSON value, got ${t}`);
      }
      out.data = data;
    }
  }
  return out;
}
