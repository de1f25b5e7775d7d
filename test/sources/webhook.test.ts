/**
 * The webhook source: requests signed by the senders' own libraries (@octokit/webhooks-methods for GitHub,
 * standardwebhooks) and by Stripe's documented scheme and a plain HMAC are stored once; forged, stale and
 * unsigned ones answer 401 and store nothing; a retried delivery (same delivery id) is a duplicate.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { sign as githubSign } from "@octokit/webhooks-methods";
import { Webhook } from "standardwebhooks";
import { ConfigError, validateApp } from "../../src/server/config.ts";
import { eventually } from "../helpers/sluice-process.ts";
import { startInProcess, writeSourceApp } from "./harness.ts";

const whsec = `whsec_${Buffer.from("standard-webhooks-test-key-0123456789").toString("base64")}`;

test("webhook source - github, stripe, standard-webhooks and hmac: valid accepted once, forged, stale and replayed refused", async () => {
  const app = writeSourceApp(
    {
      gh: { kind: "webhook", path: "/hooks/github", verify: { scheme: "github", secret: "gh-secret" }, type: "github.event" },
      stripe: { kind: "webhook", path: "/hooks/stripe", verify: { scheme: "stripe", secret: "whsec_stripe", toleranceSeconds: 300 }, type: "stripe.event" },
      std: { kind: "webhook", path: "/hooks/std", verify: { scheme: "standard-webhooks", secret: whsec }, type: "std.event" },
      plain: { kind: "webhook", path: "/hooks/plain", verify: { scheme: "hmac", secret: "s3", header: "x-sig" }, type: "plain.event" },
    },
    ["github.event", "stripe.event", "std.event", "plain.event"],
  );
  const server = await startInProcess(app);
  const post = (path: string, body: string, headers: Record<string, string>) =>
    fetch(`${server.url}${path}`, { method: "POST", body, headers: { "content-type": "application/json", ...headers } });
  try {
    // GitHub
    const ghBody = JSON.stringify({ action: "opened", number: 7 });
    const ghSig = await githubSign("gh-secret", ghBody);
    let res = await post("/hooks/github", ghBody, { "x-hub-signature-256": ghSig, "x-github-delivery": "d-1", "x-github-event": "pull_request" });
    assert.equal(res.status, 202, await res.clone().text());
    res = await post("/hooks/github", ghBody, { "x-hub-signature-256": ghSig, "x-github-delivery": "d-1", "x-github-event": "pull_request" });
    assert.equal(res.status, 202);
    assert.deepEqual(((await res.json()) as { duplicates?: string[] }).duplicates, ["d-1"], "a redelivery is a duplicate");
    res = await post("/hooks/github", JSON.stringify({ action: "closed" }), { "x-hub-signature-256": ghSig, "x-github-delivery": "d-2" });
    assert.equal(res.status, 401);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, "E_SIGNATURE_INVALID");
    assert.equal((await post("/hooks/github", ghBody, {})).status, 401);

    // Stripe: t=<s>,v1=HMAC("<t>.<body>")
    const stBody = JSON.stringify({ id: "evt_1", type: "charge.succeeded" });
    const stripeSig = (t: number, body: string, secret = "whsec_stripe") => `t=${t},v1=${createHmac("sha256", secret).update(`${t}.${body}`).digest("hex")}`;
    const now = Math.floor(Date.now() / 1000);
    assert.equal((await post("/hooks/stripe", stBody, { "stripe-signature": stripeSig(now, stBody) })).status, 202);
    assert.equal((await post("/hooks/stripe", stBody, { "stripe-signature": stripeSig(now - 3600, stBody) })).status, 401, "stale");
    assert.equal((await post("/hooks/stripe", stBody, { "stripe-signature": stripeSig(now, stBody, "other") })).status, 401, "forged");

    // Standard Webhooks, signed by the standardwebhooks library
    const wh = new Webhook(whsec);
    const stdBody = JSON.stringify({ type: "invoice.paid", n: 1 });
    const signStd = (id: string, at: Date, body: string) => ({ "webhook-id": id, "webhook-timestamp": String(Math.floor(at.getTime() / 1000)), "webhook-signature": wh.sign(id, at, body) });
    assert.equal((await post("/hooks/std", stdBody, signStd("msg_1", new Date(), stdBody))).status, 202);
    res = await post("/hooks/std", stdBody, signStd("msg_1", new Date(), stdBody));
    assert.deepEqual(((await res.json()) as { duplicates?: string[] }).duplicates, ["msg_1"]);
    assert.equal((await post("/hooks/std", stdBody, signStd("msg_2", new Date(Date.now() - 3600_000), stdBody))).status, 401, "stale");
    const forged = signStd("msg_3", new Date(), stdBody);
    assert.equal((await post("/hooks/std", JSON.stringify({ type: "x" }), forged)).status, 401, "forged");

    // plain HMAC
    const plainBody = "plain text body";
    const hex = createHmac("sha256", "s3").update(plainBody).digest("hex");
    assert.equal((await fetch(`${server.url}/hooks/plain`, { method: "POST", body: plainBody, headers: { "content-type": "text/plain", "x-sig": `sha256=${hex}`, "x-request-id": "p-1" } })).status, 202);
    assert.equal((await fetch(`${server.url}/hooks/plain`, { method: "POST", body: plainBody, headers: { "content-type": "text/plain", "x-sig": "sha256=00" } })).status, 401);

    await eventually(async () => (app.received().length >= 4 ? true : undefined), "four events at the function");
    await new Promise((r) => setTimeout(r, 500));
    const got = app.received();
    assert.deepEqual(got.map((e) => e.type).sort(), ["github.event", "plain.event", "std.event", "stripe.event"], "one event per accepted delivery, none for refused ones");
    const gh = got.find((e) => e.type === "github.event")!;
    assert.deepEqual([gh.id, gh.source, gh.subject, gh.data], ["d-1", "/hooks/github", "pull_request", { action: "opened", number: 7 }]);
    assert.deepEqual([got.find((e) => e.type === "stripe.event")?.id, got.find((e) => e.type === "stripe.event")?.subject], ["evt_1", "charge.succeeded"]);
    assert.equal(got.find((e) => e.type === "plain.event")?.data, "plain text body");
    const info = server.sources.list().find((s) => s.name === "gh")!;
    assert.deepEqual([info.messages.stored, info.messages.duplicate, info.messages.error], [1, 1, 2]);
  } finally {
    await server.close();
  }
});

test("webhook source - config problems name their key", () => {
  try {
    validateApp({ name: "a", sources: { h: { kind: "webhook", path: "hooks", type: "t", verify: { scheme: "gitlab" } } } }, { file: "c.ts" });
    assert.fail("no error");
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    const keys = err.problems.map((p) => p.key);
    assert.ok(keys.includes("sources.h.path"), keys.join());
    assert.ok(keys.includes("sources.h.verify.scheme"));
    assert.ok(keys.includes("sources.h.verify.secret"));
  }
});
