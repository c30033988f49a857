import type { Report } from '../report.js';

function xml(text: string): string {
  return text
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}

/**
 * A JUnit XML document with one testcase per gate: a failed gate is a
 * `<failure>` with actual vs expected, an inconclusive one is `<skipped>` with
 * how many messages would decide it, and an invalid run adds a failing
 * `generator` testcase (its figures cannot be trusted).
 */
export function renderJunit(report: Report): string {
  const suite = `pushbench.${report.scenario}`;
  const cases: string[] = [];
  for (const g of report.gates) {
    const name = xml(g.expr);
    const head = `    <testcase classname="${xml(suite)}" name="${name}" time="0">`;
    if (g.verdict === 'pass') {
      cases.push(
        `${head}\n      <system-out>${xml(`actual ${g.actualText}`)}</system-out>\n    </testcase>`,
      );
    } else if (g.verdict === 'fail') {
      const message = `expected ${g.expr}, actual ${g.actualText}`;
      cases.push(
        `${head}\n      <failure message="${xml(message)}" type="gate">${xml(g.detail)}</failure>\n    </testcase>`,
      );
    } else {
      cases.push(
        `${head}\n      <skipped message="${xml(`inconclusive: ${g.detail}`)}"/>\n    </testcase>`,
      );
    }
  }
  if (!report.generator.valid) {
    const detail = report.generator.reasons.join('; ');
    cases.push(
      `    <testcase classname="${xml(suite)}" name="generator not saturated" time="0">\n` +
        `      <failure message="${xml(`result invalid: ${detail}`)}" type="invalid">${xml(detail)}</failure>\n    </testcase>`,
    );
  }
  const failures =
    report.gates.filter((g) => g.verdict === 'fail').length + (report.generator.valid ? 0 : 1);
  const skipped = report.gates.filter((g) => g.verdict === 'inconclusive').length;
  const tests = cases.length;
  const time = (report.wallTimeMs / 1000).toFixed(3);
  return (
    '<?xml version="1.0" encoding="UTF-8"?>\n' +
    `<testsuites name="pushbench" tests="${tests}" failures="${failures}" skipped="${skipped}" time="${time}">\n` +
    `  <testsuite name="${xml(suite)}" tests="${tests}" failures="${failures}" skipped="${skipped}" errors="0" time="${time}" timestamp="${xml(report.startedAt)}">\n` +
    `${cases.join('\n')}\n` +
    '  </testsuite>\n</testsuites>\n'
  );
}
