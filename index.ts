/**
 * pushbench's programmatic API. The CLI (bin/pushbench.ts) is built on exactly
 * these exports.
 */

export {
  checkModel,
  formatModelCheck,
  type ModelCheck,
  type ModelCheckOptions,
} from './capacity/model-check.js';
export {
  type FleetPlan,
  formatPlan,
  herdAbsorption,
  type PlanInput,
  parseReconnectSpec,
  planFleet,
} from './capacity/plan.js';
export {
  builtinProfiles,
  loadProfiles,
  resolveProfile,
} from './capacity/profiles.js';
export {
  type CapacityReport,
  formatCapacity,
  formatCapacityComparison,
  readCapacityReport,
  writeCapacityReport,
} from './capacity/report.js';
export { type CapacityOptions, searchCapacity } from './capacity/search.js';
export { type HerdInput, type HerdResult, simulateHerd } from './capacity/simulate.js';
export { type ErrorCode, PushbenchError } from './core/errors.js';
export { ExitCode, type ExitCodeValue } from './core/exit-codes.js';
export { type MachineFacts, machineFacts, processLimits } from './core/machine.js';
export type { LatencySummary } from './core/measure/histogram.js';
export type { DeliveryLedger } from './core/measure/ledger.js';
export type { LoadResult, RunPhase, TimelinePoint } from './core/result.js';
export { formatMs, parseDurationMs } from './core/units.js';
export { version } from './core/version.js';
export { CloseCode, retryableCloseCodes } from './core/ws/close-codes.js';
export {
  type Comparison,
  compareReports,
  labelOf,
  readReport,
  renderComparisonMarkdown,
  renderComparisonText,
} from './reports/compare.js';
export {
  evaluateGates,
  type Gate,
  type GateInputs,
  type GateResult,
  parseGate,
  parseGates,
} from './reports/gates.js';
export { writeComparison } from './reports/outputs/comparison.js';
export { type OutputRequest, writeOutputs } from './reports/outputs/index.js';
export { progressListener, type RunListener } from './reports/outputs/progress.js';
export { defaultResultsDir } from './reports/outputs/results-dir.js';
export { colourFor, renderSummary } from './reports/outputs/text.js';
export {
  isRepeatFolder,
  type RepeatSummary,
  readRepeats,
  renderRepeats,
  summarizeRepeats,
} from './reports/repeats.js';
export type { Report, Verdict } from './reports/report.js';
export { type MatrixResult, runMatrix } from './run/matrix.js';
export {
  checkRun,
  formatPreflight,
  machineLimits,
  onEngine,
  type PreflightResult,
} from './run/preflight.js';
export { type RepeatResult, runRepeated } from './run/repeats.js';
export { rerender } from './run/rerender.js';
export { type RunOptions, type RunResult, run } from './run/run.js';
export {
  listBuiltinScenarios,
  loadScenario,
  type MatrixAxis,
  parseAssignment,
  parseMatrixAxis,
  type ScenarioOverrides,
} from './scenarios/load.js';
export {
  BALANCER_ALGORITHMS,
  type BalancerAlgorithmName,
  defineScenario,
  type Scenario,
  type ScenarioInput,
  validateScenario,
} from './scenarios/schema.js';
export { parseD2dAllow } from './server/d2d.js';
export { attachWorker, runPrimary, workerPlace } from './server/multi-process.js';
export {
  createBackends,
  type NodeAddress,
  type NodeBackends,
  type NodeOptions,
  nodeDefaults,
  PushNode,
  startNode,
} from './server/node.js';
export { type ServeNodeOptions, type ServeOptions, serve } from './server/serve.js';
export { type DeviceClaims, isValidId, signToken, verifyToken } from './server/token.js';
export { plannedRoutes } from './topology/cluster.js';
export { chooseNetworkEngine, type NetworkEngineChoice } from './topology/kernel/engine.js';
