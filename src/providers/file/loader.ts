// The file provider's loader: every *.yaml, *.yml and *.json file directly
// in a directory -> validated objects, and errors that name file, document,
// object and field. A bad config never replaces a good one: a file that
// does not parse, or is refused (not a regular file in the directory, over
// a limit of limits.ts), keeps the objects it had; an object that does not
// validate keeps its previous valid version. Nothing a file holds can make
// the load throw, hang or run out of memory: each file is read within its
// limits and handled on its own.
import fs from 'node:fs';
import path from 'node:path';
import type { KubeObject } from '../../api/types.ts';
import { describeObject, identityOf, validateObject } from '../../api/validate.ts';
import { newSharedValues, shareValues, type SharedValues } from '../../api/sharing.ts';
import { describeBytes, resolveLoaderLimits, type LoaderLimits } from './limits.ts';
import { fileStamp, isConfigFile, readConfigFiles, stampChangedMs, stampInode, lineStart, stampLine, stampSize, sortedIndex, updatedListing, type ConfigListing } from './listing.ts';
import { readConfigText } from './read-file.ts';
import { parseConfigText } from './parse.ts';

export interface ObjectSource {
  /** File name, relative to the directory. */
  file: string;
  /** 1-based document number within the file. */
  document: number;
  /** 1-based item number, for an object inside a `kind: List`. */
  item?: number;
}

export interface LoadedObject {
  object: KubeObject;
  source: ObjectSource;
}

export interface ConfigError {
  file: string;
  document?: number;
  item?: number;
  /** `Kind namespace/name` (`Kind name` when cluster-scoped). */
  object?: string;
  field?: string;
  reason: string;
  /** All of the above in one line: `routes.yaml document 2 (HTTPRoute team-a/keystone): spec.rules[0]...: must start with "/"`. */
  message: string;
  /** 'warning': the object was loaded, and this is what it should know (validate.ts's warnings). Absent: an error. */
  severity?: 'warning';
}

export interface LoadResult {
  objects: LoadedObject[];
  errors: ConfigError[];
  /** What each file gave last time, reused while the file is unchanged. */
  files?: Map<string, FileOutcome>;
  /**
   * The directory as taken into account: a stampLine per config file, as
   * watcher.ts's directorySignature gives it, except for a file rewritten
   * in place that has not settled yet, whose line is that of the content
   * still in use (so that the directory differs from it until it is read).
   */
  signature?: string;
  /** The config files listed, sorted, when they were all of them (no more than maxFiles): the next load's listing starts from it. */
  names?: readonly string[];
  /** The bytes of all the files read, charged to maxDirectoryBytes. */
  bytes?: number;
  /** Where each object (by objectKey) was taken from. */
  owners?: ReadonlyMap<string, ObjectSource>;
}

/** What loadDirectory may be given beyond the directory: limits.ts's limits, and a clock for tests. */
export interface LoadOptions extends Partial<LoaderLimits> {
  /** Milliseconds since the epoch, as Date.now (the clock file times are in). */
  now?: () => number;
}

/**
 * A file's parse and validation outcome, keyed by what identifies its
 * content on disk. Reusing it makes a reload cost one stat per unchanged
 * file instead of a YAML parse and a schema walk, and keeps unchanged
 * objects the same instances, which later stages cache on.
 */
interface FileOutcome {
  /** The stamp of the content this outcome was made from. */
  stamp: string;
  /** Why the file could not be parsed or was refused, or null. */
  parseError: Omit<ConfigError, 'message' | 'file'> | null;
  /** Per object: the validation result, and for an invalid one who it claims to be. The raw parse is not kept. */
  validated: {
    document: number; item?: number; result: ReturnType<typeof validateObject>; identity: ReturnType<typeof identityOf>;
    /** The valid object with where it came from, made once: the outcome belongs to one file. */
    loaded?: LoadedObject;
  }[];
  /**
   * A newer content of the same file, rewritten in place, that is not used
   * until it has stopped changing: its stamp, and when it was first seen.
   */
  pending?: { stamp: string; since: number };
  /** stampLine(file, stamp), made once. */
  line?: string;
}

/** How many changed files a load makes from the last one rather than walking the directory (reloadChanged). */
const MAX_FILES_CHANGED_ALONE = 16;

/** `Kind|namespace|name`: what makes two objects the same object. */
export function objectKey(kind: string, namespace: string | undefined, name: string): string {
  return `${kind}|${namespace ?? ''}|${name}`;
}

/** Loaded objects are not changed, and a reload asks every one for its key. */
const loadedKeys = new WeakMap<KubeObject, string>();

function keyOfLoaded(o: KubeObject): string {
  let key = loadedKeys.get(o);
  if (key === undefined) {
    key = objectKey(o.kind, o.metadata.namespace, o.metadata.name);
    loadedKeys.set(o, key);
  }
  return key;
}

export function configError(e: Omit<ConfigError, 'message'>): ConfigError {
  let where = e.file;
  if (e.document !== undefined) where += ` document ${e.document}`;
  if (e.item !== undefined) where += ` item ${e.item}`;
  if (e.object) where += ` (${e.object})`;
  const message = e.field ? `${where}: ${e.field}: ${e.reason}` : `${where}: ${e.reason}`;
  return { ...e, message };
}

/**
 * Reads every config file directly in `dir` (sorted by name), validates
 * each object, and returns the objects to use and the errors to report.
 * With `previous` (the last result), a file that fails to parse or is
 * refused keeps the objects it contributed then, and an invalid object
 * keeps its previous valid version (same kind, namespace and name). An
 * object defined twice is taken from the first file (by name) and
 * document; the second is reported. With `changed` (the files a watcher
 * saw change since `previous`), the other files are taken as they were
 * without a stat, and the directory is not listed again: the last listing
 * gains or loses the changed names that appeared or went. A file rewritten in place since `previous` (same inode,
 * new size or times) keeps its previous objects until it has not changed
 * for `settleMs`; a file renamed into place is new content and used at once.
 * Never throws for anything a file holds.
 */
export function loadDirectory(dir: string, previous?: LoadResult, changed?: ReadonlySet<string> | null, options: LoadOptions = {}): LoadResult {
  const limits = resolveLoaderLimits(options);
  const now = options.now ?? Date.now;
  const objects: LoadedObject[] = [];
  const errors: ConfigError[] = [];
  const report = (e: Omit<ConfigError, 'message'>) => errors.push(configError(e));
  // Made when an invalid object first asks for its previous valid version.
  let previousByKey: Map<string, LoadedObject> | undefined;
  const previousOf = (key: string): LoadedObject | undefined => {
    if (previousByKey === undefined) {
      previousByKey = new Map();
      for (const o of previous?.objects ?? []) previousByKey.set(keyOfLoaded(o.object), o);
    }
    return previousByKey.get(key);
  };
  const taken = new Map<string, ObjectSource>();

  const add = (loaded: LoadedObject, file: string) => {
    const key = keyOfLoaded(loaded.object);
    const first = taken.get(key);
    if (first) {
      const o = loaded.object;
      report({
        file, document: loaded.source.document, item: loaded.source.item,
        object: describeObject(o.kind, o.metadata.namespace, o.metadata.name),
        reason: `duplicate: already defined in ${first.file} document ${first.document}${first.item !== undefined ? ` item ${first.item}` : ''}; this one is ignored`,
      });
      return;
    }
    taken.set(key, loaded.source);
    objects.push(loaded);
  };

  /** Reports why `file` is not read, and keeps what it gave last time. */
  const refuse = (file: string, e: Omit<ConfigError, 'message' | 'file'>) => {
    const kept = (previous?.objects ?? []).filter((o) => o.source.file === file);
    report({ file, ...e, reason: e.reason + (kept.length ? `; keeping the ${kept.length} object(s) loaded from it before` : '') });
    for (const o of kept) add(o, file);
  };

  let realDir: string;
  // With the files a watcher saw change, the listing is the last one with those added or removed.
  const updated = changed && previous?.names ? updatedListing(dir, previous.names, changed, limits.maxFiles) : null;
  const listing: ConfigListing = updated !== null ? { names: updated, refused: [], beyond: 0 } : readConfigFiles(dir, limits.maxFiles, previous?.files);
  try {
    if (listing.error) throw new Error(listing.error);
    realDir = fs.realpathSync(dir);
  } catch (e) {
    report({ file: dir, reason: `cannot read the directory: ${(e as Error).message}` });
    // Nothing can be read: keep everything from before.
    return { objects: previous ? [...previous.objects] : [], errors };
  }

  // The strings and equal parts of the objects parsed in this load, shared between them.
  const shared = newSharedValues();
  if (updated !== null && changed) {
    let quick: LoadResult | null = null;
    try {
      quick = reloadChanged(changed, updated);
    } catch {
      // Nothing a file holds should get here; if it does, the walk below reports it against that file.
    }
    if (quick !== null) return quick;
  }
  const files = new Map<string, FileOutcome>();
  const signature: string[] = [];
  // A file reported last time (refused over the directory's budget, say) is
  // looked at again even when unchanged: what it is judged on can change
  // with the other files, and the outcome kept for it is not its content.
  const reportedBefore = new Set(previous?.errors.map((e) => e.file));
  // Bytes left in this load's budget: every file is charged its size, in name order.
  let budget = limits.maxDirectoryBytes;

  for (const file of listing.names) {
    let look: string | null = null;
    try {
      const known = changed && !changed.has(file) && !reportedBefore.has(file) ? previous?.files?.get(file) : undefined;
      look = known !== undefined ? (known.pending?.stamp ?? known.stamp) : fileStamp(path.join(dir, file));
      // Charged to the budget: what will be read. A file over the per-file
      // limit is refused on its own and costs nothing.
      const size = look === null ? 0 : stampSize(look);
      if (size <= limits.maxFileBytes) {
        if (size > budget) {
          keepKnown(file);
          signature.push(stampLine(file, look!));
          refuse(file, { reason: `not read: ${size} more bytes would pass the limit of ${describeBytes(limits.maxDirectoryBytes)} read per directory (files count in name order)` });
          continue;
        }
        budget -= size;
      }
      const outcome = known ?? outcomeOf(file, look);
      if (!outcome) continue; // gone, or caught mid-write on its first appearance
      if (known === undefined && look === null) {
        // Refused without a stamp (a dangling symlink): judged again next time.
        useOutcome(file, outcome);
        continue;
      }
      files.set(file, outcome);
      // A file still settling is listed with the content in use, so that
      // the watcher sees the directory differ from it and looks again.
      signature.push(outcome.pending || look === outcome.stamp ? (outcome.line ??= stampLine(file, outcome.stamp)) : stampLine(file, look!));
      useOutcome(file, outcome);
    } catch (e) {
      // Nothing a file holds should get here; if it does, that file alone fails.
      if (look !== null) signature.push(stampLine(file, look));
      keepKnown(file);
      refuse(file, { reason: `could not be loaded (${describeThrown(e)})` });
    }
  }

  if (listing.beyond > 0) {
    const total = listing.names.length + listing.beyond;
    for (const file of listing.refused) {
      // Still known next time, so that it is still reported and keeps what it had.
      keepKnown(file);
      refuse(file, { reason: `not read: the directory has ${total} config files, over the limit of ${limits.maxFiles}; the first ${limits.maxFiles} by name are read` });
    }
  }
  return {
    objects, errors, files, signature: signature.join('\n'), names: listing.beyond === 0 ? listing.names : undefined,
    bytes: limits.maxDirectoryBytes - budget, owners: taken,
  };

  /**
   * The load, made from `previous` and the changed files alone, when it
   * comes to what the walk above would give without a word to say: the
   * last load had no error or warning, and each changed file is gone or
   * reads, parses and validates cleanly, within the limits, without
   * settling, and defines nothing another file defines. With 5,000 files
   * the walk cost ~15 ms per reload for one changed file; this costs a
   * copy of the lists. Null: the walk decides.
   */
  function reloadChanged(changedFiles: ReadonlySet<string>, names: readonly string[]): LoadResult | null {
    if (previous === undefined || previous.errors.length !== 0 || previous.files === undefined
      || previous.signature === undefined || previous.bytes === undefined || previous.owners === undefined) return null;
    // Each file costs a copy of the lists: past a few, the walk is cheaper (1,000 files written at once, a ConfigMap swapped).
    if (changedFiles.size > MAX_FILES_CHANGED_ALONE) return null;
    const nextFiles = new Map(previous.files);
    const owners = new Map(previous.owners);
    let nextObjects = previous.objects;
    let signatureText = previous.signature;
    let bytes = previous.bytes;
    for (const file of changedFiles) {
      if (!isConfigFile(file)) continue;
      const last = previous.files.get(file);
      let outcome: FileOutcome | undefined;
      if (names[sortedIndex(names, file)] === file) {
        const look = fileStamp(path.join(dir, file));
        if (look === null || stampSize(look) > limits.maxFileBytes) return null;
        outcome = outcomeOf(file, look);
        if (outcome === undefined || outcome.pending !== undefined || outcome.parseError !== null) return null;
        if (outcome.validated.some((entry) => !entry.result.ignored && (entry.result.object === null || entry.result.warnings.length !== 0))) return null;
        bytes += stampSize(look);
      } else if (last === undefined) {
        continue; // came and went between two loads
      }
      if (last !== undefined) bytes -= stampSize(last.stamp);
      if (bytes > limits.maxDirectoryBytes) return null;
      // Its objects go where the walk would put them: objects are in file name order.
      const from = firstObjectOf(nextObjects, file, false);
      const to = firstObjectOf(nextObjects, file, true);
      for (let i = from; i < to; i++) owners.delete(keyOfLoaded(nextObjects[i].object));
      const added: LoadedObject[] = [];
      for (const entry of outcome?.validated ?? []) {
        if (entry.result.ignored) continue;
        entry.loaded ??= { object: entry.result.object!, source: sourceOf(file, entry) };
        const key = keyOfLoaded(entry.loaded.object);
        if (owners.has(key)) return null; // a duplicate: the walk says which one stands
        owners.set(key, entry.loaded.source);
        added.push(entry.loaded);
      }
      nextObjects = [...nextObjects.slice(0, from), ...added, ...nextObjects.slice(to)];
      signatureText = withLine(signatureText, names, file, outcome === undefined ? null : (outcome.line ??= stampLine(file, outcome.stamp)));
      if (outcome === undefined) nextFiles.delete(file);
      else nextFiles.set(file, outcome);
    }
    return { objects: nextObjects, errors: [], files: nextFiles, signature: signatureText, names, bytes, owners };
  }

  /** Keeps what `file` gave last time for the next load, while it is not read. */
  function keepKnown(file: string): void {
    const last = previous?.files?.get(file);
    if (last) files.set(file, last);
  }

  /**
   * The outcome of `file` as it is now: the previous one if its content is
   * unchanged or still settling, else what reading it gives. Undefined when
   * there is nothing to use: the file is gone, or it is new and was
   * changing while it was read.
   */
  function outcomeOf(file: string, look: string | null): FileOutcome | undefined {
    const last = previous?.files?.get(file);
    if (last && look !== null) {
      if (last.stamp === look) return last.pending ? { ...last, pending: undefined } : last;
      if (stampInode(last.stamp) === stampInode(look) && !settled(last, look)) {
        return { ...last, pending: { stamp: look, since: last.pending?.stamp === look ? last.pending.since : now() } };
      }
    }
    const read = readConfigText(dir, realDir, file, limits.maxFileBytes);
    switch (read.kind) {
      case 'gone':
        return undefined;
      case 'changing':
        // Being written right now: the last good content stays until it is still.
        return last && look !== null ? { ...last, pending: { stamp: look, since: now() } } : undefined;
      case 'refused':
        return { stamp: look ?? '', parseError: { reason: read.reason }, validated: [] };
      case 'read':
        // Read, but not the content that was stat'ed: it changed in between.
        if (look !== null && read.stamp !== look) return last ? { ...last, pending: { stamp: read.stamp, since: now() } } : undefined;
        return parseAndValidate(file, read.text, look ?? read.stamp, shared);
    }
  }

  /**
   * Whether an in-place rewrite, first seen as `last.pending`, has stopped
   * changing: its stamp is the same as at least settleMs ago, or its last
   * change (ctime, which no one can set back) is that old already.
   */
  function settled(last: FileOutcome, look: string): boolean {
    const t = now();
    if (t - stampChangedMs(look) >= limits.settleMs) return true;
    return last.pending?.stamp === look && t - last.pending.since >= limits.settleMs;
  }

  function parseAndValidate(file: string, text: string, stamp: string, pool: SharedValues): FileOutcome {
    const parsed = parseConfigText(file, text, limits);
    const validated = parsed.ok
      ? parsed.entries.map((entry) => {
        const result = validateObject(entry.raw);
        if (result.object) shareValues(result.object as unknown as Record<string, unknown>, pool);
        return { document: entry.document, item: entry.item, result, identity: result.object || result.ignored ? null : identityOf(entry.raw) };
      })
      : [];
    return { stamp, parseError: parsed.ok ? null : parsed.error, validated };
  }

  /** Adds the objects of `outcome`, or reports why there are none. */
  function useOutcome(file: string, outcome: FileOutcome): void {
    if (outcome.parseError) {
      refuse(file, outcome.parseError);
      return;
    }
    for (const entry of outcome.validated) {
      const result = entry.result;
      if (result.ignored) continue;
      if (result.object) {
        entry.loaded ??= { object: result.object, source: sourceOf(file, entry) };
        add(entry.loaded, file);
        const meta = result.object.metadata;
        for (const w of result.warnings) {
          report({ file, document: entry.document, item: entry.item, object: describeObject(result.object.kind, meta.namespace, meta.name), field: w.field || undefined, reason: w.reason, severity: 'warning' });
        }
        continue;
      }
      const id = entry.identity;
      const object = id ? describeObject(id.kind, id.namespace, id.name) : undefined;
      const last = id ? previousOf(objectKey(id.kind, id.namespace || undefined, id.name)) : undefined;
      for (const fe of result.errors) {
        report({
          file, document: entry.document, item: entry.item, object,
          field: fe.field || undefined,
          reason: fe.reason + (last ? '; keeping the previous valid version' : ''),
        });
      }
      if (last) add({ object: last.object, source: sourceOf(file, entry) }, file);
    }
  }
}

/**
 * `signature` (stampLines in name order, one per line) with `file`'s line
 * replaced by `line`, put in its place, or taken out (null); `names` is
 * the listing, sorted, that `file` is in when it has a line to put.
 */
function withLine(signature: string, names: readonly string[], file: string, line: string | null): string {
  const at = lineStart(signature, file);
  if (at !== -1) {
    const end = signature.indexOf('\n', at);
    if (line !== null) return signature.slice(0, at) + line + (end === -1 ? '' : signature.slice(end));
    // Out with its line and one of the newlines around it.
    if (end !== -1) return signature.slice(0, at) + signature.slice(end + 1);
    return at === 0 ? '' : signature.slice(0, at - 1);
  }
  if (line === null) return signature;
  // Before the line of the first file listed after it that has one.
  for (let i = sortedIndex(names, file) + 1; i < names.length; i++) {
    const next = lineStart(signature, names[i]);
    if (next !== -1) return `${signature.slice(0, next)}${line}\n${signature.slice(next)}`;
  }
  return signature === '' ? line : `${signature}\n${line}`;
}

/** The index of the first object of `objects` (in file name order) from `file` (after: from a file after it). */
function firstObjectOf(objects: readonly LoadedObject[], file: string, after: boolean): number {
  let lo = 0;
  let hi = objects.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const f = objects[mid].source.file;
    if (f < file || (after && f === file)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function sourceOf(file: string, entry: { document: number; item?: number }): ObjectSource {
  return entry.item === undefined ? { file, document: entry.document } : { file, document: entry.document, item: entry.item };
}

/**
 * What was thrown, without its message unless it is known to hold no
 * file content: a stack overflow says so; anything else gives its kind.
 */
function describeThrown(e: unknown): string {
  if (e instanceof RangeError) return `RangeError: ${e.message}`;
  return e instanceof Error ? `${e.name}, an internal error` : 'an internal error';
}
