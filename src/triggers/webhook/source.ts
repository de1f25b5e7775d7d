/**
 * Serves one signed webhook path (see kind.ts). The signature is checked over the raw body before anything is
 * stored: a missing, wrong or stale one answers 401 (E_SIGNATURE_INVALID). A verified request becomes one
 * event, answered 202 once it is durable; the provider's delivery id is the event id, so a retried delivery is
 * a duplicate (202 with `duplicates`), not a second event. A bus under back-pressure answers 429 with
 * Retry-After, and the provider retries.
 */
import { ErrorCode, SluiceError } from "../../errors.ts";
import { messageToEvent, conversionReason } from "../broker/message.ts";
import { rawBody, sendError } from "../http/reply.ts";
import type { EventSource, SourceContext } from "../source.ts";
import type { WebhookSourceOptions } from "./kind.ts";
import { verifyWebhook } from "./verify.ts";

export class WebhookSource implements EventSource {
  readonly kind = "webhook";
  #refused = 0;

  constructor(
    readonly name: string,
    readonly options: WebhookSourceOptions,
  ) {}

  async start(ctx: SourceContext): Promise<void> {
    const o = this.options;
    ctx.http.register(async (app) => {
      rawBody(app);
      app.post(o.path, async (req, reply) => {
        if (ctx.signal.aborted) return sendError(reply, new SluiceError(ErrorCode.Closed, "the server is shutting down"), req.id);
        const body = (req.body as Buffer | undefined) ?? Buffer.alloc(0);
        const verified = verifyWebhook(o.verify, req.headers, body);
        if (!verified.ok) {
          this.#refused++;
          ctx.count("error");
          ctx.logger.warn({ path: o.path, reason: verified.reason }, "webhook refused");
          return sendError(reply, new SluiceError(ErrorCode.SignatureInvalid, `the ${o.verify.scheme} signature was refused: ${verified.reason}`), req.id);
        }
        const contentType = req.headers["content-type"];
        const converted = messageToEvent(
          { headers: {}, body, contentType },
          { id: verified.id, source: o.path, type: o.type, subject: verified.subject },
          o.maxEventBytes,
        );
        if (!converted.ok) {
          ctx.count("error");
          return sendError(reply, new SluiceError(ErrorCode.BadRequest, conversionReason(converted)), req.id);
        }
        const out = await ctx.publishNormalized(o.bus, [converted]);
        const entry = out.entries[0];
        if (!entry || "errorCode" in entry) {
          ctx.count("error");
          const e = entry && "errorCode" in entry ? entry : { errorCode: ErrorCode.BadRequest, errorMessage: "not accepted" };
          return sendError(reply, new SluiceError(e.errorCode as ErrorCode, e.errorMessage), req.id);
        }
        ctx.count(entry.duplicate ? "duplicate" : "stored");
        return reply.code(202).send({ ids: [entry.eventId], ...(entry.duplicate ? { duplicates: [entry.eventId] } : {}) });
      });
    });
    ctx.health("ok");
  }

  describe(): Record<string, unknown> {
    return { path: this.options.path, scheme: this.options.verify.scheme, refused: this.#refused };
  }

  async close(): Promise<void> {}
}
