// Conditions as translate() decides them. They carry no timestamps: the
// status store keeps lastTransitionTime across translations, so translate
// stays a pure function of the snapshot.
import type { Condition } from '../api/types.ts';

export type PlainCondition = Omit<Condition, 'lastTransitionTime'>;

export function condition(
  type: string, status: boolean | 'Unknown', reason: string, message: string, observedGeneration: number | undefined,
): PlainCondition {
  const s = status === 'Unknown' ? 'Unknown' : status ? 'True' : 'False';
  return { type, status: s, reason, message, observedGeneration };
}
