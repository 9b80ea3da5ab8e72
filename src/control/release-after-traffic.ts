// Giving memory back once traffic stops. Under load a thread's young
// generation grows to its limit and the old generation gathers what
// requests promoted; V8 shrinks neither until allocation asks it to, which
// an idle gateway never does (5,000 routes, one worker, 20 s of load:
// 10-15 MiB of RSS kept for good). So a thread that served requests and
// then saw none for QUIET_MS runs the last-resort collection
// (release-memory.ts) once, and again only after traffic has come and gone
// again: a busy or an idle gateway never pays the pause, only the moment
// between them.

/** No new request for this long after some: the load has ended. */
export const QUIET_MS = 15_000;
/** How often the request count is looked at: memory comes back QUIET_MS to QUIET_MS + CHECK_MS after the last request. */
export const CHECK_MS = 5_000;

/** Decides, from a request counter looked at now and then, when traffic has come and gone. */
export class TrafficEnd {
  #count: number;
  #changedAt: number;
  #pending = false;
  readonly #quietMs: number;

  constructor(count: number, now: number, quietMs = QUIET_MS) {
    this.#quietMs = quietMs;
    this.#count = count;
    this.#changedAt = now;
  }

  /** True once per load: the first look at least quietMs after the count last moved. */
  look(count: number, now: number): boolean {
    if (count !== this.#count) {
      this.#count = count;
      this.#changedAt = now;
      this.#pending = true;
      return false;
    }
    if (!this.#pending || now - this.#changedAt < this.#quietMs) return false;
    this.#pending = false;
    return true;
  }
}

/** Calls `ended` after each load `requests()` counts; stop() ends the watch. The timer keeps no process alive. */
export function watchTrafficEnd(requests: () => number, ended: () => void, quietMs = QUIET_MS, checkMs = CHECK_MS): { stop(): void } {
  const end = new TrafficEnd(requests(), performance.now(), quietMs);
  const timer = setInterval(() => { if (end.look(requests(), performance.now())) ended(); }, checkMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
