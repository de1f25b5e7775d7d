/**
 * A broker message as a CloudEvent. Where the protocol has a CloudEvents binding (AMQP, MQTT 5, NATS) the kind
 * maps its headers onto `ce-*` names and the HTTP binding's reader does the rest (binary mode: attributes in
 * headers, data in the body; structured mode: `application/cloudevents+json`). A message that carries no
 * CloudEvent is wrapped: `type` from the config, `source` naming the broker and queue/topic/stream, `subject` the
 * routing key/topic/subject, the body as `data` (JSON when it parses, text when it is UTF-8, `data_base64`
 * otherwise), and broker headers as extensions where their name is a valid attribute name.
 */
import { CE_STRUCTURED_JSON, parseHttpEvents, percentEncodeHeader, type HttpEventResult } from "../../event/http.ts";
import { isAttributeName, mediaTypeEssence } from "../../event/grammar.ts";
import { newEventId } from "../../event/ids.ts";

export interface BrokerMessage {
  /** Headers already mapped to `ce-*` for binding attributes; other headers as the broker gave them. */
  headers: Record<string, string>;
  body: Buffer;
  /** The message's content type (AMQP property, MQTT 5 property, NATS `content-type` header). */
  contentType?: string | undefined;
}

export interface WrapAttributes {
  /** A stable id when the broker has one (JetStream sequence, stream entry id, AMQP message-id); random otherwise. */
  id?: string | undefined;
  source: string;
  type: string;
  subject?: string | undefined;
  /** Broker headers and properties to keep as extensions where the name is allowed. */
  extensions?: Record<string, unknown>;
}

/** Attributes a wrapped message never takes from a header. */
const reserved = new Set(["specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema", "data", "data_base64"]);
const UTF8 = new TextDecoder("utf-8", { fatal: true });

/** True when the message is a CloudEvent in binary (`ce-specversion` header) or structured mode. */
export function isCloudEvent(message: BrokerMessage): boolean {
  if (message.headers["ce-specversion"] !== undefined) return true;
  const essence = message.contentType === undefined ? undefined : mediaTypeEssence(message.contentType);
  return essence !== undefined && essence.startsWith("application/cloudevents");
}

/** What a body with no declared content type is: JSON if it parses, text if it is UTF-8, bytes otherwise. */
function sniffContentType(body: Buffer): string {
  let text: string;
  try {
    text = UTF8.decode(body);
  } catch {
    return "application/octet-stream";
  }
  try {
    JSON.parse(text);
    return "application/json";
  } catch {
    return "text/plain; charset=utf-8";
  }
}

/** Header name → extension name (lower case, letters and digits only), or undefined when it cannot be one. */
function extensionName(header: string): string | undefined {
  const name = header.toLowerCase().replace(/[^a-z0-9]/g, "");
  return name.length > 0 && name.length <= 20 && isAttributeName(name) && !reserved.has(name) && !name.startsWith("sluice") ? name : undefined;
}

/**
 * The message as one normalized event, or why it cannot be one. Never throws for a bad message: a body that
 * cannot be read in its declared mode is an `ok: false` result (the caller dead-letters it).
 */
export function messageToEvent(message: BrokerMessage, wrap: WrapAttributes, maxSizeBytes?: number): HttpEventResult {
  const options = maxSizeBytes === undefined ? {} : { maxSizeBytes };
  try {
    if (isCloudEvent(message)) {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(message.headers)) if (k.startsWith("ce-")) headers[k] = v;
      const essence = message.contentType === undefined ? undefined : mediaTypeEssence(message.contentType);
      if (essence === CE_STRUCTURED_JSON || essence?.startsWith("application/cloudevents")) {
        return only(parseHttpEvents({ headers: {}, body: message.body, contentType: message.contentType }, options));
      }
      return only(parseHttpEvents({ headers, body: message.body, contentType: message.contentType }, options));
    }
    const headers: Record<string, string> = {
      "ce-specversion": "1.0",
      "ce-id": percentEncodeHeader(wrap.id ?? newEventId()),
      "ce-source": percentEncodeHeader(wrap.source),
      "ce-type": percentEncodeHeader(wrap.type),
    };
    if (wrap.subject !== undefined && wrap.subject !== "") headers["ce-subject"] = percentEncodeHeader(wrap.subject);
    for (const [k, v] of Object.entries(wrap.extensions ?? {})) {
      const name = extensionName(k);
      if (name === undefined || (typeof v !== "string" && typeof v !== "number" && typeof v !== "boolean")) continue;
      headers[`ce-${name}`] = percentEncodeHeader(String(v));
    }
    let contentType = message.contentType;
    if (contentType === undefined || contentType === "") contentType = message.body.length === 0 ? undefined : sniffContentType(message.body);
    return only(parseHttpEvents({ headers, body: message.body, contentType }, options));
  } catch (err) {
    // parseHttpEvents throws only for a body it cannot read at all (not JSON in structured mode, bad charset).
    return { ok: false, error: err as never };
  }
}

function only(parsed: ReturnType<typeof parseHttpEvents>): HttpEventResult {
  const first = parsed.results[0];
  if (parsed.results.length !== 1 || first === undefined) {
    return { ok: false, error: Object.assign(new Error(`a message must hold exactly one event, it holds ${parsed.results.length}`), { code: "E_EVENT_INVALID" }) as never };
  }
  return first;
}

/** The reason text of a failed conversion: `E_EVENT_TOO_LARGE: …`. */
export function conversionReason(result: Extract<HttpEventResult, { ok: false }>): string {
  const err = result.error as { code?: string; message?: string };
  return `${err.code ?? "E_EVENT_INVALID"}: ${err.message ?? String(err)}`;
}

