/** IPv4 and IPv6 address parsing for the `cidr` operator (compile time and match time). */
/** Parses a dotted-quad IPv4 address (no leading zeros) into an unsigned 32-bit number, or -1. */
export function parseIPv4(s: string): number {
  const parts = s.split(".");
  if (parts.length !== 4) return -1;
  let n = 0;
  for (const p of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return -1;
    const b = Number(p);
    if (b > 255) return -1;
    n = n * 256 + b;
  }
  return n;
}

/** Parses an IPv6 address (with `::` and an optional IPv4 tail) into 8 16-bit words, or null. */
export function parseIPv6(s: string): Uint16Array | null {
  if (s.length < 2 || s.length > 45) return null;
  const halves = s.split("::");
  if (halves.length > 2) return null;
  const groups = (h: string): number[] | null => {
    if (h === "") return [];
    const out: number[] = [];
    const items = h.split(":");
    for (let i = 0; i < items.length; i++) {
      const it = items[i] as string;
      if (i === items.length - 1 && it.includes(".")) {
        const v4 = parseIPv4(it);
        if (v4 < 0) return null;
        out.push(Math.floor(v4 / 65536), v4 % 65536);
      } else {
        if (!/^[0-9A-Fa-f]{1,4}$/.test(it)) return null;
        out.push(parseInt(it, 16));
      }
    }
    return out;
  };
  const head = groups(halves[0] as string);
  if (head === null) return null;
  if (halves.length === 1) return head.length === 8 ? Uint16Array.from(head) : null;
  const tail = groups(halves[1] as string);
  if (tail === null || head.length + tail.length > 7) return null;
  const out = new Uint16Array(8);
  out.set(head, 0);
  out.set(tail, 8 - tail.length);
  return out;
}
