// Problems that translate() finds in objects that parsed and validated
// well, reported beside the file provider's errors: a listener whose
// certificate Secret went bad (it keeps serving its last good certificate,
// or none) is as much a configuration error as a file that does not parse,
// and an operator looking at /api/v1/errors or the log should find both.
// The status of the Gateway says the same; this only points at it.
import { configError } from '../providers/file/loader.ts';
import type { Problem, ReadObject } from './loop.ts';
import type { PlainCondition } from '../translate/conditions.ts';

interface GatewayStatusLike { listeners?: { name: string; conditions: PlainCondition[] }[] }

/** Kinds whose spec.listeners have a status each. */
const LISTENER_OWNERS = new Set(['Gateway', 'ListenerSet', 'XListenerSet']);

/**
 * One error per Gateway or ListenerSet listener whose references do not resolve
 * (ResolvedRefs False: a bad, missing or forbidden certificate Secret),
 * naming the file and document the Gateway came from.
 */
export function listenerReferenceProblems(objects: readonly ReadObject[], statuses: ReadonlyMap<string, unknown>): Problem[] {
  const problems: Problem[] = [];
  for (const { object, source } of objects) {
    if (!LISTENER_OWNERS.has(object.kind)) continue;
    const ns = object.metadata.namespace ?? 'default';
    const status = statuses.get(`${object.kind}|${ns}|${object.metadata.name}`) as GatewayStatusLike | undefined;
    for (const listener of status?.listeners ?? []) {
      const refs = listener.conditions.find((c) => c.type === 'ResolvedRefs');
      if (refs === undefined || refs.status !== 'False') continue;
      const where = `${object.kind} ${ns}/${object.metadata.name}`;
      const field = `spec.listeners[${listener.name}]`;
      const reason = `${refs.reason}: ${refs.message}`;
      problems.push(source === undefined
        ? { object: where, field, reason, message: `${where}: ${field}: ${reason}` }
        : configError({ file: source.file, document: source.document, item: source.item, object: where, field, reason }));
    }
  }
  return problems;
}
