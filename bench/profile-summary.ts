// Prints the functions with the most self time in a V8 .cpuprofile (from
// `node --cpu-prof`), and the same grouped by file, to see where a request's
// CPU goes.  Usage: node bench/profile-summary.ts FILE.cpuprofile [TOP]
import fs from 'node:fs';

interface Node { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }
interface Profile { nodes: Node[]; samples: number[]; timeDeltas: number[] }

const file = process.argv[2];
const top = Number(process.argv[3] ?? 30);
if (!file) { process.stderr.write('usage: profile-summary FILE.cpuprofile [TOP]\n'); process.exit(2); }
const profile = JSON.parse(fs.readFileSync(file, 'utf8')) as Profile;
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const self = new Map<string, number>();
const byFile = new Map<string, number>();
let total = 0;
for (let i = 0; i < profile.samples.length; i++) {
  const n = byId.get(profile.samples[i]);
  const dt = profile.timeDeltas[i] ?? 0;
  if (n === undefined) continue;
  total += dt;
  const f = n.callFrame;
  const where = f.url.replace(/^.*\/(node_modules|src)\//, '$1/').replace(/^node:/, '') || '(native)';
  const key = `${f.functionName || '(anonymous)'}  ${where}:${f.lineNumber + 1}`;
  self.set(key, (self.get(key) ?? 0) + dt);
  byFile.set(where, (byFile.get(where) ?? 0) + dt);
}
const show = (m: Map<string, number>, n: number) => [...m].sort((a, b) => b[1] - a[1]).slice(0, n)
  .map(([k, v]) => `${((100 * v) / total).toFixed(1).padStart(5)}%  ${k}`).join('\n');
process.stdout.write(`self time by function (top ${top}):\n${show(self, top)}\n\nself time by file:\n${show(byFile, 25)}\n`);
