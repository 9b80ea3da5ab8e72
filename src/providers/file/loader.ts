// The file provider's loader: every *.yaml, *.yml and *.json file directly
// in a directory -> validated objects, and errors that name file, document,
// object and field. A bad config never replaces a good one: a file that
// does not parse keeps the objects it had, an object that does not validate
// keeps its previous valid version.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import jsyaml from 'js-yaml';
import type { KubeObject } from '../../api/types.ts';
import { describeObject, identityOf, validateObject } from '../../api/validate.ts';
import { newSharedValues, shareValues } from '../../api/sharing.ts';

// yaml parses files with aliases (below); loaded on the first such file,
// as it costs ~10 MB of memory once loaded.
const lazyRequire = createRequire(import.meta.url);
let yaml: typeof import('yaml') | null = null;
function yamlParser(): typeof import('yaml') {
  return yaml ??= lazyRequire('yaml') as typeof import('yaml');
}

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
}

export interface LoadResult {
  objects: LoadedObject[];
  errors: ConfigError[];
  /** What each file gave last time, reused while the file is unchanged. */
  files?: Map<string, FileOutcome>;
  /** The directory as read: a stampLine per config file, as watcher.ts's directorySignature gives it. */
  signature?: string;
}

/**
 * A file's parse and validation outcome, keyed by what identifies its
 * content on disk. Reusing it makes a reload cost one stat per unchanged
 * file instead of a YAML parse and a schema walk, and keeps unchanged
 * objects the same instances, which later stages cache on.
 */
interface FileOutcome {
  stamp: string;
  /** Why the file could not be parsed, or null. */
  parseError: Omit<ConfigError, 'message'> | null;
  /** Per object: the validation result, and for an invalid one who it claims to be. The raw parse is not kept. */
  validated: { document: number; item?: number; result: ReturnType<typeof validateObject>; identity: ReturnType<typeof identityOf> }[];
}

/** What identifies a file's content on disk: inode, size, mtime and ctime; null if it cannot be stat'ed. */
export function fileStamp(file: string): string | null {
  try {
    const st = fs.statSync(file, { bigint: true });
    // join() builds one flat string; a template literal would keep the
    // four numbers and the separators as a tree of pieces, per file.
    return [st.ino, st.size, st.mtimeNs, st.ctimeNs].join(':');
  } catch {
    return null;
  }
}

/** One file's line of a directory signature. */
export function stampLine(name: string, stamp: string): string {
  return [name, stamp].join('\u0000');
}

/** Whether the loader reads a file of this name: *.yaml, *.yml, *.json, not hidden. */
export function isConfigFile(name: string): boolean {
  return !name.startsWith('.') && /\.(ya?ml|json)$/i.test(name);
}

/** `Kind|namespace|name`: what makes two objects the same object. */
export function objectKey(kind: string, namespace: string | undefined, name: string): string {
  return `${kind}|${namespace ?? ''}|${name}`;
}

function keyOfLoaded(o: KubeObject): string {
  return objectKey(o.kind, o.metadata.namespace, o.metadata.name);
}

export function configError(e: Omit<ConfigError, 'message'>): ConfigError {
  let where = e.file;
  if (e.document !== undefined) where += ` document ${e.document}`;
  if (e.item !== undefined) where += ` item ${e.item}`;
  if (e.object) where += ` (${e.object})`;
  const message = e.field ? `${where}: ${e.field}: ${e.reason}` : `${where}: ${e.reason}`;
  return { ...e, message };
}

/** One raw object of a file with where it came from. */
interface RawEntry {
  raw: unknown;
  document: number;
  item?: number;
}

type Parsed = { ok: true; entries: RawEntry[] } | { ok: false; error: Omit<ConfigError, 'message'> };

/** A document that is a `kind: List` gives its items; anything else itself. */
function expandList(raw: unknown, document: number): RawEntry[] {
  if (raw && typeof raw === 'object' && !Array.isArray(raw) && (raw as Record<string, unknown>).kind === 'List'
    && Array.isArray((raw as Record<string, unknown>).items)) {
    return ((raw as Record<string, unknown>).items as unknown[]).map((item, i) => ({ raw: item, document, item: i + 1 }));
  }
  return [{ raw, document }];
}

function parseFile(file: string, text: string): Parsed {
  if (/\.json$/i.test(file)) {
    if (text.trim() === '') return { ok: true, entries: [] };
    try {
      return { ok: true, entries: expandList(JSON.parse(text), 1) };
    } catch (e) {
      return { ok: false, error: { file, reason: `cannot parse JSON: ${(e as Error).message}` } };
    }
  }
  // js-yaml parses about ten times faster than yaml's document API, which
  // matters when a thousand route files arrive at once. It does not bound
  // alias expansion, so a file that uses aliases at all takes the slower
  // parser that does.
  if (!ALIAS.test(text)) {
    let docs: unknown[];
    try {
      docs = jsyaml.loadAll(text, undefined, { filename: file, schema: jsyaml.CORE_SCHEMA });
    } catch (e) {
      const err = e as { mark?: { line: number; column: number }; reason?: string; message: string };
      const line = err.mark ? err.mark.line + 1 : undefined;
      const where = err.mark ? ` at line ${line}, column ${err.mark.column + 1}` : '';
      return { ok: false, error: { file, document: line === undefined ? undefined : documentAt(text, line), reason: `cannot parse YAML${where}: ${err.reason ?? err.message}` } };
    }
    const entries: RawEntry[] = [];
    docs.forEach((value, i) => {
      if (value !== null && value !== undefined) entries.push(...expandList(value, i + 1));
    });
    return { ok: true, entries };
  }
  return parseWithAliases(file, text);
}

/** A YAML alias (`*name`) where a value can start. */
const ALIAS = /(^|[\s,[{:-])\*[^\s,\]}]/m;

/** The 1-based number of the document that holds 1-based `line`, counting `---` separators. */
function documentAt(text: string, line: number): number {
  let doc = 1;
  let started = false;
  const lines = text.split('\n', line - 1);
  for (const l of lines) {
    if (/^---(\s|$)/.test(l)) {
      if (started) doc++;
      started = true;
    } else if (!started && l.trim() !== '' && !l.trimStart().startsWith('#') && !l.startsWith('%')) {
      started = true;
    }
  }
  return doc;
}

function parseWithAliases(file: string, text: string): Parsed {
  const entries: RawEntry[] = [];
  const docs = yamlParser().parseAllDocuments(text, { prettyErrors: true });
  // parseAllDocuments returns an EmptyStream for a file with no documents.
  const list = Array.isArray(docs) ? docs : [];
  for (let i = 0; i < list.length; i++) {
    const doc = list[i];
    const error = doc.errors[0];
    if (error) {
      const where = error.linePos ? ` at line ${error.linePos[0].line}, column ${error.linePos[0].col}` : '';
      const firstLine = error.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '');
      return { ok: false, error: { file, document: i + 1, reason: `cannot parse YAML${where}: ${firstLine}` } };
    }
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: 100 });
    } catch (e) {
      return { ok: false, error: { file, document: i + 1, reason: `cannot read YAML: ${(e as Error).message}` } };
    }
    if (value === null || value === undefined) continue; // empty document
    entries.push(...expandList(value, i + 1));
  }
  return { ok: true, entries };
}

/** The config files directly in `dir`, sorted by name. */
export function readConfigFiles(dir: string): { names: string[]; error?: string } {
  try {
    const names = fs.readdirSync(dir, { withFileTypes: true })
      .filter((d) => (d.isFile() || d.isSymbolicLink()) && isConfigFile(d.name))
      .map((d) => d.name)
      .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    return { names };
  } catch (e) {
    return { names: [], error: (e as Error).message };
  }
}

/**
 * Reads every config file directly in `dir` (sorted by name), validates
 * each object, and returns the objects to use and the errors to report.
 * With `previous` (the last result), a file that fails to parse keeps the
 * objects it contributed then, and an invalid object keeps its previous
 * valid version (same kind, namespace and name). An object defined twice
 * is taken from the first file (by name) and document; the second is
 * reported. With `changed` (the files a watcher saw change since
 * `previous`), the other files are taken as they were without a stat.
 */
export function loadDirectory(dir: string, previous?: LoadResult, changed?: ReadonlySet<string> | null): LoadResult {
  const objects: LoadedObject[] = [];
  const errors: ConfigError[] = [];
  const report = (e: Omit<ConfigError, 'message'>) => errors.push(configError(e));
  const previousByKey = new Map<string, LoadedObject>();
  for (const o of previous?.objects ?? []) previousByKey.set(keyOfLoaded(o.object), o);
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

  const listing = readConfigFiles(dir);
  if (listing.error) {
    report({ file: dir, reason: `cannot read the directory: ${listing.error}` });
    // Nothing can be read: keep everything from before.
    return { objects: previous ? [...previous.objects] : [], errors };
  }

  const files = new Map<string, FileOutcome>();
  const signature: string[] = [];
  // The strings and equal parts of the objects parsed in this load, shared between them.
  const shared = newSharedValues();
  for (const file of listing.names) {
    const full = path.join(dir, file);
    const known = changed && !changed.has(file) ? previous?.files?.get(file) : undefined;
    const stamp = known !== undefined ? known.stamp : fileStamp(full);
    if (stamp !== null) signature.push(stampLine(file, stamp));
    let outcome = stamp === null ? undefined : previous?.files?.get(file);
    if (outcome?.stamp !== stamp) outcome = undefined;
    if (!outcome) {
      let text: string;
      try {
        text = fs.readFileSync(full, 'utf8');
      } catch (e) {
        const err = e as NodeJS.ErrnoException;
        if (err.code === 'ENOENT') continue; // removed since the listing: it is gone
        report({ file, reason: `cannot read: ${err.message}` });
        for (const o of previous?.objects ?? []) if (o.source.file === file) add(o, file);
        continue;
      }
      const parsed = parseFile(file, text);
      const validated = parsed.ok
        ? parsed.entries.map((entry) => {
          const result = validateObject(entry.raw);
          if (result.object) shareValues(result.object as unknown as Record<string, unknown>, shared);
          return { document: entry.document, item: entry.item, result, identity: result.object || result.ignored ? null : identityOf(entry.raw) };
        })
        : [];
      outcome = { stamp: stamp ?? '', parseError: parsed.ok ? null : parsed.error, validated };
    }
    // A file whose stat failed is read again next time rather than trusted.
    if (stamp !== null) files.set(file, outcome);
    const parseError = outcome.parseError;
    if (parseError) {
      const kept = (previous?.objects ?? []).filter((o) => o.source.file === file);
      report({ ...parseError, reason: parseError.reason + (kept.length ? `; keeping the ${kept.length} object(s) loaded from it before` : '') });
      for (const o of kept) add(o, file);
      continue;
    }
    for (const entry of outcome.validated) {
      const result = entry.result;
      const source: ObjectSource = entry.item === undefined ? { file, document: entry.document } : { file, document: entry.document, item: entry.item };
      if (result.ignored) continue;
      if (result.object) {
        add({ object: result.object, source }, file);
        continue;
      }
      const id = entry.identity;
      const object = id ? describeObject(id.kind, id.namespace, id.name) : undefined;
      const last = id ? previousByKey.get(objectKey(id.kind, id.namespace || undefined, id.name)) : undefined;
      for (const fe of result.errors) {
        report({
          file, document: entry.document, item: entry.item, object,
          field: fe.field || undefined,
          reason: fe.reason + (last ? '; keeping the previous valid version' : ''),
        });
      }
      if (last) add({ object: last.object, source }, file);
    }
  }
  return { objects, errors, files, signature: signature.join('\n') };
}
