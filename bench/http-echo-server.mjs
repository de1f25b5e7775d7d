// The baseline of bench/http.bench.ts: a plain Fastify server that parses the same JSON bodies and answers 202,
// without validation or storage.
import Fastify from "fastify";

const app = Fastify({ bodyLimit: 4 * 1024 * 1024 });
for (const type of ["application/cloudevents+json", "application/cloudevents-batch+json"]) {
  app.addContentTypeParser(type, { parseAs: "string" }, (_req, body, done) => {
    try {
      done(null, JSON.parse(body));
    } catch (err) {
      done(err);
    }
  });
}
app.post("/events", async (req, reply) => reply.code(202).send({ received: Array.isArray(req.body) ? req.body.length : 1 }));
await app.listen({ port: 0, host: "127.0.0.1" });
console.log(`echo ready at http://127.0.0.1:${app.server.address().port}`);
