/**
 * Outgoing calls to addresses a server should not reach on a caller's behalf: loopback, private, link-local
 * (the 169.254.169.254 metadata service), carrier-grade NAT, multicast and reserved ranges, IPv4 and IPv6.
 * Checked on the address a connection is made to, after DNS resolution (a name that resolves to 10.0.0.1 is
 * refused, and so is one that is rebound to it between a check and the connection).
 */
import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from "node:dns";
import { BlockList, isIP } from "node:net";
import { ErrorCode, SluiceError } from "../../errors.ts";

const blocked = new BlockList();
for (const [net, prefix] of [
  ["0.0.0.0", 8], ["10.0.0.0", 8], ["100.64.0.0", 10], ["127.0.0.0", 8], ["169.254.0.0", 16], ["172.16.0.0", 12],
  ["192.0.0.0", 24], ["192.0.2.0", 24], ["192.168.0.0", 16], ["198.18.0.0", 15], ["198.51.100.0", 24], ["203.0.113.0", 24],
  ["224.0.0.0", 4], ["240.0.0.0", 4],
] as const) blocked.addSubnet(net, prefix, "ipv4");
for (const [net, prefix] of [
  ["::", 128], ["::1", 128], ["fc00::", 7], ["fe80::", 10], ["ff00::", 8], ["64:ff9b::", 96], ["100::", 64], ["2001:db8::", 32],
] as const) blocked.addSubnet(net, prefix, "ipv6");

/** Why `address` may not be called, or undefined when it may. */
export function addressRefusal(address: string): string | undefined {
  const family = isIP(address);
  if (family === 0) return `${address} is not an IP address`;
  // An IPv4-mapped IPv6 address (::ffff:10.0.0.1) is the IPv4 address it carries.
  const mapped = family === 6 ? /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1] : undefined;
  if (mapped !== undefined) return addressRefusal(mapped);
  if (blocked.check(address, family === 4 ? "ipv4" : "ipv6")) return `${address} is a private, loopback, link-local or reserved address`;
  return undefined;
}

export function refusedError(host: string, reason: string): SluiceError {
  return new SluiceError(
    ErrorCode.AddressRefused,
    `${host}: ${reason}; set server.allowPrivateNetworks: true to allow calls into private networks`,
    { retryable: false },
  );
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/** A `lookup` for http.request that resolves as usual and fails when any resolved address is refused. */
export function guardedLookup(hostname: string, options: LookupOptions, callback: LookupCallback): void {
  dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
    if (err) return callback(err, []);
    for (const a of addresses) {
      const reason = addressRefusal(a.address);
      if (reason) return callback(refusedError(hostname, reason) as unknown as NodeJS.ErrnoException, []);
    }
    if (options.all) return callback(null, addresses);
    const first = addresses[0];
    if (!first) return callback(Object.assign(new Error(`${hostname} has no address`), { code: "ENOTFOUND" }), []);
    callback(null, first.address, first.family);
  });
}
