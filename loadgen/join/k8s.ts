/**
 * `pushbench k8s agents`: the Kubernetes objects that place N load agents
 * for a run that waits for them (`pushbench run … --agents N --listen …`).
 *
 * - An Indexed Job (`completionMode: Indexed`): pod k is agent `agent-k`,
 *   named from its completion index (the pod annotation
 *   `batch.kubernetes.io/job-completion-index`, by the downward API), so every
 *   agent has its own name.
 * - `backoffLimit: 0` and a `podFailurePolicy` that fails the Job on any
 *   non-zero exit of the agent container and on a disruption: a lost agent
 *   ends the run (exit 6 at the coordinator) and is never started again, so a
 *   failed or half-run test is never re-run behind the user's back
 *   (k6-operator#75 is what happens otherwise).
 * - A headless Service that is the Job's pods' subdomain: each agent gets a
 *   stable DNS name (`<job>-<k>.<service>`), which the coordinator's report
 *   and the cluster's logs can be matched by.
 *
 * The token comes from a Secret (`--token-secret NAME`, key `token`), never
 * from the manifest. The YAML is printed; nothing here talks to a cluster.
 */

/** Settings of {@link agentsManifest}. */
export interface K8sAgentsOptions {
  agents: number;
  /** The run's join URL, `ws://HOST:PORT` (what `run --agents` prints). */
  coordinator: string;
  image: string;
  /** The Job's name (and the Service's). */
  name: string;
  namespace?: string;
  /** Secret holding the agent token under key `token`. */
  tokenSecret: string;
  /** Per agent: `--max-devices`, and the container's requests. */
  maxDevices?: number;
  cpu: string;
  memory: string;
}

type Yaml = string | number | boolean | null | Yaml[] | { [key: string]: Yaml };

/** The two objects, as plain data (tests read them; {@link toYaml} prints them). */
export function agentsObjects(o: K8sAgentsOptions): Array<Record<string, Yaml>> {
  const labels = {
    'app.kubernetes.io/name': 'pushbench-agent',
    'app.kubernetes.io/instance': o.name,
  };
  const meta = (name: string) => ({
    name,
    ...(o.namespace !== undefined && { namespace: o.namespace }),
    labels,
  });
  const args = [
    'agent',
    '--join',
    o.coordinator,
    '--name',
    'agent-$(AGENT_INDEX)',
    ...(o.maxDevices !== undefined ? ['--max-devices', String(o.maxDevices)] : []),
  ];
  const service: Record<string, Yaml> = {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: meta(o.name),
    // Headless: no virtual IP and no ports, only a DNS name per pod.
    spec: { clusterIP: 'None', selector: labels },
  };
  const job: Record<string, Yaml> = {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: meta(o.name),
    spec: {
      completionMode: 'Indexed',
      completions: o.agents,
      parallelism: o.agents,
      backoffLimit: 0,
      podFailurePolicy: {
        rules: [
          {
            action: 'FailJob',
            onExitCodes: { containerName: 'agent', operator: 'NotIn', values: [0] },
          } as Yaml,
          {
            action: 'FailJob',
            onPodConditions: [{ type: 'DisruptionTarget' }],
          },
        ],
      },
      template: {
        metadata: { labels },
        spec: {
          restartPolicy: 'Never',
          subdomain: o.name,
          containers: [
            {
              name: 'agent',
              image: o.image,
              command: ['pushbench'],
              args,
              env: [
                {
                  name: 'PUSHBENCH_AGENT_TOKEN',
                  valueFrom: { secretKeyRef: { name: o.tokenSecret, key: 'token' } },
                },
                // The pod's completion index, which an Indexed Job sets on every pod.
                {
                  name: 'AGENT_INDEX',
                  valueFrom: {
                    fieldRef: {
                      fieldPath: "metadata.annotations['batch.kubernetes.io/job-completion-index']",
                    },
                  },
                },
              ],
              resources: {
                requests: { cpu: o.cpu, memory: o.memory },
                limits: { memory: o.memory },
              },
            },
          ],
        },
      },
    },
  };
  return [service, job];
}

/** YAML for plain data: block style, every string double-quoted (JSON's escapes are YAML's). */
export function toYaml(value: Yaml, indent = 0): string {
  const pad = ' '.repeat(indent);
  if (value === null || typeof value !== 'object') return scalar(value);
  if (Array.isArray(value)) {
    if (value.length === 0) return '[]';
    return value
      .map((v) => {
        const inner = toYaml(v, indent + 2);
        return isBlock(v) ? `${pad}- ${inner.trimStart()}` : `${pad}- ${inner}`;
      })
      .join('\n');
  }
  const entries = Object.entries(value);
  if (entries.length === 0) return '{}';
  return entries
    .map(([k, v]) =>
      isBlock(v) ? `${pad}${k}:\n${toYaml(v, indent + 2)}` : `${pad}${k}: ${toYaml(v, indent + 2)}`,
    )
    .join('\n');
}

function isBlock(v: Yaml): boolean {
  return (
    v !== null &&
    typeof v === 'object' &&
    (Array.isArray(v) ? v.length > 0 : Object.keys(v).length > 0)
  );
}

function scalar(v: string | number | boolean | null): string {
  return typeof v === 'string' ? JSON.stringify(v) : String(v);
}

/** The manifest: the Service and the Job, as one YAML stream. */
export function agentsManifest(o: K8sAgentsOptions): string {
  const header = `# pushbench load agents: ${o.agents} of them join ${o.coordinator}\n# kubectl create secret generic ${o.tokenSecret} --from-literal=token=<the run's --agent-token>\n`;
  return `${header}${agentsObjects(o)
    .map((obj) => `---\n${toYaml(obj)}\n`)
    .join('')}`;
}
