/** Renders a lineage tree as indented text for `sluice trace`. */
import type { AttemptNode, DeliveryNode, LineageNode, RunNode } from "./lineage-tree.ts";

const clock = (ms: number) => new Date(ms).toISOString().slice(11, 23);

function runLine(r: RunNode): string {
  const reason = r.reason === undefined ? "" : ` (${r.reason})`;
  return `run ${r.functionName} ${r.outcome}${reason} ${r.durationMs} ms${r.cold ? " cold" : ""} ${r.gbSeconds.toFixed(6)} GB-s [${r.invocationId}]`;
}

function attemptLine(a: AttemptNode): string {
  let line = `attempt ${a.attempt} ${clock(a.startedAt)} ${a.outcome} ${a.durationMs} ms`;
  if (a.reason !== undefined) line += ` reason ${a.reason}`;
  if (a.error !== undefined) line += `: ${a.error}`;
  if (a.nextAttemptAt !== undefined) line += ` (next at ${clock(a.nextAttemptAt)})`;
  return line;
}

function deliveryLine(d: DeliveryNode): string {
  const fn = d.function === undefined ? "" : ` (function ${d.function})`;
  const n = d.attempts.length;
  return `rule ${d.bus}/${d.rule} -> ${d.target}${fn}: ${d.status}${n > 0 ? ` after ${n} attempt${n === 1 ? "" : "s"}` : ""}`;
}

function eventLine(n: LineageNode): string {
  if (!n.found) return `${n.type ?? "event"} ${n.eventId} (nothing recorded: unknown id or past retention)`;
  const where = n.stored.map((s) => `${s.bus} ${clock(s.storedAt)}`).join(", ");
  const by = n.emittedBy === undefined ? "" : ` emitted by ${n.emittedBy.functionName}`;
  return `${n.type ?? "event"} ${n.eventId}${by}${where === "" ? "" : ` stored on ${where}`}`;
}

/** The tree as lines, box-drawing style. */
export function renderLineage(root: LineageNode): string {
  const lines: string[] = [];
  const walk = (node: LineageNode, prefix: string, childPrefix: string) => {
    lines.push(prefix + eventLine(node));
    type Item = { text: string; sub: Item[] } | { node: LineageNode };
    const items: Item[] = [];
    for (const d of node.deliveries) {
      items.push({
        text: deliveryLine(d),
        sub: d.attempts.map((a) => ({ text: attemptLine(a), sub: a.run === undefined ? [] : [{ text: runLine(a.run), sub: [] }] })),
      });
    }
    for (const r of node.runs) items.push({ text: runLine(r), sub: [] });
    for (const c of node.children) items.push({ node: c });
    if (node.truncated) items.push({ text: "… (more events: the walk stopped at its limit)", sub: [] });
    const put = (list: Item[], pre: string) => {
      list.forEach((item, i) => {
        const last = i === list.length - 1;
        const head = pre + (last ? "└─ " : "├─ ");
        const next = pre + (last ? "   " : "│  ");
        if ("node" in item) walk(item.node, head, next);
        else {
          lines.push(head + item.text);
          put(item.sub, next);
        }
      });
    };
    put(items, childPrefix);
  };
  walk(root, "", "");
  return lines.join("\n");
}
