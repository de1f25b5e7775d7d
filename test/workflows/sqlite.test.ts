import { runWorkflowSuite } from "./suite.ts";

runWorkflowSuite({ name: "sqlite", store: async () => undefined, skip: false });
