// gatehouse validate: load a config directory the way serve would, print
// every problem (file, document, object, field, reason) and the status
// translate() would give, and exit non-zero on any problem.
import { loadDirectory } from '../providers/file/loader.ts';
import { GenerationTracker } from '../providers/file/generations.ts';
import { buildSnapshot } from '../api/build-snapshot.ts';
import { translate } from '../translate/index.ts';
import { CONTROLLER_NAME } from '../control/standalone.ts';

export function validate(dir: string): number {
  const loaded = loadDirectory(dir);
  for (const e of loaded.errors) process.stdout.write(`${e.severity ?? 'error'}: ${e.message}\n`);
  const objects = new GenerationTracker().stamp(loaded.objects.map((o) => o.object));
  const result = translate(buildSnapshot(objects), {
    controllerName: CONTROLLER_NAME,
    addressing: { pool: null, hostAddress: '0.0.0.0', previous: {} },
  });
  // Warnings (an older field spelling read, an unknown field dropped) are printed, not counted: the object loaded.
  let problems = loaded.errors.filter((e) => e.severity !== 'warning').length;
  for (const [key, status] of result.statuses) {
    for (const c of conditionsIn(status)) {
      const bad = (c.type === 'Conflicted' || c.type === 'PartiallyInvalid') ? c.status === 'True' : c.status !== 'True';
      if (bad) { problems++; process.stdout.write(`${key.replaceAll('|', ' ').replace('  ', ' ')}: ${c.type}=${c.status} ${c.reason}: ${c.message}\n`); }
    }
  }
  process.stdout.write(`${loaded.objects.length} objects, ${problems} problem(s)\n`);
  return problems ? 1 : 0;
}

function* conditionsIn(v: unknown): Generator<{ type: string; status: string; reason: string; message: string }> {
  if (Array.isArray(v)) { for (const x of v) yield* conditionsIn(x); return; }
  if (!v || typeof v !== 'object') return;
  for (const [k, x] of Object.entries(v)) {
    if (k === 'conditions' && Array.isArray(x)) yield* x;
    else yield* conditionsIn(x);
  }
}
