/**
 * A Redis stream entry as a broker message. Streams have no CloudEvents binding; Sluice reads (and its
 * `redisStream` sink writes) one: an entry with a `specversion` field holds the attributes as fields, the data
 * in `data` (or `data_base64`) and its type in `datacontenttype`. Otherwise an entry with a `data` field is that
 * data (other fields become extensions), and any other entry is its fields as a JSON object.
 */
import type { BrokerMessage } from "../broker/message.ts";

export function entryFields(flat: Buffer[]): Map<string, Buffer> {
  const fields = new Map<string, Buffer>();
  for (let i = 0; i + 1 < flat.length; i += 2) fields.set((flat[i] as Buffer).toString("utf8"), flat[i + 1] as Buffer);
  return fields;
}

export function entryMessage(fields: Map<string, Buffer>): { message: BrokerMessage; extensions: Record<string, string> } {
  const text = (k: string) => fields.get(k)?.toString("utf8");
  if (fields.has("specversion")) {
    const headers: Record<string, string> = {};
    for (const [k, v] of fields) if (k !== "data" && k !== "data_base64" && k !== "datacontenttype") headers[`ce-${k.toLowerCase()}`] = v.toString("utf8");
    const base64 = text("data_base64");
    const body = base64 !== undefined ? Buffer.from(base64, "base64") : (fields.get("data") ?? Buffer.alloc(0));
    return { message: { headers, body, contentType: text("datacontenttype") ?? (fields.has("data") ? "application/json" : undefined) }, extensions: {} };
  }
  if (fields.has("data")) {
    const extensions: Record<string, string> = {};
    for (const [k, v] of fields) if (k !== "data" && k !== "datacontenttype") extensions[k] = v.toString("utf8");
    return { message: { headers: {}, body: fields.get("data") as Buffer, contentType: text("datacontenttype") }, extensions };
  }
  const object: Record<string, string> = {};
  for (const [k, v] of fields) object[k] = v.toString("utf8");
  return { message: { headers: {}, body: Buffer.from(JSON.stringify(object)), contentType: "application/json" }, extensions: {} };
}
