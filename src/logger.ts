/**
 * The logger every part of Sluice takes: pino's shape, so a pino logger (what the server creates) fits as it is.
 * Core code logs constant messages with data in fields and never creates a logger; the default does nothing.
 */
export interface Logger {
  trace(fields: object, msg?: string): void;
  debug(fields: object, msg?: string): void;
  info(fields: object, msg?: string): void;
  warn(fields: object, msg?: string): void;
  error(fields: object, msg?: string): void;
  fatal(fields: object, msg?: string): void;
  child(bindings: object): Logger;
}

export const noopLogger: Logger = {
  trace() {},
  debug() {},
  info() {},
  warn() {},
  error() {},
  fatal() {},
  child: () => noopLogger,
};
