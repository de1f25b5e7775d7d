/**
 * A nesting limit for JSON, checked on the text before anything recurses over it: copying a value to a worker
 * thread or a child process (structured clone, JSON) recurses once per level and throws a RangeError a few
 * thousand levels down, and so can a handler's own code. 128 levels is far more than real payloads use
 * (serde_json's default limit is the same) and far below where any of that breaks.
 */
import { ErrorCode, SluiceError } from "../errors.ts";

export const MAX_JSON_DEPTH = 128;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACE = 0x7d;
const CLOSE_BRACKET = 0x5d;

/**
 * The deepest nesting of objects and arrays in a JSON text (0 for a scalar), counting no further than
 * `limit + 1`. The text need not be valid JSON: brackets inside strings are skipped, the rest is counted.
 */
export function jsonTextDepth(text: string, limit: number = MAX_JSON_DEPTH): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) inString = false;
    } else if (c === QUOTE) inString = true;
    else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      if (++depth > deepest) {
        deepest = depth;
        if (deepest > limit) return deepest;
      }
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) depth--;
  }
  return deepest;
}

/**
 * Throws `E_JSON_TOO_DEEP` (HTTP 400) naming the limit and `path` when `text` nests deeper than `limit`.
 * `rule` says the limit in the reader's terms where `limit` counts levels around it (a batch's array).
 */
export function assertJsonDepth(text: string, path: string, limit: number = MAX_JSON_DEPTH, rule = `the limit is ${limit}`): void {
  if (jsonTextDepth(text, limit) <= limit) return;
  throw new SluiceError(ErrorCode.JsonTooDeep, `${path} nests objects and arrays more than ${limit} levels deep (${rule})`, { path });
}

/** `JSON.parse` after {@link assertJsonDepth}; `E_JSON_INVALID` at `path` when the text is not JSON. */
export function parseJsonLimited(text: string, path: string, limit: number = MAX_JSON_DEPTH): unknown {
  assertJsonDepth(text, path, limit);
  try {
    return JSON.parse(text);
  } catch (cause) {
    throw new SluiceError(ErrorCode.JsonInvalid, `${path} is not valid JSON: ${(cause as Error).message}`, { path, cause });
  }
}
