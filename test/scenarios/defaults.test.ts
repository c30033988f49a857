import { readFileSync } from 'node:fs';
import { describe, expect, expectTypeOf, it } from 'vitest';
import { PushbenchError } from '../../core/errors.js';
import { defaultHeartbeatTimeoutMs } from '../../core/ws/heartbeat.js';
import { ms } from '../../scenarios/fields.js';
import { scenarioDefaults, validateScenario } from '../../scenarios/schema.js';
import { devicesDefaults, periodicReconnectDefaults } from '../../scenarios/sections/devices.js';
import { actionDefaults, actionFieldDefaults } from '../../scenarios/sections/timeline.js';
import {
  profileDefaults,
  regionDefaults,
  topologyDefaults,
} from '../../scenarios/sections/topology.js';
import { trafficDefaults } from '../../scenarios/sections/traffic.js';
import { TIMELINE_ACTIONS, type TimelineActionInput } from '../../scenarios/types.js';

const ctx = { cores: 2 };
const base = { name: 'x', devices: { count: 1 }, duration: 1 };

function problemsOf(input: unknown): readonly string[] {
  try {
    validateScenario(input, ctx);
    return [];
  } catch (err) {
    expect(err).toBeInstanceOf(PushbenchError);
    return (err as PushbenchError).problems;
  }
}

function isComputed(v: unknown): boolean {
  return typeof v === 'object' && v !== null && 'computed' in v;
}

/** A table as a scenario would write it: every key present, markers (required, off, computed) left undefined. */
function written(table: object): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(table)) {
    if (v === null || isComputed(v)) out[key] = undefined;
    else if (typeof v === 'object' && !Array.isArray(v)) out[key] = written(v);
    else out[key] = v;
  }
  return out;
}

/** Every defaults table, the path the validator applies it at, and how to put an object there. */
const tables: Array<{ path: string; table: object; place: (o: object) => object }> = [
  { path: '', table: scenarioDefaults, place: (o) => ({ ...o, ...base }) },
  { path: 'topology', table: topologyDefaults, place: (o) => ({ ...base, topology: o }) },
  {
    path: 'topology.regions[0]',
    table: regionDefaults,
    place: (o) => ({ ...base, topology: { regions: [o] } }),
  },
  {
    path: 'topology.profiles.small',
    table: profileDefaults,
    place: (o) => ({ ...base, topology: { profiles: { small: o } } }),
  },
  {
    path: 'topology.balancer',
    table: topologyDefaults.balancer,
    place: (o) => ({ ...base, topology: { balancer: o } }),
  },
  {
    path: 'topology.balancer.health',
    table: topologyDefaults.balancer.health,
    place: (o) => ({ ...base, topology: { balancer: { health: o } } }),
  },
  {
    path: 'topology.routing',
    table: topologyDefaults.routing,
    place: (o) => ({ ...base, topology: { routing: o } }),
  },
  {
    path: 'topology.routing.health',
    table: topologyDefaults.routing.health,
    place: (o) => ({ ...base, topology: { routing: { health: o } } }),
  },
  {
    path: 'devices',
    table: devicesDefaults,
    place: (o) => ({ ...base, devices: { ...o, count: 1 } }),
  },
  {
    path: 'devices.reconnect',
    table: devicesDefaults.reconnect,
    place: (o) => ({ ...base, devices: { count: 1, reconnect: o } }),
  },
  {
    path: 'devices.periodicReconnect',
    table: periodicReconnectDefaults,
    place: (o) => ({ ...base, devices: { count: 1, periodicReconnect: o } }),
  },
  { path: 'traffic', table: trafficDefaults, place: (o) => ({ ...base, traffic: o }) },
  ...(['direct', 'indirect', 'd2d', 'rooms'] as const).map((flow) => ({
    path: `traffic.${flow}`,
    table: trafficDefaults[flow],
    place: (o: object) => ({ ...base, traffic: { [flow]: o } }),
  })),
  {
    path: 'placement',
    table: scenarioDefaults.placement,
    place: (o) => ({ ...base, placement: o }),
  },
  ...TIMELINE_ACTIONS.map((action) => ({
    path: 'timeline[0]',
    table: { ...actionDefaults, ...actionFieldDefaults[action] },
    place: (o: object) => ({ ...base, timeline: [{ ...o, at: 0, action }] }),
  })),
];

describe('defaults tables', () => {
  it('accept every field they list, at every level', () => {
    for (const { path, table, place } of tables) {
      const unknown = problemsOf(place(written(table))).filter((x) => x.includes('unknown field'));
      expect(unknown, path).toEqual([]);
    }
  });

  it('reject a field they do not list, with its path and the fields they do', () => {
    for (const { path, table, place } of tables) {
      const at = path === '' ? 'colour' : `${path}.colour`;
      expect(problemsOf(place({ ...written(table), colour: 'red' })), path).toContain(
        `${at}: unknown field (known: ${Object.keys(table).join(', ')})`,
      );
    }
  });

  it('are what an omitted field resolves to', () => {
    const s = validateScenario(base, ctx);
    const t = topologyDefaults;
    const region = s.topology.regions[0]!;
    expect(region.nodes).toBe(t.nodes);
    expect(region.balancer).toEqual({
      algorithm: t.balancer.algorithm,
      engine: t.balancer.engine,
      slowStartMs: ms(t.balancer.slowStart),
      health: {
        intervalMs: ms(t.balancer.health.interval),
        timeoutMs: ms(t.balancer.health.timeout),
        fall: t.balancer.health.fall,
        rise: t.balancer.health.rise,
      },
      failOpen: t.balancer.failOpen,
      redispatch: t.balancer.redispatch,
      maxConnecting: t.balancer.maxConnecting,
      queueTimeoutMs: t.balancer.queueTimeout,
    });
    expect(s.topology.routing).toEqual({
      mode: t.routing.mode,
      health: {
        intervalMs: ms(t.routing.health.interval),
        timeoutMs: ms(t.routing.health.timeout),
        fall: t.routing.health.fall,
        rise: t.routing.health.rise,
      },
    });
    expect(region.profile).toMatchObject({
      overload: profileDefaults.overload,
      heartbeatIntervalMs: ms(t.heartbeatInterval),
      heartbeatTimeoutMs: defaultHeartbeatTimeoutMs(ms(t.heartbeatInterval)),
      drainWindowMs: ms(profileDefaults.drainWindow),
    });
    const d = devicesDefaults;
    expect(s.devices).toMatchObject({
      connectRateHz: d.connectRate,
      connectTimeoutMs: ms(d.connectTimeout),
      accounts: d.accounts,
      reconnect: {
        policy: d.reconnect.policy,
        baseMs: ms(d.reconnect.base),
        capMs: ms(d.reconnect.cap),
        maxAttempts: d.reconnect.maxAttempts,
      },
    });
    for (const flow of ['direct', 'indirect', 'd2d'] as const) {
      const f = trafficDefaults[flow];
      expect(s.traffic[flow]).toEqual({ rateHz: f.rate, payloadBytes: f.payloadBytes });
    }
    expect(s.deliveryDeadlineMs).toBe(ms(scenarioDefaults.deliveryDeadline));
    expect(s.seed).toBe(scenarioDefaults.seed);
    expect(s.description).toBe(scenarioDefaults.description);
    const scaleDown = validateScenario(
      {
        ...base,
        topology: { nodes: 2 },
        timeline: [{ at: 0, action: 'scale-down', region: 'local', nodes: 1 }],
      },
      ctx,
    ).timeline[0];
    expect(scaleDown).toMatchObject({ graceful: actionFieldDefaults['scale-down'].graceful });
  });

  it('name every field of a timeline action between them', () => {
    type Listed =
      | keyof typeof actionDefaults
      | {
          [A in keyof typeof actionFieldDefaults]: keyof (typeof actionFieldDefaults)[A];
        }[keyof typeof actionFieldDefaults];
    expectTypeOf<Listed>().toEqualTypeOf<keyof TimelineActionInput>();
    expect(Object.keys(actionFieldDefaults)).toEqual([...TIMELINE_ACTIONS]);
  });
});

/** Whether a docs cell shows `value` as a whole token (so `100` is not found in `1000`). */
function shows(cell: string, value: string | number | boolean): boolean {
  if (value === '') return cell.includes('""');
  const escaped = `${value}`.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`(?<![\\w.])${escaped}(?![\\w.])`).test(cell);
}

describe('docs/scenarios.md', () => {
  const docs = readFileSync(new URL('../../docs/scenarios.md', import.meta.url), 'utf8');

  /** The rows (as cells) of the first table after `heading`. */
  function rowsAfter(heading: string): string[][] {
    const start = docs.indexOf(heading);
    expect(start, heading).toBeGreaterThanOrEqual(0);
    const lines = docs.slice(start).split('\n');
    const first = lines.findIndex((l) => l.startsWith('|'));
    const table: string[] = [];
    for (const line of lines.slice(first)) {
      if (!line.startsWith('|')) break;
      table.push(line);
    }
    // Split on | not escaped as \|, and drop the header and separator rows.
    return table.slice(2).map((l) => l.split(/(?<!\\)\|/).slice(1, -1));
  }

  /** Field names a first cell documents; `a.b.rate` / `.payloadBytes` names `a.b.payloadBytes` too. */
  function fieldsOf(cell: string): string[] {
    const names = [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);
    const full = names.find((n) => !n.startsWith('.')) ?? '';
    return names.map((n) => (n.startsWith('.') ? full.slice(0, full.lastIndexOf('.')) + n : n));
  }

  const documented: Array<{ heading: string; prefix: string; tables: object[] }> = [
    { heading: '### Top level', prefix: '', tables: [scenarioDefaults] },
    { heading: '### Placement', prefix: '', tables: [scenarioDefaults.placement] },
    { heading: '### Topology', prefix: 'topology.', tables: [topologyDefaults] },
    { heading: '**Region**', prefix: '', tables: [regionDefaults] },
    { heading: '**Balancer**', prefix: '', tables: [topologyDefaults.balancer] },
    {
      heading: '**Health**',
      prefix: '',
      tables: [topologyDefaults.balancer.health, topologyDefaults.routing.health],
    },
    { heading: '**Profile**', prefix: '', tables: [profileDefaults] },
    { heading: '**Routing**', prefix: '', tables: [topologyDefaults.routing] },
    { heading: '### Devices', prefix: 'devices.', tables: [devicesDefaults] },
    { heading: '**Reconnect**', prefix: '', tables: [devicesDefaults.reconnect] },
    { heading: '**Periodic reconnect**', prefix: '', tables: [periodicReconnectDefaults] },
    ...(['direct', 'indirect', 'd2d', 'rooms'] as const).map((flow) => ({
      heading: '### Traffic',
      prefix: `traffic.${flow}.`,
      tables: [trafficDefaults[flow]],
    })),
  ];

  it('has a row for every field of every defaults table, showing its default', () => {
    for (const { heading, prefix, tables } of documented) {
      const rows = rowsAfter(heading);
      for (const table of tables) {
        for (const [key, value] of Object.entries(table)) {
          const row = rows.find((r) => fieldsOf(r[0] ?? '').includes(prefix + key));
          expect(row, `${heading}: ${prefix}${key}`).toBeDefined();
          const shown = row?.[2] ?? '';
          if (value === undefined) expect(shown, `${prefix}${key}`).toContain('required');
          else if (typeof value !== 'object') {
            expect(shows(shown, value), `${prefix}${key}: ${value} in "${shown}"`).toBe(true);
          }
        }
      }
    }
  });

  it('lists every timeline action with its fields and their defaults', () => {
    const rows = rowsAfter('| action | fields |');
    for (const action of TIMELINE_ACTIONS) {
      const row = rows.find((r) => r[0]?.trim() === `\`${action}\``);
      expect(row, action).toBeDefined();
      const fields = row?.[1] ?? '';
      for (const [key, value] of Object.entries(actionFieldDefaults[action])) {
        // A fault's `node` / `region` pair is written "target".
        const target = (key === 'node' || key === 'region') && value === null;
        expect(fields, `${action}.${key}`).toContain(target ? 'target' : `\`${key}\``);
        if (value !== undefined && value !== null && typeof value !== 'object') {
          expect(shows(fields, value), `${action}.${key}: ${value} in "${fields}"`).toBe(true);
        }
      }
    }
  });
});
