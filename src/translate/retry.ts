// HTTPRoute rule `retry` (GEP-1731) -> the IR's RetryPolicy. The schema has
// already checked types and ranges (codes 400-599, attempts >= 1, backoff
// as a duration); what is left is what the schema cannot say.
import type { HTTPRouteRetry } from '../api/types.ts';
import { parseDuration } from '../api/durations.ts';
import type { RetryPolicy } from '../ir/types.ts';

/**
 * Retries when `attempts` is not given: Envoy Gateway's default
 * (BackendTrafficPolicy numRetries), as the spec leaves it to the
 * implementation.
 */
export const DEFAULT_RETRY_ATTEMPTS = 2;

/** Why the rule's retry cannot be programmed, or null. */
export function retryProblem(retry: HTTPRouteRetry): string | null {
  if (retry.backoff !== undefined && parseDuration(retry.backoff) === null) {
    return `retry.backoff ${JSON.stringify(retry.backoff)} is not a valid duration`;
  }
  if (retry.attempts !== undefined && !(Number.isInteger(retry.attempts) && retry.attempts >= 0)) {
    return `retry.attempts ${String(retry.attempts)} is not a whole number of retries`;
  }
  for (const code of retry.codes ?? []) {
    if (!(Number.isInteger(code) && code >= 400 && code <= 599)) return `retry.codes: ${String(code)} is not a status code from 400 to 599`;
  }
  return null;
}

/** The IR policy, or undefined when the rule asks for no retries (none given, or `attempts: 0`). */
export function toRetryPolicy(retry: HTTPRouteRetry | undefined): RetryPolicy | undefined {
  if (retry === undefined) return undefined;
  const attempts = retry.attempts ?? DEFAULT_RETRY_ATTEMPTS;
  // GEP-1731: an explicit zero disables retries.
  if (attempts === 0) return undefined;
  const codes = [...new Set(retry.codes ?? [])].sort((a, b) => a - b);
  const out: RetryPolicy = { codes, attempts };
  if (retry.backoff !== undefined) out.backoffMs = parseDuration(retry.backoff)!;
  return out;
}
