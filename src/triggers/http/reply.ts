/**
 * The HTTP wire format of errors (status by code, `{ error: { code, message, path }, requestId }`) and the raw
 * body parser, shared by the CloudEvents ingest and the server's gateway and admin API.
 */
import type { FastifyInstance, FastifyReply } from "fastify";
import { ErrorCode, type SluiceError } from "../../errors.ts";
import { EventValidationError } from "../../event/validate.ts";

/** HTTP status for a SluiceError code. */
export function statusForCode(code: string): number {
  switch (code) {
    case ErrorCode.EventInvalid:
    case ErrorCode.JsonInvalid:
    case ErrorCode.BadRequest:
    case ErrorCode.PatternInvalid:
    case ErrorCode.TransformInvalid:
    case ErrorCode.ConfigInvalid:
    case ErrorCode.RecursiveLoop:
      return 400;
    case ErrorCode.EventTooLarge:
      return 413;
    case ErrorCode.BusNotFound:
    case ErrorCode.RuleNotFound:
    case ErrorCode.FunctionNotFound:
    case ErrorCode.NotFound:
      return 404;
    case ErrorCode.AlreadyExists:
      return 409;
    case ErrorCode.Backpressure:
    case ErrorCode.Throttled:
      return 429;
    case ErrorCode.StoreUnavailable:
    case ErrorCode.Closed:
      return 503;
    case ErrorCode.HandlerTimeout:
      return 504;
    default:
      return 500;
  }
}

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
  if (status === 429 || status === 503) reply.header("retry-after", "1");
  return reply.code(status).type("application/json").send(errorBody(err, requestId));
}

/** Hands request bodies to the handler as a Buffer, whatever their type. */
export const rawBody = (app: FastifyInstance) => {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("*", { parseAs: "buffer" }, (_req, body, done) => done(null, body));
};

