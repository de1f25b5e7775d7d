/**
 * The CloudEvents HTTP ingest as an event source: `POST /events` (the default bus) and `POST /buses/:bus/events`
 * take binary, structured and batched CloudEvents (the HTTP binding, src/event/http.ts) and answer once the
 * accepted ones are durable: 202 with their ids, per-entry results for a batch. The server runs it as the
 * implicit source `http`.
 */
import type { FastifyReply, FastifyRequest } from "fastify";
import { ErrorCode, SluiceError } from "../../errors.ts";
import { parseHttpEvents } from "../../event/http.ts";
import type { NormalizedEvent } from "../../event/normalize.ts";
import type { EventSource, SourceContext } from "../source.ts";
import { errorBody, rawBody, sendError } from "./reply.ts";

export class HttpIngestSource implements EventSource {
  readonly kind = "http";
  readonly #inFlight = new Set<Promise<unknown>>();

  constructor(
    readonly name: string,
    /** Largest single event (413 for a single event, a per-entry error in a batch). */
    readonly maxEventBytes?: number,
  ) {}

  async start(ctx: SourceContext): Promise<void> {
      const handler = async (req: FastifyRequest, reply: FastifyReply, bus: string) => {
        if (ctx.signal.aborted) return sendError(reply, new SluiceError(ErrorCode.Closed, "the server is shutting down"), req.id);
        const body = (req.body as Buffer | undefined) ?? Buffer.alloc(0);
        const parsed = parseHttpEvents(
          { headers: req.headers, body },
          this.maxEventBytes === undefined ? {} : { maxSizeBytes: this.maxEventBytes },
        );
        const results = parsed.results;
        if (parsed.mode !== "batch") {
          const only = results[0];
          if (!only) throw new SluiceError(ErrorCode.BadRequest, "the request holds no event");
          if (!only.ok) return sendError(reply, only.error, req.id);
          const out = await ctx.publishNormalized(bus, [only]);
          const entry = out.entries[0];
          if (!entry || "errorCode" in entry) {
            const e = entry && "errorCode" in entry ? entry : { errorCode: ErrorCode.BadRequest, errorMessage: "not accepted" };
            return sendError(
              reply,
              new SluiceError(e.errorCode as ErrorCode, e.errorMessage, "path" in e && e.path !== undefined ? { path: e.path } : {}),
              req.id,
            );
          }
          return reply.code(202).send({ ids: [entry.eventId], ...(entry.duplicate ? { duplicates: [entry.eventId] } : {}) });
        }
        // batch: store the valid entries (100 per publish), answer per entry
        const entries: Record<string, unknown>[] = new Array(results.length);
        const valid: { index: number; event: NormalizedEvent }[] = [];
        results.forEach((r, i) => {
          if (r.ok) valid.push({ index: i, event: r });
          else entries[i] = { ...errorBody(r.error, req.id).error };
        });
        for (let i = 0; i < valid.length; i += 100) {
          const chunk = valid.slice(i, i + 100);
          const out = await ctx.publishNormalized(bus, chunk.map((c) => c.event));
          out.entries.forEach((e, j) => {
            const slot = chunk[j]?.index ?? 0;
            if ("errorCode" in e) {
              entries[slot] = { code: e.errorCode, message: e.errorMessage, ...(e.path === undefined ? {} : { path: e.path.replace(/^\$\[\d+\]/, `$[${slot}]`) }) };
            } else {
              entries[slot] = e.duplicate ? { id: e.eventId, duplicate: true } : { id: e.eventId };
            }
          });
        }
        const failed = entries.filter((e) => "code" in e).length;
        const accepted = entries.flatMap((e) => (typeof e.id === "string" && !("code" in e) ? [e.id] : []));
        const status = results.length > 0 && accepted.length === 0 ? 400 : 202;
        return reply.code(status).send({ ids: accepted, failedEntryCount: failed, entries });
      };
    const track = (p: Promise<FastifyReply>) => {
      this.#inFlight.add(p);
      void p.finally(() => this.#inFlight.delete(p)).catch(() => undefined);
      return p;
    };
    ctx.http.register(async (ingest) => {
      rawBody(ingest);
      ingest.post("/events", { config: { scope: "publish:default" } }, (req, reply) => track(handler(req, reply, "default")));
      ingest.post<{ Params: { bus: string } }>(
        "/buses/:bus/events",
        { config: { scope: (req) => `publish:${(req.params as { bus: string }).bus}` } },
        (req, reply) => track(handler(req, reply, req.params.bus)),
      );
    });
    ctx.health("ok");
  }

  /** Waits for requests whose events are being stored (the HTTP server stops taking new ones first). */
  async close(): Promise<void> {
    await Promise.allSettled([...this.#inFlight]);
  }
}
