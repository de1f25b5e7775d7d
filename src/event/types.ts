/**
 * The CloudEvents 1.0 envelope in its JSON (structured) form, as Sluice stores and hands it to handlers:
 * context attributes and extension attributes are top-level properties; `data` is decoded JSON (or a string),
 * `data_base64` carries binary data.
 */
export interface CloudEvent {
  specversion: "1.0";
  id: string;
  /** URI-reference identifying the context in which the event happened. */
  source: string;
  /** Dotted lower case by convention, e.g. `order.created`; Sluice's own start with `sluice.`. */
  type: string;
  subject?: string;
  /** RFC 3339 timestamp. */
  time?: string;
  datacontenttype?: string;
  /** URI. */
  dataschema?: string;
  data?: unknown;
  data_base64?: string;
  /** Extension attributes: names of lower-case letters and digits, at most 20 characters. */
  [extension: string]: unknown;
}

/** Extension attributes Sluice itself reads and writes. All are valid CloudEvents extension names. */
export const SluiceExtension = {
  /** Per-key ordering: events with the same key reach each target one at a time, in publish order. */
  PartitionKey: "partitionkey",
  /** Correlation id shared by every event of one causal chain (inherited by ctx.emit). */
  CorrelationId: "correlationid",
  /** Id of the event whose handler emitted this one (set by ctx.emit): lineage walks it. */
  CausationId: "causationid",
  /** W3C trace context of the producer (inherited by ctx.emit). */
  TraceParent: "traceparent",
  /** Hop count of a causal chain; ctx.emit and bus-to-bus routing increment it. */
  Hops: "sluicehops",
  /** Name of the replay that re-delivered this event. */
  Replay: "replay",
} as const;
export type SluiceExtension = (typeof SluiceExtension)[keyof typeof SluiceExtension];
