/** `faultline fleet`: the fleet as one replica's admin API sees it (pooled arms, replicas, evaluator). */
import { textTable } from './table.js';
import type { ExperimentView } from '../experiments/report.js';
import type { FleetExperimentView } from '../fleet/fleet.js';

type Row = ExperimentView & { fleet?: FleetExperimentView };

const rate = (n: number, d: number) => (d > 0 ? `${((100 * n) / d).toFixed(1)}%` : '-');
const arm = (a: FleetExperimentView['pooled']['canary']) =>
  `${a.requests} (err ${rate(a.error + a.timeout + a.reset, a.requests)})`;

/** The text view; null when the instance is not in a fleet. */
export function fleetText(rows: Row[]): string | null {
  const first = rows.find((r) => r.fleet !== undefined)?.fleet;
  if (first === undefined) return null;
  const out: string[] = [
    `fleet ${first.name}: answered by replica ${first.replica} (${first.connected ? 'connected' : 'Redis UNREACHABLE'}); ` +
      `evaluator lease: ${first.evaluator ?? 'nobody'}; live replicas: ${first.live_replicas}; ` +
      `started ${first.fleet_started_at ?? '-'}`,
  ];
  for (const r of rows) {
    const f = r.fleet;
    if (f === undefined) continue;
    const limit = f.max_active_faults;
    out.push(
      '',
      `${r.id}  ${r.state}  pooled canary ${arm(f.pooled.canary)}  control ${arm(f.pooled.control)}  ` +
        `from ${f.contributing_replicas} replicas  grant ${f.grant.fresh ? `fresh (${f.grant.expires_in_ms} ms)` : 'none'}` +
        (limit === null ? '' : `  max_active_faults ${limit.fleet} (this replica ${limit.this_replica})`),
    );
    const head = ['  REPLICA', 'LAST_SEEN', 'CANARY', 'CONTROL'];
    const body = f.replicas
      .slice()
      .sort((a, b) => a.replica.localeCompare(b.replica))
      .map((x) => [`  ${x.replica}`, x.last_seen, arm(x.canary), arm(x.control)]);
    out.push(textTable(head, body).trimEnd());
  }
  return out.join('\n') + '\n';
}
