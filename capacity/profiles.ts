import { readFile } from 'node:fs/promises';
import { PushbenchError } from '../core/errors.js';
import { type NodeProfile, type NodeProfileInput, validateScenario } from '../scenarios/schema.js';

/**
 * Node profiles that ship with pushbench, sized for a small machine: a quarter,
 * a half and a whole core. Prices are illustrative units per node-hour, there
 * so cost ratios can be shown; give real ones in a profiles file.
 */
export const builtinProfiles: Readonly<Record<string, NodeProfileInput>> = {
  small: { cpu: 0.25, memory: '256MiB', price: 1 },
  medium: { cpu: 0.5, memory: '512MiB', price: 2 },
  large: { cpu: 1, memory: '1GiB', price: 4 },
  unlimited: {},
};

/**
 * The profiles a command can name: the built-ins, then those of a profiles
 * file (JSON: `{"name": {cpu, memory, capacity, ...}}`, or a scenario JSON
 * whose `topology.profiles` holds them), which win on equal names.
 */
export async function loadProfiles(file?: string): Promise<Record<string, NodeProfileInput>> {
  const out: Record<string, NodeProfileInput> = { ...builtinProfiles };
  if (!file) return out;
  let value: unknown;
  try {
    value = JSON.parse(await readFile(file, 'utf8'));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new PushbenchError(
      'PB_USAGE',
      code === 'ENOENT'
        ? `profiles file ${file} does not exist`
        : `profiles file ${file} is not JSON: ${(err as Error).message.split('\n')[0]}`,
    );
  }
  const fromScenario = (value as { topology?: { profiles?: unknown } })?.topology?.profiles;
  const profiles = fromScenario ?? value;
  if (typeof profiles !== 'object' || profiles === null || Array.isArray(profiles)) {
    throw new PushbenchError(
      'PB_USAGE',
      `profiles file ${file} must map names to profiles, e.g. {"small": {"cpu": 0.5, "memory": "256MiB"}}`,
    );
  }
  for (const [name, input] of Object.entries(profiles)) out[name] = input as NodeProfileInput;
  return out;
}

/**
 * Resolves and validates one profile by name, with the scenario validator's
 * messages (`topology.profiles.<name>.memory: ...`), so a bad profile is
 * refused before anything starts.
 */
export function resolveProfile(
  profiles: Record<string, NodeProfileInput>,
  name: string,
): { name: string; input: NodeProfileInput; profile: NodeProfile } {
  const input = profiles[name];
  if (!input) {
    throw new PushbenchError(
      'PB_USAGE',
      `unknown profile "${name}" (known: ${Object.keys(profiles).join(', ')}; add more with --profiles FILE)`,
    );
  }
  const s = validateScenario(
    {
      name: 'profile-check',
      devices: { count: 1 },
      duration: 1,
      topology: {
        regions: [{ name: 'cap', nodes: 1, profile: name }],
        profiles: { [name]: input },
      },
    },
    { cores: 1 },
  );
  return { name, input, profile: s.topology.regions[0]!.profile };
}
