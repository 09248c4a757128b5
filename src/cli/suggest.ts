/** `faultline suggest`: the ranked catalogue as a table, each suggestion's reasons and its YAML block. */
import { textTable } from './table.js';
import type { SuggestionsDocument } from '../suggest/suggest.js';

export const SUGGEST_USAGE = `usage: faultline suggest [--json] [--top N] [--admin URL]
  experiments worth running, ranked from what this Faultline has seen on its listeners (volume, errors,
  latency, route timeouts) and the run journal; each with its score, the reasons, and a YAML block to
  paste under \`experiments:\` (1% of requests, with guardrails). Scoring: docs/suggest.md
  --json         the whole document (routes observed, every suggestion)
  --top N        how many suggestions to print with their YAML (default 5)
`;

export function suggestText(doc: SuggestionsDocument, top: number): string {
  if (doc.suggestions.length === 0)
    return `no suggestions: no traffic seen on any route since ${doc.observed_since}\n`;
  const shown = doc.suggestions.slice(0, top);
  const rows = shown.map((s) => [
    String(s.rank),
    String(s.score),
    s.id,
    `${s.target.listener}/${s.target.route}`,
    s.fault['kind'] === 'latency'
      ? `latency ${String(s.fault['ms'])} ms`
      : `abort ${String(s.fault['status'])}`,
  ]);
  const head = ['RANK', 'SCORE', 'ID', 'TARGET', 'FAULT'];
  let out = `observed ${doc.observed_seconds} s of traffic on ${doc.routes.length} route(s) since ${doc.observed_since}\n\n`;
  out += textTable(head, rows);
  for (const s of shown) {
    out += `\n#${s.rank} ${s.id} (score ${s.score}): ${s.hypothesis}\n`;
    for (const r of s.reasons) out += `  ${r.points >= 0 ? '+' : ''}${r.points}  ${r.text}\n`;
    out += s.yaml
      .trimEnd()
      .split('\n')
      .map((l) => `    ${l}`)
      .join('\n');
    out += '\n';
  }
  if (doc.suggestions.length > shown.length)
    out += `\n${doc.suggestions.length - shown.length} more: faultline suggest --top ${doc.suggestions.length}\n`;
  return out;
}
