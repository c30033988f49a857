import { run } from '../../index.js';

/**
 * `run`, once more when its load generator marks the result invalid (it waited
 * for CPU: on this shared 2-core machine another process can take it). An
 * invalid run says nothing either way about what a test checks, so a test that
 * wants a verdict gets a second run; the rerun is printed with its reasons. A
 * second invalid result is returned as it is, and the test's own assertions
 * fail on it.
 */
export async function runValid(...args: Parameters<typeof run>): ReturnType<typeof run> {
  const first = await run(...args);
  if (first.report.verdict !== 'invalid') return first;
  process.stderr.write(
    `runValid: ${first.report.scenario} was invalid (${first.report.generator.reasons.join('; ')}); running it again\n`,
  );
  return run(...args);
}
