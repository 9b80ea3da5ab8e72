// The file provider as the control loop sees it: a directory read by the
// loader, watched by the watcher. Between two reads it gathers the files
// the watcher saw change, so that a read looks at those alone (and at
// every file when the watcher cannot tell).
import type { Provider, ProviderRead } from '../../control/loop.ts';
import { GenerationTracker } from './generations.ts';
import { resolveLoaderLimits, type LoaderLimits } from './limits.ts';
import { loadDirectory, type LoadResult } from './loader.ts';
import { watchDirectory } from './watcher.ts';

export class FileProvider implements Provider {
  readonly #dir: string;
  readonly #limits: LoaderLimits;
  readonly #generations = new GenerationTracker();
  #last: LoadResult | undefined;
  /** Files changed since the last read began; null: unknown, read every file. */
  #pending: Set<string> | null = null;

  constructor(dir: string, limits: Partial<LoaderLimits> = {}) {
    this.#dir = dir;
    this.#limits = resolveLoaderLimits(limits);
  }

  /** The next read looks at every file, changed or not. */
  rereadAll(): void {
    this.#pending = null;
  }

  read(): ProviderRead {
    const changed = this.#pending;
    this.#pending = new Set();
    const loaded = loadDirectory(this.#dir, this.#last, changed, this.#limits);
    this.#last = loaded;
    // Files carry no generation, creation time or uid: they are kept as the API server would (in place).
    this.#generations.stamp(loaded.objects.map((o) => o.object));
    return { objects: loaded.objects, problems: loaded.errors };
  }

  watch(onChange: () => void): { close(): void } {
    return watchDirectory(this.#dir, (changed) => {
      if (changed === null) this.#pending = null;
      else if (this.#pending !== null) for (const file of changed) this.#pending.add(file);
      onChange();
    }, {
      loaded: () => this.#last?.signature,
      limits: { maxFiles: this.#limits.maxFiles, settleMs: this.#limits.settleMs },
    });
  }
}
