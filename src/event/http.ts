/**
 * The CloudEvents 1.0 HTTP protocol binding: reading events from a request (binary, structured and batched
 * content modes) and writing an event as a request (for webhook targets).
 *
 * Pure: takes headers and a body, returns events; the HTTP server and client live elsewhere.
 */
import { ErrorCode, SluiceError } from "../errors.ts";
import { encodeEvent } from "./codec.ts";
import { isJsonMediaType, mediaTypeEssence } from "./grammar.ts";
import { assertJsonDepth, MAX_JSON_DEPTH } from "./json-depth.ts";
import { type NormalizeOptions, normalizeEvent } from "./normalize.ts";
import { type CloudEvent, SluiceExtension } from "./types.ts";
import { type EventErrorCode, EventRule, EventValidationError } from "./validate.ts";

/** Request headers as Node gives them (`IncomingHttpHeaders`) or as a plain record. Names are case-insensitive. */
export type HttpHeaders = Readonly<Record<string, string | readonly string[] | undefined>>;

export interface HttpEventsRequest {
  headers: HttpHeaders;
  body: Buffer;
  /** The request's Content-Type; defaults to the `content-type` header. */
  contentType?: string | undefined;
}

/** The content mode a request used (HTTP binding, Section 3). */
export type HttpContentMode = "binary" | "structured" | "batch";

/** One entry of a request: the normalized event, or why it was rejected. */
export type HttpEventResult =
  | { ok: true; event: CloudEvent; encoded: string; sizeBytes: number }
  | { ok: false; error: EventValidationError };

export interface ParsedHttpEvents {
  mode: HttpContentMode;
  /** One result per event, in request order (one for binary and structured mode). */
  results: HttpEventResult[];
}

/** An outgoing HTTP message for one event or a batch. */
export interface HttpMessage {
  headers: Record<string, string>;
  body: Buffer;
}

export const CE_STRUCTURED_JSON = "application/cloudevents+json";
export const CE_BATCH_JSON = "application/cloudevents-batch+json";

const TEXT_TYPES = new Set([
  "application/xml",
  "application/javascript",
  "application/ecmascript",
  "application/x-www-form-urlencoded",
  "application/yaml",
  "application/x-yaml",
  "application/graphql",
  "application/sql",
]);

/** Media types whose body is text (decoded to a `data` string); everything not JSON or text is binary. */
export function isTextMediaType(contentType: string): boolean {
  const essence = mediaTypeEssence(contentType);
  if (essence === undefined) return false;
  return essence.startsWith("text/") || TEXT_TYPES.has(essence) || essence.endsWith("+xml") || essence.endsWith("+yaml");
}

function headerValue(headers: HttpHeaders, name: string): string | undefined {
  for (const key of Object.keys(headers)) {
    if (key.length === name.length && key.toLowerCase() === name) {
      const v = headers[key];
      return v === undefined ? undefined : typeof v === "string" ? v : v.join(",");
    }
  }
  return undefined;
}

const CHARSET = /;\s*charset\s*=\s*"?([^";\s]+)"?/i;
const UTF8 = new TextDecoder("utf-8", { fatal: true });

function charsetOf(contentType: string | undefined): string {
  if (contentType === undefined) return "utf-8";
  return CHARSET.exec(contentType)?.[1]?.toLowerCase() ?? "utf-8";
}

/** Decodes text strictly (invalid bytes are an error, not U+FFFD); undefined when it cannot. */
function decodeText(body: Buffer, contentType: string | undefined): string | undefined {
  const charset = charsetOf(contentType);
  try {
    return (charset === "utf-8" || charset === "utf8" ? UTF8 : new TextDecoder(charset, { fatal: true })).decode(body);
  } catch {
    return undefined;
  }
}

/** A batch's array is one level more than the events in it. */
function requestJson(body: Buffer, contentType: string, batch: boolean): unknown {
  const text = decodeText(body, contentType);
  if (text === undefined) {
    throw new SluiceError(ErrorCode.BadRequest, `the body is not valid ${charsetOf(contentType)} text`, { path: "$" });
  }
  if (batch) assertJsonDepth(text, "$", MAX_JSON_DEPTH + 1, `the limit is ${MAX_JSON_DEPTH} per event, counting the event`);
  else assertJsonDepth(text, "$", MAX_JSON_DEPTH, `the limit is ${MAX_JSON_DEPTH}, counting the event`);
  try {
    return JSON.parse(text);
  } catch (cause) {
    throw new SluiceError(ErrorCode.JsonInvalid, `the body is not valid JSON: ${(cause as Error).message}`, {
      path: "$",
      cause,
    });
  }
}

function normalizeEntry(input: unknown, options: NormalizeOptions | undefined, path?: string): HttpEventResult {
  try {
    return { ok: true, ...normalizeEvent(input, options) };
  } catch (err) {
    if (!(err instanceof EventValidationError)) throw err;
    if (path === undefined) return { ok: false, error: err };
    // Report the entry's place in the batch: `$[3].time`.
    const at = `${path}${err.path.slice(1)}`;
    return { ok: false, error: new EventValidationError(err.attribute, err.rule, err.message, { code: err.code as EventErrorCode, path: at, cause: err }) };
  }
}

/** RFC 7230 quoted-string unescaping (Section 3.2.6), parentheses not special, as the binding requires. */
function unquote(value: string): string {
  if (value.length < 2 || value.charCodeAt(0) !== 0x22 || value.charCodeAt(value.length - 1) !== 0x22) return value;
  let out = "";
  for (let i = 1; i < value.length - 1; i++) {
    const c = value[i] as string;
    if (c === "\\" && i + 1 < value.length - 1) {
      out += value[i + 1];
      i++;
    } else out += c;
  }
  return out;
}

/**
 * Binding Section 3.1.3.2: one round of percent-decoding as UTF-8; invalid UTF-8 (including overlong forms)
 * and a `%` without two hex digits are rejected.
 */
function percentDecode(attribute: string, raw: string): string {
  const value = unquote(raw);
  if (!value.includes("%")) return value;
  try {
    return decodeURIComponent(value);
  } catch (cause) {
    throw new EventValidationError(attribute, EventRule.PercentEncoding, `header ce-${attribute} is not valid percent-encoded UTF-8`, {
      cause,
    });
  }
}

// Headers carry no types: every extension arrives as a string. Sluice's own Integer extension is typed back.
const CANONICAL_INT = /^(0|-?[1-9][0-9]{0,9})$/;

function parseBinary(req: HttpEventsRequest, contentType: string | undefined): Record<string, unknown> {
  const event: Record<string, unknown> = {};
  let headerContentType: string | undefined;
  for (const key of Object.keys(req.headers)) {
    const lower = key.toLowerCase();
    if (!lower.startsWith("ce-")) continue;
    const raw = req.headers[key];
    if (raw === undefined) continue;
    const name = lower.slice(3);
    if (name === "data" || name === "data_base64") {
      throw new EventValidationError(name, EventRule.ExtensionName, `header ${lower} is not allowed: data travels in the body`);
    }
    const value = percentDecode(name, typeof raw === "string" ? raw : raw.join(","));
    if (name === "datacontenttype") headerContentType = value;
    else if (name === SluiceExtension.Hops && CANONICAL_INT.test(value)) event[name] = Number(value);
    else Object.defineProperty(event, name, { value, enumerable: true, writable: true, configurable: true });
  }
  // Section 3.1.1: datacontenttype travels as Content-Type.
  const dataContentType = contentType ?? headerContentType;
  if (dataContentType !== undefined) event.datacontenttype = dataContentType;
  const body = req.body;
  if (body.length === 0) return event;
  if (dataContentType !== undefined && isJsonMediaType(dataContentType)) {
    const text = decodeText(body, dataContentType);
    let data: unknown;
    try {
      if (text === undefined) throw new Error(`not valid ${charsetOf(dataContentType)} text`);
      // The event around the data is one level more.
      assertJsonDepth(text, "$.data", MAX_JSON_DEPTH - 1, `the limit is ${MAX_JSON_DEPTH}, counting the event around the data`);
      data = JSON.parse(text);
    } catch (cause) {
      if (cause instanceof SluiceError) throw cause;
      throw new EventValidationError("data", EventRule.DataDecode, `the body is declared ${dataContentType} but is not JSON`, {
        cause,
      });
    }
    event.data = data;
    return event;
  }
  if (dataContentType !== undefined && isTextMediaType(dataContentType)) {
    const text = decodeText(body, dataContentType);
    if (text !== undefined) {
      event.data = text;
      return event;
    }
  }
  event.data_base64 = body.toString("base64");
  return event;
}

/** The most events one batched request may hold: what one publish takes. */
export const MAX_BATCH_ENTRIES = 100;

/**
 * Reads the CloudEvents in an HTTP request, in any of the binding's content modes:
 * - binary: attributes in `ce-*` headers (percent-decoded), `Content-Type` is `datacontenttype`, the body is the
 *   data: parsed when the content type is JSON, a string when it is text, `data_base64` otherwise;
 * - structured: `application/cloudevents+json`, the body is one event in the JSON format;
 * - batched: `application/cloudevents-batch+json`, the body is a JSON array of events.
 *
 * Each event is normalized (`normalizeEvent`: id and time defaults, validation, size limit) and gets its own
 * result, so a batch can store its valid entries. Throws `SluiceError` only for a request that cannot be read at
 * all: `E_JSON_INVALID` (structured or batch body not JSON), `E_BAD_REQUEST` (batch not an array, a
 * `application/cloudevents+<format>` other than JSON, a body not in its charset).
 *
 * @example
 * ```ts
 * const { mode, results } = parseHttpEvents({ headers: req.headers, body });
 * for (const r of results) if (r.ok) await store(r.encoded); else reject(r.error);
 * ```
 */
export function parseHttpEvents(req: HttpEventsRequest, options?: NormalizeOptions): ParsedHttpEvents {
  const contentType = req.contentType ?? headerValue(req.headers, "content-type");
  const essence = contentType === undefined ? undefined : mediaTypeEssence(contentType);
  if (essence === CE_BATCH_JSON) {
    const parsed = requestJson(req.body, contentType as string, true);
    if (!Array.isArray(parsed)) {
      throw new SluiceError(ErrorCode.BadRequest, "a batched request body must be a JSON array of events", { path: "$" });
    }
    // Before any entry is looked at: 300 000 entries once cost 9 s and a 42 MB list of per-entry errors.
    if (parsed.length > MAX_BATCH_ENTRIES) {
      throw new SluiceError(ErrorCode.BadRequest, `a batch holds at most ${MAX_BATCH_ENTRIES} events, got ${parsed.length}; send the rest in further requests`, { path: "$" });
    }
    return { mode: "batch", results: parsed.map((entry, i) => normalizeEntry(entry, options, `$[${i}]`)) };
  }
  if (essence === CE_STRUCTURED_JSON) {
    return { mode: "structured", results: [normalizeEntry(requestJson(req.body, contentType as string, false), options)] };
  }
  if (essence !== undefined && (essence.startsWith("application/cloudevents+") || essence.startsWith("application/cloudevents-batch+"))) {
    throw new SluiceError(ErrorCode.BadRequest, `unsupported CloudEvents event format ${essence}; use ${CE_STRUCTURED_JSON}`, {
      path: "$",
    });
  }
  let event: Record<string, unknown>;
  try {
    event = parseBinary(req, contentType);
  } catch (err) {
    if (err instanceof EventValidationError) return { mode: "binary", results: [{ ok: false, error: err }] };
    throw err;
  }
  return { mode: "binary", results: [normalizeEntry(event, options)] };
}

/**
 * Binding Section 3.1.3.2: UTF-8, then percent-encode space, `"`, `%` and everything outside U+0021–U+007E.
 */
export function percentEncodeHeader(value: string): string {
  let i = 0;
  for (; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f || c === 0x22 || c === 0x25) break;
  }
  if (i === value.length) return value;
  let out = value.slice(0, i);
  for (const byte of Buffer.from(value.slice(i), "utf8")) {
    if (byte <= 0x20 || byte >= 0x7f || byte === 0x22 || byte === 0x25) {
      out += `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
    } else out += String.fromCharCode(byte);
  }
  return out;
}

/**
 * Writes an event in binary content mode: attributes as percent-encoded `ce-*` headers, `datacontenttype` as
 * `Content-Type`, the data as the body (JSON text for JSON content types, and when `datacontenttype` is absent,
 * as the JSON format implies `application/json`; the string itself for other types; the decoded bytes of
 * `data_base64`).
 *
 * @example
 * ```ts
 * const { headers, body } = toHttpBinary(event);
 * await fetch(url, { method: "POST", headers, body });
 * ```
 */
export function toHttpBinary(event: CloudEvent): HttpMessage {
  const headers: Record<string, string> = {};
  for (const key of Object.keys(event)) {
    if (key === "data" || key === "data_base64" || key === "datacontenttype") continue;
    const value = event[key];
    if (value === undefined || value === null) continue;
    headers[`ce-${key}`] = percentEncodeHeader(String(value));
  }
  const contentType = event.datacontenttype;
  if (contentType !== undefined) headers["content-type"] = contentType;
  let body: Buffer;
  if (typeof event.data_base64 === "string") {
    body = Buffer.from(event.data_base64, "base64");
  } else if (event.data === undefined) {
    body = Buffer.alloc(0);
  } else if (contentType === undefined || isJsonMediaType(contentType)) {
    if (contentType === undefined) headers["content-type"] = "application/json";
    body = Buffer.from(encodeData(event.data), "utf8");
  } else if (typeof event.data === "string") {
    body = Buffer.from(event.data, "utf8");
  } else if (event.data instanceof Uint8Array) {
    body = Buffer.from(event.data.buffer, event.data.byteOffset, event.data.byteLength);
  } else {
    body = Buffer.from(encodeData(event.data), "utf8");
  }
  return { headers, body };
}

function encodeData(data: unknown): string {
  try {
    return JSON.stringify(data) ?? "null";
  } catch (cause) {
    throw new EventValidationError("data", EventRule.Encodable, `the data cannot be encoded as JSON: ${String(cause)}`, { cause });
  }
}

/**
 * Writes an event in structured content mode (`application/cloudevents+json`).
 *
 * @example
 * ```ts
 * const { headers, body } = toHttpStructured(event);
 * ```
 */
export function toHttpStructured(event: CloudEvent): HttpMessage {
  return {
    headers: { "content-type": `${CE_STRUCTURED_JSON}; charset=utf-8` },
    body: Buffer.from(encodeEvent(event), "utf8"),
  };
}

/** Writes events in batched content mode (`application/cloudevents-batch+json`). */
export function toHttpBatch(events: readonly CloudEvent[]): HttpMessage {
  return {
    headers: { "content-type": `${CE_BATCH_JSON}; charset=utf-8` },
    body: Buffer.from(`[${events.map(encodeEvent).join(",")}]`, "utf8"),
  };
}
