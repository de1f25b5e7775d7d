/**
 * The API key format: `sk_sluice_<32 base62 characters>_<6 base62 characters>`. The fixed prefix lets secret
 * scanners find a leaked key; the last part is a CRC32 of everything before it, so a scanner (and the server)
 * tells a real key from a random string that matches the shape without asking anyone.
 *
 * Only a SHA-256 of the whole key is stored: keys carry 190 bits of randomness, so a slow hash buys nothing.
 */
import { createHash, randomBytes } from "node:crypto";
import { crc32 } from "node:zlib";

export const KEY_PREFIX = "sk_sluice_";
const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const randomLength = 32;
const checksumLength = 6;
const shape = new RegExp(`^${KEY_PREFIX}([0-9A-Za-z]{${randomLength}})_([0-9A-Za-z]{${checksumLength}})$`);

function base62(n: number, width: number): string {
  let out = "";
  let v = n;
  for (let i = 0; i < width; i++) {
    out = alphabet[v % 62]! + out;
    v = Math.floor(v / 62);
  }
  return out;
}

function checksum(body: string): string {
  return base62(crc32(body) >>> 0, checksumLength);
}

/** A new random key. */
export function generateKey(): string {
  // Rejection sampling keeps every character uniform (256 is not a multiple of 62).
  let random = "";
  while (random.length < randomLength) {
    for (const b of randomBytes(48)) {
      if (b < 248 && random.length < randomLength) random += alphabet[b % 62];
    }
  }
  const body = `${KEY_PREFIX}${random}`;
  return `${body}_${checksum(body)}`;
}

/** True when `token` has the key shape and its checksum matches. */
export function isWellFormedKey(token: string): boolean {
  const m = shape.exec(token);
  if (!m) return false;
  return checksum(`${KEY_PREFIX}${m[1]}`) === m[2];
}

/** What is stored instead of the key. */
export function hashKey(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}

/** The part of a key shown in listings and logs (prefix and first characters), never enough to use it. */
export function keyHint(token: string): string {
  return `${token.slice(0, KEY_PREFIX.length + 4)}…`;
}
