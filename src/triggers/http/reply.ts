/**
 * The HTTP wire format of errors (status by code, `{ error: { code, message, path }, requestId }`) and the raw
 * body parser, shared by the CloudEvents ingest and the server's gateway and admin API.
 */
import type { FastifyInstance, FastifyReply } from "fastify";
import { type SluiceError, statusForCode } from "../../errors.ts";
import { EventValidationError } from "../../event/validate.ts";

/** The JSON error body: code, message, and where the input was wrong. */
export function errorBody(err: SluiceError, requestId: string): { error: Record<string, unknown>; requestId: string } {
  const error: Record<string, unknown> = { code: err.code, message: err.message };
  if (err.path !== undefined) error.path = err.path;
  if (err instanceof EventValidationError) {
    error.attribute = err.attribute;
    error.rule = err.rule;
  }
  if (err.retryable) error.retryable = true;
  return { error, requestId };
}

export function sendError(reply: FastifyReply, err: SluiceError, requestId: string): FastifyReply {
  const status = statusForCode(err.code);
  if ((status === 429 || status === 503) && !reply.hasHeader("retry-after")) reply.header("retry-after", "1");
  return reply.code(status).type("application/json").send(errorBody(err, requestId));
}

/** Hands request bodies to the handler as a Buffer, whatever their type. */
export const rawBody = (app: FastifyInstance) => {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("*", { parseAs: "buffer" }, (_req, body, done) => done(null, body));
};

