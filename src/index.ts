/**
 * Sluice public API. Only what is exported here is public; everything else is internal.
 */
export { ErrorCode, SluiceError, isSluiceError } from "./errors.ts";
export type { SluiceErrorOptions } from "./errors.ts";
export { compilePattern, PatternError, PATTERN_LIMITS } from "./pattern/compile.ts";
export type { CompiledPattern, PatternMismatch } from "./pattern/compile.ts";
export { RuleIndex } from "./pattern/rule-index.ts";
