// explain's answer for people: one section per step, the chosen candidate
// marked `>`, each other one with the reason it was passed over.
import type { Candidate, ExplainResult } from './explain.ts';

export function formatExplain(r: ExplainResult): string {
  const lines: string[] = [];
  lines.push(`${r.request.method} ${r.request.url}`);
  for (const [name, value] of r.request.headers) lines.push(`  ${name}: ${value}`);
  lines.push(`  host ${r.request.host}, path ${r.request.path || '(refused)'}${r.request.sni !== null ? `, SNI ${r.request.sni}` : ''}`);
  lines.push(`result: ${r.routed ? 'ROUTED' : 'NOT ROUTED'} (${r.outcome})`);
  section(lines, 'socket', r.sockets);
  section(lines, 'listener', r.listeners);
  section(lines, 'route hostname', r.virtualHosts);
  section(lines, 'rule', r.routes);
  if (r.route !== null) {
    lines.push(`backend of ${r.route.name}:`);
    if (r.route.filters.length !== 0) lines.push(`  filters: ${r.route.filters.join(', ')}`);
    if (r.route.backends.length === 0) lines.push('  none: the gateway answers 500');
    for (const b of r.route.backends) {
      lines.push(`  weight ${b.weight}: ${b.cluster === null ? 'invalid reference (500 for its share)' : `${b.cluster} -> ${b.endpoints.length === 0 ? 'no endpoints (503)' : b.endpoints.join(', ')}`}`);
    }
  }
  if (r.unattached.length !== 0) {
    lines.push('routes not attached (or with unresolved references):');
    for (const u of r.unattached) {
      for (const c of u.conditions) lines.push(`  ${u.route}: ${c.type}=${c.status} ${c.reason}: ${c.message}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

function section(lines: string[], title: string, candidates: readonly Candidate[]): void {
  if (candidates.length === 0) return;
  lines.push(`${title}:`);
  for (const c of candidates) lines.push(`  ${c.verdict === 'chosen' ? '>' : '-'} ${c.name}: ${c.reason}`);
}
