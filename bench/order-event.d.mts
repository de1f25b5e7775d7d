/** Types of order-event.mjs (see there). */
export declare function orderEvent(
  id: string,
  i: number,
): {
  specversion: string;
  id: string;
  type: string;
  source: string;
  time: string;
  data: {
    orderId: string;
    customerId: string;
    currency: string;
    total: number;
    items: { sku: string; qty: number; price: number }[];
    ts: number;
  };
};
