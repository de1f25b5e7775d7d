/**
 * Hand-written recognisers for the string grammars CloudEvents 1.0 refers to: RFC 3986 URI and URI-reference,
 * RFC 3339 timestamps, RFC 2046 media types and RFC 4648 base64.
 *
 * They sit on the publish hot path, so each is a single pass over char codes against tables built once at load
 * time: no regex is compiled per call and nothing is allocated for a valid input.
 */

function table(chars: string, ranges: ReadonlyArray<readonly [string, string]> = []): Uint8Array {
  const t = new Uint8Array(128);
  for (let i = 0; i < chars.length; i++) t[chars.charCodeAt(i)] = 1;
  for (const [from, to] of ranges) for (let c = from.charCodeAt(0); c <= to.charCodeAt(0); c++) t[c] = 1;
  return t;
}

const ALNUM: ReadonlyArray<readonly [string, string]> = [
  ["a", "z"],
  ["A", "Z"],
  ["0", "9"],
];
/** RFC 3986 unreserved / reserved characters plus `%` (checked separately for its two hex digits). */
const URI_CHAR = table("-._~:/?#[]@!$&'()*+,;=%", ALNUM);
const SCHEME_CHAR = table("+-.", ALNUM);
const HEX = table("", [
  ["0", "9"],
  ["a", "f"],
  ["A", "F"],
]);
/** RFC 2045 token: any ASCII except SPACE, CTLs and tspecials `()<>@,;:\"/[]?=`. */
const TOKEN_CHAR = (() => {
  const t = new Uint8Array(128);
  for (let c = 0x21; c < 0x7f; c++) t[c] = 1;
  for (const ch of '()<>@,;:\\"/[]?=') t[ch.charCodeAt(0)] = 0;
  return t;
})();
const BASE64_CHAR = table("+/", ALNUM);
const EXTENSION_NAME_CHAR = table("", [
  ["a", "z"],
  ["0", "9"],
]);

function isAlpha(c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
}

/** Characters, percent-encodings and bracket placement of `s[from, to)` (a path, query or fragment: no `[`/`]`). */
function plainPart(s: string, from: number, to: number, allowHash: boolean): boolean {
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x5b || c === 0x5d) return false; // [ ]
    if (c === 0x23 && !allowHash) return false; // #
  }
  return true;
}

function authorityOk(s: string, from: number, to: number): boolean {
  let hostStart = from;
  const at = s.lastIndexOf("@", to - 1);
  if (at >= from) {
    if (!plainPart(s, from, at, false) || s.indexOf("@", from) !== at) return false;
    hostStart = at + 1;
  }
  let portStart = -1;
  if (s.charCodeAt(hostStart) === 0x5b) {
    // IP-literal: "[" ( IPv6address / IPvFuture ) "]"
    const close = s.indexOf("]", hostStart);
    if (close < 0 || close >= to || close === hostStart + 1) return false;
    for (let i = hostStart + 1; i < close; i++) {
      const c = s.charCodeAt(i);
      if (c === 0x5b || c === 0x2f || c === 0x3f || c === 0x23 || c === 0x40) return false;
    }
    if (close + 1 < to) {
      if (s.charCodeAt(close + 1) !== 0x3a) return false; // ":"
      portStart = close + 2;
    }
  } else {
    const colon = s.indexOf(":", hostStart);
    const hostEnd = colon >= 0 && colon < to ? colon : to;
    if (!plainPart(s, hostStart, hostEnd, false)) return false;
    if (hostEnd < to) portStart = hostEnd + 1;
  }
  if (portStart >= 0) {
    for (let i = portStart; i < to; i++) {
      const c = s.charCodeAt(i);
      if (c < 0x30 || c > 0x39) return false;
    }
  }
  return true;
}

/**
 * RFC 3986 `URI-reference` (`requireScheme` false) or `absolute-URI` (`requireScheme` true: a scheme and no
 * fragment, Section 4.3). ASCII only, as RFC 3986 (IRIs are not URIs).
 */
function uriOk(s: string, requireScheme: boolean): boolean {
  const n = s.length;
  let delim = -1;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c >= 128 || URI_CHAR[c] !== 1) return false;
    if (c === 0x25) {
      const h1 = s.charCodeAt(i + 1);
      const h2 = s.charCodeAt(i + 2);
      if (!(h1 < 128 && HEX[h1] === 1 && h2 < 128 && HEX[h2] === 1)) return false;
      i += 2;
    } else if (delim < 0 && (c === 0x3a || c === 0x2f || c === 0x3f || c === 0x23)) {
      delim = i;
    }
  }
  let pos = 0;
  if (delim >= 0 && s.charCodeAt(delim) === 0x3a) {
    // scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ); a relative reference cannot have ":" in its first segment.
    if (delim === 0 || !isAlpha(s.charCodeAt(0))) return false;
    for (let i = 1; i < delim; i++) if (SCHEME_CHAR[s.charCodeAt(i)] !== 1) return false;
    pos = delim + 1;
  } else if (requireScheme) {
    return false;
  }
  let hash = s.indexOf("#", pos);
  if (hash >= 0 && requireScheme) return false;
  if (hash < 0) hash = n;
  else if (!plainPart(s, hash + 1, n, false)) return false;
  let query = s.indexOf("?", pos);
  if (query < 0 || query > hash) query = hash;
  else if (!plainPart(s, query + 1, hash, true)) return false;
  if (s.charCodeAt(pos) === 0x2f && s.charCodeAt(pos + 1) === 0x2f) {
    let end = pos + 2;
    while (end < query && s.charCodeAt(end) !== 0x2f) end++;
    if (!authorityOk(s, pos + 2, end)) return false;
    pos = end;
  }
  return plainPart(s, pos, query, false);
}

/** RFC 3986 URI-reference (relative or absolute, fragment allowed). The empty string is a valid reference. */
export function isUriReference(s: string): boolean {
  return uriOk(s, false);
}

/** RFC 3986 Section 4.3 absolute URI: a scheme, no fragment. */
export function isAbsoluteUri(s: string): boolean {
  return uriOk(s, true);
}

// RFC 3339 Section 5.6 date-time; "T" and "Z" may be lower case (Section 5.6, NOTE). Compiled once.
const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(?:[Zz]|[+-](\d{2}):(\d{2}))$/;
const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/**
 * RFC 3339 `date-time`, checked strictly: every field in range, the day valid for its month (leap years included),
 * seconds up to 60 (leap second), offset hours 00–23 and minutes 00–59. No other ISO 8601 forms.
 */
export function isRfc3339(s: string): boolean {
  if (s.length > 64) return false; // bounds the fraction; no real timestamp is longer
  const m = RFC3339.exec(s);
  if (m === null) return false;
  const year = Number(m[1]);
  const month = Number(m[2]);
  const day = Number(m[3]);
  if (month < 1 || month > 12 || day < 1) return false;
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  const maxDay = month === 2 && leap ? 29 : (DAYS_IN_MONTH[month - 1] as number);
  if (day > maxDay) return false;
  if (Number(m[4]) > 23 || Number(m[5]) > 59 || Number(m[6]) > 60) return false;
  if (m[7] !== undefined && (Number(m[7]) > 23 || Number(m[8]) > 59)) return false;
  return true;
}

function skipOws(s: string, i: number): number {
  while (i < s.length) {
    const c = s.charCodeAt(i);
    if (c !== 0x20 && c !== 0x09) break;
    i++;
  }
  return i;
}

function skipToken(s: string, i: number): number {
  while (i < s.length) {
    const c = s.charCodeAt(i);
    if (c >= 128 || TOKEN_CHAR[c] !== 1) break;
    i++;
  }
  return i;
}

/**
 * RFC 2046 / RFC 2045 media type: `type "/" subtype *( OWS ";" OWS attribute "=" ( token / quoted-string ) )`,
 * e.g. `application/json; charset=utf-8`. Returns the index after the media type, or -1 when malformed.
 */
function mediaTypeEnd(s: string): number {
  let i = skipToken(s, 0);
  if (i === 0 || s.charCodeAt(i) !== 0x2f) return -1;
  const sub = i + 1;
  i = skipToken(s, sub);
  if (i === sub) return -1;
  for (;;) {
    const j = skipOws(s, i);
    if (j === s.length) return j;
    if (s.charCodeAt(j) !== 0x3b) return -1; // ";"
    const attr = skipOws(s, j + 1);
    i = skipToken(s, attr);
    if (i === attr || s.charCodeAt(i) !== 0x3d) return -1; // "="
    i++;
    if (s.charCodeAt(i) === 0x22) {
      i++;
      for (;;) {
        if (i >= s.length) return -1;
        const c = s.charCodeAt(i);
        if (c === 0x22) break;
        if (c === 0x5c) i++; // quoted-pair
        else if ((c < 0x20 && c !== 0x09) || c === 0x7f) return -1;
        i++;
      }
      i++;
    } else {
      const value = i;
      i = skipToken(s, value);
      if (i === value) return -1;
    }
  }
}

/** RFC 2046 media type with optional parameters. */
export function isMediaType(s: string): boolean {
  return mediaTypeEnd(s) === s.length;
}

/** RFC 4648 Section 4 base64 (standard alphabet, padded to a multiple of 4). The empty string is valid. */
export function isBase64(s: string): boolean {
  const n = s.length;
  if (n % 4 !== 0) return false;
  let end = n;
  if (n > 0 && s.charCodeAt(n - 1) === 0x3d) end = s.charCodeAt(n - 2) === 0x3d ? n - 2 : n - 1;
  for (let i = 0; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c >= 128 || BASE64_CHAR[c] !== 1) return false;
  }
  return true;
}

/** CloudEvents attribute name: 1 to 20 ASCII lower-case letters or digits. */
export function isAttributeName(s: string): boolean {
  const n = s.length;
  if (n === 0 || n > 20) return false;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c >= 128 || EXTENSION_NAME_CHAR[c] !== 1) return false;
  }
  return true;
}

/**
 * The media type without parameters, lower-cased (`Application/JSON; charset=utf-8` → `application/json`).
 * Returns undefined when malformed.
 */
export function mediaTypeEssence(s: string): string | undefined {
  const semi = s.indexOf(";");
  const essence = (semi < 0 ? s : s.slice(0, semi)).trim().toLowerCase();
  const slash = essence.indexOf("/");
  if (slash <= 0 || slash === essence.length - 1) return undefined;
  return essence;
}

/** True for JSON media types: `application/json`, `text/json` and any `*\/*+json` structured-syntax suffix. */
export function isJsonMediaType(contentType: string): boolean {
  const essence = mediaTypeEssence(contentType);
  if (essence === undefined) return false;
  return essence === "application/json" || essence === "text/json" || essence.endsWith("+json");
}
