/**
 * Messages a source could not turn into events (too large, an invalid CloudEvent in binding mode, undecodable
 * JSON) are kept, not dropped: each becomes a `sluice.source.rejected` record holding the reason and the
 * original bytes, enqueued on the queue `source:<name>`. No rule owns that queue, so the dispatcher moves it
 * straight to the dead-letter list (reason `unconvertible`), where `sluice dlq` and `/admin/dlq` show it.
 */
import { newEventId } from "../event/ids.ts";
import type { DeliveryQueues } from "../store/contract.ts";
import type { RejectedMessage } from "./source.ts";

export const rejectedQueuePrefix = "source:";
export const rejectedEventType = "sluice.source.rejected";
export const rejectedReason = "unconvertible";

export function rejectedQueue(source: string): string {
  return `${rejectedQueuePrefix}${source}`;
}

/** The dead letter's payload: a CloudEvent whose data is the reason, the broker metadata and the bytes in base64. */
export function rejectedPayload(source: string, message: RejectedMessage, now: number): string {
  return JSON.stringify({
    specversion: "1.0",
    id: newEventId(now),
    source: `/sluice/sources/${source}`,
    type: rejectedEventType,
    time: new Date(now).toISOString(),
    datacontenttype: "application/json",
    data: { reason: message.reason, attributes: message.attributes, body_base64: Buffer.from(message.body).toString("base64") },
  });
}

/** The reason recorded in a rejected payload, for the dead letter's error text. */
export function rejectedError(payload: string): string {
  try {
    const reason = (JSON.parse(payload) as { data?: { reason?: unknown } }).data?.reason;
    return typeof reason === "string" ? reason : "the message could not become an event";
  } catch {
    return "the message could not become an event";
  }
}

export async function enqueueRejected(queues: DeliveryQueues, source: string, message: RejectedMessage, now: number): Promise<void> {
  await queues.enqueue([{ queue: rejectedQueue(source), payload: rejectedPayload(source, message, now) }], { now });
}
