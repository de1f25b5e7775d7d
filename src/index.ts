/**
 * Sluice public API. Only what is exported here is public; everything else is internal.
 */
export { ErrorCode, SluiceError, isSluiceError } from "./errors.ts";
export type { SluiceErrorOptions } from "./errors.ts";
