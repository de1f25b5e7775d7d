/**
 * What a function file imports from "sluice": small and free of host-side code (no esbuild, no drivers),
 * so that instances load fast. The loader points the bare specifier "sluice" at this module when it bundles
 * a function file.
 */
export { defineFunction, isFunctionDefinition } from "./define.ts";
export type {
  Duration,
  EmittedEvent,
  FunctionConfig,
  FunctionContext,
  FunctionDefinition,
  FunctionDefinitionInput,
  FunctionHandler,
  FunctionLogger,
} from "./define.ts";
export { ErrorCode, SluiceError, isSluiceError } from "../errors.ts";
export { NonRetriableError, RetryAfterError } from "../errors.ts";
export { defineSaga, defineWorkflow } from "../workflows/define.ts";
export type { SagaDefinitionInput, WorkflowDefinitionInput } from "../workflows/define.ts";
export type { Step, StepInfo, StepRunOptions, WaitForEventOptions, WorkflowEmit } from "../workflows/types.ts";
