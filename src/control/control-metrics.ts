// The control plane's counters (main thread): configurations translated
// and applied, how long that took, what failed, status written. Rendered
// with the data plane's by src/admin/metrics-text.ts.
import { Histogram } from '../dataplane/metrics.ts';

export class ControlMetrics {
  /** Configurations applied since start: the generation the data plane serves. */
  generation = 0;
  reloadsSucceeded = 0;
  reloadsFailed = 0;
  /** Unix time (s) of the last configuration applied; 0: none yet. */
  lastReloadSuccessSeconds = 0;
  /** A whole cycle: read, translate, apply, status. */
  readonly reloadDuration = new Histogram();
  /** translate() alone. */
  readonly translateDuration = new Histogram();
  translateFailures = 0;
  /** Kubernetes mode: status subresource writes. */
  statusWritesSucceeded = 0;
  statusWritesFailed = 0;

  /** A cycle that applied a configuration, `ms` long, of which `translateMs` translating (absent: a proxy, which does not translate). */
  reloaded(ms: number, translateMs?: number): void {
    this.generation++;
    this.reloadsSucceeded++;
    this.lastReloadSuccessSeconds = Date.now() / 1000;
    this.reloadDuration.observe(ms);
    if (translateMs !== undefined) this.translateDuration.observe(translateMs);
  }

  /**
   * Runs one control cycle, counting its failure: `cycle` calls
   * `translated()` once translate() returned, so that a throw before it
   * counts as a translate failure too.
   */
  async counted(cycle: (translated: () => void) => Promise<void>): Promise<void> {
    let translated = false;
    try {
      await cycle(() => { translated = true; });
    } catch (err) {
      this.reloadFailed(!translated);
      throw err;
    }
  }

  /** A cycle that failed (the previous configuration keeps serving); `inTranslate` when translate() threw. */
  reloadFailed(inTranslate: boolean): void {
    this.reloadsFailed++;
    if (inTranslate) this.translateFailures++;
  }
}
