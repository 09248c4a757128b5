/**
 * JUnit XML of an experiment report (`experiment run --junit FILE`), the format CI systems render
 * (GitHub, GitLab, Jenkins): one test suite per experiment, one test case per guardrail. A breached
 * guardrail is a <failure> carrying its evidence; one without enough data is <skipped>; a run refuted
 * by a global guard, or aborted, adds a "verdict" case that fails, so the suite never reads green
 * when the gate did not pass.
 */
import type { ExperimentReport } from '../experiments/report.js';

export function junitXml(r: ExperimentReport, durationS: number): string {
  const cls = `faultline.${r.id}`;
  const cases: string[] = [];
  let failures = 0;
  let skipped = 0;
  for (const g of r.guardrails) {
    const name = `guardrail ${g.metric}${g.quantile !== undefined ? ` p${Number((g.quantile * 100).toPrecision(6))}` : ''}`;
    let body = '';
    if (g.status === 'breached') {
      failures++;
      const evidence = `${g.detail}\ncanary ${JSON.stringify(g.canary)}\ncontrol ${JSON.stringify(g.control)}\ne-value ${g.eValue} >= threshold ${g.threshold}`;
      body = `<failure message="${attr(`${name} breached: ${g.detail}`)}" type="guardrail_breached">${text(evidence)}</failure>`;
    } else if (g.status === 'insufficient_data') {
      skipped++;
      body = `<skipped message="${attr(`not enough data: ${g.detail}`)}"/>`;
    }
    cases.push(testcase(cls, name, durationS, body, g.detail));
  }
  // A sick control arm: the guardrails compared against nothing healthy, so the suite must not pass.
  if (r.verdict_cause === 'control_unhealthy') {
    failures++;
    cases.push(
      testcase(
        cls,
        'control health',
        durationS,
        `<failure message="${attr(r.control_health.detail)}" type="control_unhealthy">${text(JSON.stringify(r.control_health))}</failure>`,
        r.control_health.detail,
      ),
    );
  }
  const guardrailFailed = failures > 0;
  if (!guardrailFailed && (r.verdict === 'refuted' || r.verdict === 'aborted')) {
    failures++;
    cases.push(
      testcase(
        cls,
        'verdict',
        durationS,
        `<failure message="${attr(`${r.verdict}: ${r.verdict_reason}`)}" type="${r.verdict}">${text(JSON.stringify(r.evidence ?? null))}</failure>`,
        r.verdict_reason,
      ),
    );
  }
  const suite = `  <testsuite name="${attr(cls)}" tests="${cases.length}" failures="${failures}" errors="0" skipped="${skipped}" time="${durationS.toFixed(3)}" timestamp="${attr((r.started_at ?? new Date().toISOString()).slice(0, 19))}">
    <properties>
      <property name="hypothesis" value="${attr(r.hypothesis)}"/>
      <property name="verdict" value="${attr(r.verdict)}"/>
      <property name="verdict_reason" value="${attr(r.verdict_reason)}"/>
      <property name="verdict_cause" value="${attr(r.verdict_cause ?? '')}"/>
    </properties>
${cases.join('\n')}
  </testsuite>`;
  return `<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="faultline" tests="${cases.length}" failures="${failures}" errors="0" skipped="${skipped}" time="${durationS.toFixed(3)}">
${suite}
</testsuites>
`;
}

function testcase(cls: string, name: string, time: number, body: string, out: string): string {
  return `    <testcase classname="${attr(cls)}" name="${attr(name)}" time="${time.toFixed(3)}">${body}<system-out>${text(out)}</system-out></testcase>`;
}

/** XML 1.0 forbids most control characters even escaped; they are dropped. */
const INVALID = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/g;

function text(s: string): string {
  return s.replace(INVALID, '').replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function attr(s: string): string {
  return text(s).replace(/"/g, '&quot;').replace(/\n/g, '&#10;');
}
