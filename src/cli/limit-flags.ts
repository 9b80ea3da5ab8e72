// Data-plane flags shared by `gatehouse serve` and `gatehouse proxy`: the
// request limits (src/dataplane/limits.ts: LIMIT_FLAGS) and whether worker
// threads can share listeners on this platform.
import { parseDuration } from '../api/durations.ts';
import { DEFAULT_LIMITS, LIMIT_FLAGS, resolveLimits, type RequestLimits } from '../dataplane/limits.ts';

/**
 * Worker threads each bind the listeners with SO_REUSEPORT and the kernel
 * spreads connections over them: Linux and FreeBSD do that (libuv refuses
 * the option elsewhere, macOS included). Elsewhere the main thread serves.
 */
export const REUSE_PORT = process.platform === 'linux' || process.platform === 'freebsd';

/** parseArgs options for every limit flag. */
export function limitFlagOptions(): Record<string, { type: 'string' }> {
  return Object.fromEntries(LIMIT_FLAGS.map(({ flag }) => [flag, { type: 'string' as const }]));
}

/** One usage line per limit flag, with its default. */
export function limitUsage(): string {
  return LIMIT_FLAGS.map(({ flag, field, kind, help }) => {
    const value = DEFAULT_LIMITS[field];
    const shown = kind === 'duration' ? formatDuration(value) : String(value);
    return `  --${flag.padEnd(28)}${help}; default ${shown}`;
  }).join('\n');
}

export function formatDuration(ms: number): string {
  if (ms === 0) return '0';
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

/** The limit flags given, as overrides; a string naming the bad flag when one does not parse. */
export function parseLimitFlags(values: Record<string, unknown>): Partial<RequestLimits> | string {
  const limits: Partial<RequestLimits> = {};
  for (const { flag, field, kind } of LIMIT_FLAGS) {
    const raw = values[flag];
    if (typeof raw !== 'string') continue;
    const value = kind === 'duration' ? (raw === '0' ? 0 : parseDuration(raw)) : (/^\d+$/.test(raw) ? Number(raw) : null);
    if (value === null) return `--${flag} wants ${kind === 'duration' ? 'a duration such as 10s, 1m30s or 500ms' : 'a whole number'}, not ${raw}`;
    limits[field] = value;
  }
  try {
    resolveLimits(limits);
  } catch (e) {
    return (e as Error).message;
  }
  return limits;
}

/** `--workers`: a count, or a string saying why not; default one per usable core (cpu-quota.ts) where workers can share listeners. */
export function parseWorkersFlag(raw: string | undefined, cores: number): number | string {
  const workers = raw === undefined ? (REUSE_PORT ? cores : 0) : Number(raw);
  if (!Number.isInteger(workers) || workers < 0 || workers > 1024) return `--workers wants a whole number, not ${raw}`;
  if (workers > 0 && !REUSE_PORT) return `--workers ${workers}: worker threads share listeners with SO_REUSEPORT, which ${process.platform} does not balance; use --workers 0`;
  return workers;
}
