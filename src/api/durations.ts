// Gateway API durations (GEP-2257): one or more <number><unit> parts with
// units h, m, s, ms, e.g. "1h", "10s", "1m30s", "500ms". Zero disables.
const PART = /(\d+)(h|ms|m|s)/g;
const WHOLE = /^(\d+(h|ms|m|s))+$/;
const UNIT_MS: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1000, ms: 1 };

/** Milliseconds, or null when the string is not a valid duration. */
export function parseDuration(s: string): number | null {
  if (!WHOLE.test(s)) return null;
  let ms = 0;
  for (const m of s.matchAll(PART)) ms += Number(m[1]) * UNIT_MS[m[2]];
  return ms;
}
