/**
 * `pushbench k8s agents`, read back as Kubernetes reads it: a YAML stream of
 * a headless Service and an Indexed Job whose failures are never retried.
 * (It is not applied here: no cluster is reachable from this machine.)
 */
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';

const BIN = ['--import', 'tsx', 'bin/pushbench.ts'];

function cli(args: string[]) {
  return execa(process.execPath, [...BIN, ...args], { reject: false, env: { NO_COLOR: '1' } });
}

describe('pushbench k8s agents', () => {
  it('prints a headless Service and an Indexed Job that never re-runs a failed agent', async () => {
    const r = await cli([
      'k8s',
      'agents',
      '--agents',
      '4',
      '--coordinator',
      'ws://10.1.2.3:7400',
      '--namespace',
      'load',
      '--max-devices',
      '50000',
    ]);
    expect(r.exitCode, r.stderr).toBe(0);
    const docs = parseAllDocuments(r.stdout).map((d) => {
      expect(d.errors).toEqual([]);
      return d.toJS();
    });
    const [service, job] = docs;
    expect(service).toMatchObject({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'pushbench-agents', namespace: 'load' },
      spec: { clusterIP: 'None' },
    });
    expect(job.apiVersion).toBe('batch/v1');
    expect(job.kind).toBe('Job');
    expect(job.spec).toMatchObject({
      completionMode: 'Indexed',
      completions: 4,
      parallelism: 4,
      backoffLimit: 0,
    });
    // Any non-zero exit of the agent, or a disruption, fails the Job instead of retrying.
    expect(job.spec.podFailurePolicy.rules).toEqual([
      {
        action: 'FailJob',
        onExitCodes: { containerName: 'agent', operator: 'NotIn', values: [0] },
      },
      { action: 'FailJob', onPodConditions: [{ type: 'DisruptionTarget' }] },
    ]);
    const pod = job.spec.template.spec;
    // podFailurePolicy requires pods that are never restarted in place.
    expect(pod.restartPolicy).toBe('Never');
    // The Service selects the Job's pods and is their subdomain: one DNS name per agent.
    expect(pod.subdomain).toBe(service.metadata.name);
    expect(job.spec.template.metadata.labels).toEqual(service.spec.selector);
    const [agent] = pod.containers;
    expect(agent.name).toBe('agent');
    expect([...agent.command, ...agent.args]).toEqual([
      'pushbench',
      'agent',
      '--join',
      'ws://10.1.2.3:7400',
      '--name',
      'agent-$(AGENT_INDEX)',
      '--max-devices',
      '50000',
    ]);
    const env = Object.fromEntries(agent.env.map((e: { name: string }) => [e.name, e]));
    // The token comes from a Secret, never from the manifest.
    expect(env.PUSHBENCH_AGENT_TOKEN.valueFrom.secretKeyRef).toEqual({
      name: 'pushbench-agent-token',
      key: 'token',
    });
    expect(r.stdout).not.toMatch(/--token/);
    expect(env.AGENT_INDEX.valueFrom.fieldRef.fieldPath).toBe(
      "metadata.annotations['batch.kubernetes.io/job-completion-index']",
    );
  });

  it('refuses bad flags with one line, exit 2', async () => {
    for (const [args, message] of [
      [['--agents', '0', '--coordinator', 'ws://h:1'], /--agents must be 1-100000/],
      [
        ['--agents', '2', '--coordinator', 'http://h:1'],
        /--join must be a ws:\/\/ or wss:\/\/ URL/,
      ],
      [
        ['--agents', '2', '--coordinator', 'ws://h:1', '--name', 'Bad_Name'],
        /--name "Bad_Name" is not a Kubernetes name/,
      ],
      [
        ['--agents', '2', '--coordinator', 'ws://h:1', '--memory', 'lots'],
        /--memory must be a quantity/,
      ],
    ] as const) {
      const r = await cli(['k8s', 'agents', ...args]);
      expect(r.exitCode).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(message);
    }
  });
});
