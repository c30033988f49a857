import type { ScenarioInput } from '../types.js';
import balancerScaleUp from './balancer-scale-up.js';
import conntrackLimit from './conntrack-limit.js';
import d2dLatency from './d2d-latency.js';
import drain from './drain.js';
import fiveNines from './five-nines.js';
import hold from './hold.js';
import nodeKill from './node-kill.js';
import regionalLatency from './regional-latency.js';
import registryLatency from './registry-latency.js';
import silentFailure from './silent-failure.js';
import smoke from './smoke.js';

/** The scenarios shipped with pushbench, by name. */
export const builtinScenarios: Readonly<Record<string, ScenarioInput>> = {
  smoke,
  'node-kill': nodeKill,
  'balancer-scale-up': balancerScaleUp,
  'regional-latency': regionalLatency,
  'conntrack-limit': conntrackLimit,
  drain,
  'silent-failure': silentFailure,
  'd2d-latency': d2dLatency,
  'registry-latency': registryLatency,
  'five-nines': fiveNines,
  hold,
};
