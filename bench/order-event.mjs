/**
 * The benchmarks' event: an order of about 300 bytes encoded, the shape the peer workloads of
 * ../shared/bench/peers publish, so Sluice and its peers move the same bytes. Plain JavaScript, so that the bus
 * bench's child (bus-child.mjs, run by plain `node` on the compiled code) and the TypeScript benches share it.
 *
 * @param {string} id
 * @param {number} i
 */
export function orderEvent(id, i) {
  return {
    specversion: "1.0",
    id,
    type: "order.created",
    source: "/shop/checkout",
    time: "2026-01-01T12:00:00.000Z",
    data: {
      orderId: `ord_${(1_000_000 + i).toString(36)}`,
      customerId: `cus_${(i % 9973).toString(36)}`,
      currency: "EUR",
      total: 12345 + (i % 1000),
      items: [
        { sku: "SKU-000123", qty: 2, price: 2500 },
        { sku: "SKU-004567", qty: 1, price: 7345 },
      ],
      ts: 0,
    },
  };
}
