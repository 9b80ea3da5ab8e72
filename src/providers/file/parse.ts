// Config file text -> raw objects, within the nesting and size limits, with
// errors that say where and why but never quote the text: a Secret with a
// syntax error must not put its key material into /api/v1/errors or the
// log. Both parsers' own messages quote the source around the error (V8's
// JSON.parse, js-yaml's snippet and its tag, alias and anchor names), so
// only locations and fixed phrases are taken from them.
import jsyaml from 'js-yaml';
import { findJsonSyntaxError, jsonTooDeepAt, lineColumn } from './json-syntax.ts';
import { expandShared, measureShape, type ShapeProblem } from './shape.ts';

/** One raw object of a file with where it came from. */
export interface RawEntry {
  raw: unknown;
  document: number;
  item?: number;
}

export interface ParseError {
  document?: number;
  reason: string;
}

export type Parsed = { ok: true; entries: RawEntry[] } | { ok: false; error: ParseError };

export interface ParseLimits {
  maxDepth: number;
  maxValues: number;
}

/** Parses a *.json file as one document, anything else as multi-document YAML. */
export function parseConfigText(file: string, text: string, limits: ParseLimits): Parsed {
  return /\.json$/i.test(file) ? parseJSON(text, limits) : parseYAML(text, limits);
}

function parseJSON(text: string, limits: ParseLimits): Parsed {
  if (text.trim() === '') return { ok: true, entries: [] };
  // Measured on the text first: JSON.parse itself would build a
  // million-deep value from a megabyte of `[`, and everything after it
  // recurses.
  const deepAt = jsonTooDeepAt(text, limits.maxDepth);
  if (deepAt >= 0) {
    const { line, column } = lineColumn(text, deepAt);
    return { ok: false, error: { reason: `nested more than ${limits.maxDepth} levels deep at line ${line}, column ${column}` } };
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    const found = findJsonSyntaxError(text);
    if (!found) return { ok: false, error: { reason: 'cannot parse JSON' } };
    const { line, column } = lineColumn(text, found.index);
    return { ok: false, error: { reason: `cannot parse JSON at line ${line}, column ${column}: ${found.reason}` } };
  }
  // JSON has no aliases: the values are all there in the text.
  const problem = describeProblem(measureShape(value, limits.maxDepth, limits.maxValues).problem, limits, '');
  if (problem) return { ok: false, error: { document: 1, reason: problem } };
  return { ok: true, entries: expandList(value, 1) };
}

function parseYAML(text: string, limits: ParseLimits): Parsed {
  let docs: unknown[];
  try {
    // js-yaml counts the document and the innermost scalar as levels too,
    // so +2 lets exactly maxDepth levels of maps and lists through; a
    // nesting bomb stops the parser there, before it recurses any deeper.
    // (maxDepth is js-yaml 4.3's; its type definitions predate it.)
    const options: jsyaml.LoadOptions & { maxDepth: number } = { schema: jsyaml.CORE_SCHEMA, maxDepth: limits.maxDepth + 2 };
    docs = jsyaml.loadAll(text, undefined, options);
  } catch (e) {
    if (!(e instanceof jsyaml.YAMLException)) {
      return { ok: false, error: { reason: `cannot parse YAML: the parser failed (${(e as Error)?.name ?? 'error'})` } };
    }
    const mark = (e as { mark?: { line: number; column: number } }).mark;
    const reason = yamlReason(e.reason, limits.maxDepth);
    if (!mark) return { ok: false, error: { reason: `cannot parse YAML: ${reason}` } };
    const line = mark.line + 1;
    return { ok: false, error: { document: documentAt(text, line), reason: `cannot parse YAML at line ${line}, column ${mark.column + 1}: ${reason}` } };
  }
  const entries: RawEntry[] = [];
  for (let i = 0; i < docs.length; i++) {
    const value = docs[i];
    if (value === null || value === undefined) continue; // an empty document
    const shape = measureShape(value, limits.maxDepth, limits.maxValues);
    const problem = describeProblem(shape.problem, limits, shape.shared ? ' (with YAML aliases expanded)' : '');
    if (problem) return { ok: false, error: { document: i + 1, reason: problem } };
    // Aliases: each use becomes a copy of its own, as YAML means it.
    entries.push(...expandList(shape.shared ? expandShared(value) : value, i + 1));
  }
  return { ok: true, entries };
}

function describeProblem(problem: ShapeProblem | null, limits: ParseLimits, how: string): string | null {
  if (problem === 'depth') return `nested more than ${limits.maxDepth} levels deep${how}`;
  if (problem === 'values') return `more than ${limits.maxValues} values in one document${how}`;
  return null;
}

/**
 * js-yaml's reason with the parts it copies from the text left out. Most
 * reasons are fixed phrases; these name a tag, alias, anchor or handle
 * from the file, which could be a secret written where a value was meant
 * (`tls.key: *MIIE...` reads as an alias).
 */
const QUOTING_REASONS: [RegExp, string][] = [
  [/^nesting exceeded maxDepth/, ''],
  [/^unidentified alias/, 'an alias (*name) to an anchor not defined before it'],
  [/^unknown tag/, 'unknown tag'],
  [/^undeclared tag handle/, 'undeclared tag handle'],
  [/^tag name cannot contain such characters/, 'a tag name with characters a tag cannot have'],
  [/^tag name is malformed/, 'malformed tag name'],
  [/^tag prefix is malformed/, 'malformed tag prefix'],
  [/^cannot resolve a node with/, 'cannot resolve a node with its explicit tag'],
  [/^unacceptable node kind for/, 'a tag that does not fit the kind of node it is on'],
  [/^there is a previously declared suffix/, 'a tag handle declared twice'],
];

function yamlReason(reason: string | undefined, maxDepth: number): string {
  const r = reason ?? 'syntax error';
  for (const [pattern, fixed] of QUOTING_REASONS) {
    if (pattern.test(r)) return fixed || `nested more than ${maxDepth} levels deep`;
  }
  // Any other reason that would quote something is cut where the quotation starts.
  const cut = r.search(/["<`]|: /);
  return cut < 0 ? r : r.slice(0, cut).trimEnd() || 'syntax error';
}

/** A document that is a `kind: List` gives its items; anything else itself. */
function expandList(raw: unknown, document: number): RawEntry[] {
  if (raw && typeof raw === 'object' && !Array.isArray(raw) && (raw as Record<string, unknown>).kind === 'List'
    && Array.isArray((raw as Record<string, unknown>).items)) {
    return ((raw as Record<string, unknown>).items as unknown[]).map((item, i) => ({ raw: item, document, item: i + 1 }));
  }
  return [{ raw, document }];
}

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
