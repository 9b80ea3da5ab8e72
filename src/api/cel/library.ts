// The CEL functions the Gateway API CRDs' rules call beyond standard CEL,
// as the Kubernetes API server defines them, and nothing more: a function
// a rule calls that is missing here makes the rule fail to compile (see
// program.ts), so a CRD update that needs one says so at once.
//
// - the strings extension (split, substring, lowerAscii, ...), which the
//   API server includes whole;
// - `isIP(string)` from the IP library: `self.all(h, !isIP(h))` (TLSRoute);
// - the format library's `format.dns1123Label()`,
//   `format.dns1123Subdomain()`, `format.qualifiedName()` and their
//   `.validate(string)`, whose optional result is read with `.hasValue()`
//   (Gateway v1.7.0 `addresses[].routability`, XBackend);
// - `matches` again, with the same RE2 semantics, but compiling each
//   pattern once instead of on every call;
// - the cost meter's tick (cost.ts), which program.ts puts into every
//   comprehension.
import net from 'node:net';
import { celFunc, celMethod, CelScalar, listType, mapType } from '@bufbuild/cel';
import type { CelFunc, CelList, CelMap } from '@bufbuild/cel';
import { strings } from '@bufbuild/cel/ext';
import { RE2JS } from '@bufbuild/re2';
import { COST_TICK, chargeCost } from './cost.ts';

const { BOOL, DYN, STRING } = CelScalar;

// ---------------------------------------------------------------- matches

/**
 * Compiled patterns by source. Rules pass literal patterns, so this holds
 * the few dozen the CRDs use; a rule that built patterns from data could
 * pass any number, hence the bound (the oldest half is dropped when full).
 */
const MAX_PATTERNS = 512;
const patterns = new Map<string, RE2JS>();

function compilePattern(source: string): RE2JS {
  let re = patterns.get(source);
  if (re === undefined) {
    re = RE2JS.compile(source);
    if (patterns.size >= MAX_PATTERNS) {
      let drop = MAX_PATTERNS / 2;
      for (const key of patterns.keys()) {
        if (drop-- <= 0) break;
        patterns.delete(key);
      }
    }
    patterns.set(source, re);
  }
  return re;
}

/** `s.matches(re)`: RE2, unanchored; charged one unit per character of `s` looked at. */
export function matchesRE2(s: string, source: string): boolean {
  chargeCost(1 + s.length);
  return compilePattern(source).test(s);
}

// ---------------------------------------------------------------- isIP

/** The 16 bytes of an IPv6 address (no zone), or null. */
function ipv6Bytes(s: string): number[] | null {
  if (!net.isIPv6(s)) return null;
  let text = s;
  const tail: number[] = [];
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted) {
    for (const part of dotted[1].split('.')) tail.push(Number(part));
    text = `${text.slice(0, dotted.index)}0:0`;
  }
  const halves = text.split('::');
  const head = halves[0] ? halves[0].split(':') : [];
  const rest = halves.length > 1 && halves[1] ? halves[1].split(':') : [];
  const groups = [...head, ...Array(8 - head.length - rest.length).fill('0'), ...rest];
  const bytes: number[] = [];
  for (const g of groups) {
    const n = parseInt(g, 16);
    bytes.push(n >> 8, n & 0xff);
  }
  if (tail.length) bytes.splice(12, 4, ...tail);
  return bytes;
}

/**
 * `isIP(s)`: an IPv4 or IPv6 address as the API server's IP library parses
 * it: dotted IPv4 without leading zeros; IPv6 without a zone; an IPv4-mapped
 * IPv6 address (`::ffff:10.0.0.1`) is refused, as there.
 */
export function isIP(s: string): boolean {
  if (net.isIPv4(s)) return true;
  if (s.includes('%')) return false;
  const b = ipv6Bytes(s);
  if (b === null) return false;
  const mapped = b.slice(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff;
  return !mapped;
}

// ---------------------------------------------------------------- format

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const QUALIFIED_NAME_PART = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;

/** The API server's wording for each format's problems, as its format library reports them. */
const FORMATS: Record<string, (s: string) => string[]> = {
  dns1123Label: (s) => {
    const out: string[] = [];
    if (s.length > 63) out.push('must be no more than 63 characters');
    if (!DNS1123_LABEL.test(s)) out.push("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character");
    return out;
  },
  dns1123Subdomain: (s) => {
    const out: string[] = [];
    if (s.length > 253) out.push('must be no more than 253 characters');
    if (!DNS1123_SUBDOMAIN.test(s)) out.push("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character");
    return out;
  },
  qualifiedName: (s) => {
    const out: string[] = [];
    const parts = s.split('/');
    let name = s;
    if (parts.length === 2) {
      const [prefix] = parts;
      name = parts[1];
      if (prefix.length === 0) out.push('prefix part must be non-empty');
      else for (const e of FORMATS.dns1123Subdomain(prefix)) out.push(`prefix part ${e}`);
    } else if (parts.length > 2) {
      out.push("a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character with an optional DNS subdomain prefix and '/'");
      return out;
    }
    if (name.length === 0) out.push('name part must be non-empty');
    else if (name.length > 63) out.push('name part must be no more than 63 characters');
    if (name.length > 0 && !QUALIFIED_NAME_PART.test(name)) {
      out.push("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character");
    }
    return out;
  },
};

/** Marks the map that stands for a format value (`format.dns1123Label()`). */
const FORMAT_KEY = '@gatehouse/format';
const FORMAT_TYPE = mapType(STRING, DYN);
const LIST_STRING = listType(STRING);

/**
 * @bufbuild/cel has no optional values, so `validate`'s optional
 * list of errors is the list itself, empty when the API server's would be
 * none: `hasValue()` is "not empty" and `value()` the list, which is all
 * the rules do with it.
 */
function formatFunctions(): CelFunc[] {
  const out: CelFunc[] = [];
  for (const name of Object.keys(FORMATS)) {
    out.push(celFunc(`format.${name}`, [], FORMAT_TYPE, () => new Map([[FORMAT_KEY, name]])));
  }
  out.push(celMethod('validate', FORMAT_TYPE, [STRING], LIST_STRING, function (this: CelMap, s: string) {
    const name = this.get(FORMAT_KEY);
    if (typeof name !== 'string' || !Object.hasOwn(FORMATS, name)) throw new Error('validate() needs a format value, such as format.dns1123Label()');
    chargeCost(1 + s.length);
    return FORMATS[name](s);
  }));
  out.push(celMethod('hasValue', listType(DYN), [], BOOL, function (this: CelList) {
    return this.size > 0;
  }));
  out.push(celMethod('value', listType(DYN), [], listType(DYN), function (this: CelList) {
    if (this.size === 0) throw new Error('optional.none() dereference');
    return [...this];
  }));
  return out;
}

// ---------------------------------------------------------------- all

function costTick(): CelFunc {
  return celFunc(COST_TICK, [DYN], DYN, (x) => {
    chargeCost(1);
    return x;
  });
}

/** Every function the rules may call beyond the standard ones; later entries override earlier ones of the same signature. */
export const KUBERNETES_FUNCTIONS: CelFunc[] = [
  ...strings,
  celFunc('isIP', [STRING], BOOL, isIP),
  celMethod('matches', STRING, [STRING], BOOL, function (this: string, re: string) { return matchesRE2(this, re); }),
  celFunc('matches', [STRING, STRING], BOOL, matchesRE2),
  ...formatFunctions(),
  costTick(),
];
