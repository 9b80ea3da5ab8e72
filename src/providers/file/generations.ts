// metadata.generation, creationTimestamp and uid for objects read from
// files, kept the way the Kubernetes API server keeps them: generation 1 at
// creation, +1 on every change of the spec (everything but metadata and
// status), creationTimestamp and uid fixed at creation. An object that
// disappears is forgotten, so re-creating it starts again at generation 1
// with a new uid.
import { createHash, randomUUID } from 'node:crypto';
import type { KubeObject } from '../../api/types.ts';
import { canonicalJSON } from '../../api/schema.ts';
import { flatString } from '../../api/strings.ts';

interface Tracked {
  key: string;
  generation: number;
  /** specDigest() of the spec the generation was given for. */
  spec: string;
  creationTimestamp: string;
  uid: string;
  /** The last stamp() call that saw it. */
  pass: number;
}

/** RFC 3339 at second precision, as Kubernetes writes timestamps: `2025-01-02T03:04:05Z`. */
export function rfc3339(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/**
 * Objects are immutable once loaded (the loader hands out the same instance
 * while its file is unchanged), so the digest of one is computed once.
 */
const specCache = new WeakMap<KubeObject, string>();

/**
 * What a spec change is judged on: every top-level field but apiVersion,
 * kind, metadata and status, as a digest of their canonical JSON. Two specs
 * are the same exactly when their canonical JSON is (short of a SHA-256
 * collision), and the 44-character digest is what is kept per object
 * between loads instead of the whole canonical text.
 */
function specOf(o: KubeObject): string {
  let cached = specCache.get(o);
  if (cached === undefined) specCache.set(o, cached = specDigest(o));
  return cached;
}

/** SHA-256, base64, of the canonical JSON of the object's spec fields. */
export function specDigest(o: KubeObject): string {
  const rest: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) {
    if (k !== 'apiVersion' && k !== 'kind' && k !== 'metadata' && k !== 'status') rest[k] = v;
  }
  return createHash('sha256').update(canonicalJSON(rest)).digest('base64');
}

function keyOf(o: KubeObject): string {
  return `${o.kind}|${o.metadata.namespace ?? ''}|${o.metadata.name}`;
}

export class GenerationTracker {
  #tracked = new Map<string, Tracked>();
  /** What each object was stamped with: an object seen again is stamped already. */
  #stampedWith = new WeakMap<KubeObject, Tracked>();
  #pass = 0;
  #now: () => Date;

  /** `now` is for tests. */
  constructor(now: () => Date = () => new Date()) {
    this.#now = now;
  }

  /**
   * Stamps, in place, `metadata.generation`, `.creationTimestamp` and
   * `.uid` on every object of the current set, and forgets the objects
   * not in it. Returns the same array. A creationTimestamp set in the file
   * is kept; generation and uid from the file are replaced. An object
   * stamped before, whose key still has the same record, is left as it is:
   * a reload with one file changed costs a look-up per unchanged object.
   */
  stamp(objects: KubeObject[]): KubeObject[] {
    const pass = ++this.#pass;
    let seen = 0;
    // One timestamp for every object first seen in this call, read when the
    // first one needs it: objects that appear together share one string.
    let created: string | undefined;
    for (const o of objects) {
      const before = this.#stampedWith.get(o);
      if (before !== undefined && before.pass !== pass && this.#tracked.get(before.key) === before) {
        before.pass = pass;
        seen++;
        continue;
      }
      const key = keyOf(o);
      let t = this.#tracked.get(key);
      const spec = specOf(o);
      if (t !== undefined && t.pass === pass) {
        // A second object of the same key in one set: it is given the first one's record.
      } else if (!t) {
        t = { key, generation: 1, spec, creationTimestamp: '', uid: flatString(randomUUID()), pass: 0 };
        this.#tracked.set(key, t);
      } else if (t.spec !== spec) {
        t = { ...t, generation: t.generation + 1, spec };
        this.#tracked.set(key, t);
      }
      const fromFile = o.metadata.creationTimestamp;
      if (typeof fromFile === 'string' && fromFile) t.creationTimestamp = fromFile;
      else if (!t.creationTimestamp) t.creationTimestamp = created ??= flatString(rfc3339(this.#now()));
      if (t.pass !== pass) seen++;
      t.pass = pass;
      o.metadata.generation = t.generation;
      o.metadata.creationTimestamp = t.creationTimestamp;
      o.metadata.uid = t.uid;
      this.#stampedWith.set(o, t);
    }
    if (seen !== this.#tracked.size) {
      for (const [key, t] of this.#tracked) if (t.pass !== pass) this.#tracked.delete(key);
    }
    return objects;
  }

  /** The generation currently recorded for an object, if it is known. */
  generationOf(kind: string, namespace: string | undefined, name: string): number | undefined {
    return this.#tracked.get(`${kind}|${namespace ?? ''}|${name}`)?.generation;
  }
}
