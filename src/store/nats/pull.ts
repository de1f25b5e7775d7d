/**
 * The backend's own pull loop: one `CONSUMER.MSG.NEXT` request with `no_wait`, answered by the messages that are
 * ready and a status. No long-lived pull subscription, so no idle heartbeat to miss and nothing that stalls
 * silently: a missing consumer (no responders, 409 consumer deleted) is reported for the caller to recreate, and
 * a consumer at `max_ack_pending` (409) is reported so that it shows as a warning and a metric.
 */
import { createInbox, type Msg, type NatsConnection } from "@nats-io/transport-node";

export interface PulledMessage {
  subject: string;
  /** The ack subject: `$JS.ACK.<stream>.<consumer>.<delivered>.<streamSeq>.<consumerSeq>.<timestampNs>.<pending>`. */
  reply: string;
  headers: Map<string, string>;
  data: Uint8Array;
  deliveryCount: number;
  streamSeq: number;
  /** When the message was stored, epoch ms (server time). */
  storedAt: number;
}

export type PullOutcome = { messages: PulledMessage[]; problem?: "missing-consumer" | "max-ack-pending" };

/** Reads the delivery count, stream sequence and timestamp from an ack subject (v1 and v2 token layouts). */
export function parseAckSubject(reply: string): { deliveryCount: number; streamSeq: number; storedAt: number } | undefined {
  const t = reply.split(".");
  if (t[0] !== "$JS" || t[1] !== "ACK") return undefined;
  // v1: $JS.ACK.stream.consumer.delivered.sseq.cseq.ts.pending (9); v2 adds domain and account hash after ACK.
  const base = t.length === 9 ? 4 : t.length >= 11 ? 6 : -1;
  if (base < 0) return undefined;
  const deliveryCount = Number(t[base]);
  const streamSeq = Number(t[base + 1]);
  const storedAt = Math.floor(Number(t[base + 3]) / 1e6);
  return Number.isFinite(deliveryCount) && Number.isFinite(streamSeq) ? { deliveryCount, streamSeq, storedAt } : undefined;
}

function headersOf(m: Msg): Map<string, string> {
  const out = new Map<string, string>();
  const h = m.headers;
  if (h === undefined) return out;
  for (const [k, v] of h) if (v[0] !== undefined) out.set(k, v[0]);
  return out;
}

export async function pull(nc: NatsConnection, stream: string, consumer: string, batch: number, timeoutMs = 3000): Promise<PullOutcome> {
  const inbox = createInbox();
  const messages: PulledMessage[] = [];
  const sub = nc.subscribe(inbox, { max: batch + 1 });
  const timer = setTimeout(() => sub.unsubscribe(), timeoutMs);
  let problem: PullOutcome["problem"];
  try {
    nc.publish(`$JS.API.CONSUMER.MSG.NEXT.${stream}.${consumer}`, JSON.stringify({ batch, no_wait: true }), { reply: inbox });
    for await (const m of sub) {
      const code = m.headers?.code ?? 0;
      if (code !== 0 && m.data.length === 0) {
        const description = (m.headers?.description ?? "").toLowerCase();
        if (code === 503 || (code === 409 && description.includes("deleted"))) problem = "missing-consumer";
        else if (code === 409 && description.includes("maxackpending")) problem = "max-ack-pending";
        else if (code === 409 && description.includes("max ack pending")) problem = "max-ack-pending";
        break;
      }
      const info = parseAckSubject(m.reply ?? "");
      if (info === undefined) continue;
      messages.push({ subject: m.subject, reply: m.reply as string, headers: headersOf(m), data: m.data, ...info });
      if (messages.length >= batch) break;
    }
  } finally {
    clearTimeout(timer);
    sub.unsubscribe();
  }
  return problem === undefined ? { messages } : { messages, problem };
}
