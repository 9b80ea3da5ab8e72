// Two scans of JSON text that do what JSON.parse does not: measure nesting
// before parsing, and say where a syntax error is without quoting the
// text. Both are loops over the characters with an explicit stack, so no
// input can make them recurse.

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;

/**
 * The index of the first `[` or `{` that opens a level deeper than
 * `maxDepth`, or -1. Exact for valid JSON (the depth of the parsed value),
 * and stops at that bracket, so a megabyte of `[[[[` costs microseconds.
 */
export function jsonTooDeepAt(text: string, maxDepth: number): number {
  let depth = 0;
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      // Skip the string: a bracket inside it is text.
      for (i++; i < n; i++) {
        const s = text.charCodeAt(i);
        if (s === BACKSLASH) i++;
        else if (s === QUOTE) break;
      }
    } else if (c === OPEN_BRACKET || c === OPEN_BRACE) {
      if (++depth > maxDepth) return i;
    } else if (c === CLOSE_BRACKET || c === CLOSE_BRACE) {
      if (depth > 0) depth--;
    }
  }
  return -1;
}

export interface JsonSyntaxError {
  /** 0-based index into the text. */
  index: number;
  /** What is wrong there, in words that never quote the text. */
  reason: string;
}

type State = 'value' | 'value-or-close' | 'after-value' | 'key' | 'key-or-close' | 'colon';

/**
 * The first syntax error in `text` by RFC 8259, or null if it is valid
 * JSON. For messages only: JSON.parse decides what parses, and V8's own
 * messages quote the text around the error, which may be a secret.
 */
export function findJsonSyntaxError(text: string): JsonSyntaxError | null {
  const n = text.length;
  // Open containers: true for an object, false for an array.
  const open: boolean[] = [];
  let state: State = 'value';
  let i = 0;
  const fail = (index: number, reason: string): JsonSyntaxError => ({ index, reason });
  for (;;) {
    while (i < n && isSpace(text.charCodeAt(i))) i++;
    if (i >= n) {
      if (state === 'after-value' && open.length === 0) return null;
      return fail(n, 'unexpected end of input');
    }
    const c = text.charCodeAt(i);
    switch (state) {
      case 'value':
      case 'value-or-close': {
        if (c === CLOSE_BRACKET && state === 'value-or-close') {
          open.pop();
          state = 'after-value';
          i++;
        } else if (c === OPEN_BRACKET) {
          open.push(false);
          state = 'value-or-close';
          i++;
        } else if (c === OPEN_BRACE) {
          open.push(true);
          state = 'key-or-close';
          i++;
        } else if (c === QUOTE) {
          const end = scanString(text, i);
          if (typeof end !== 'number') return end;
          i = end;
          state = 'after-value';
        } else if (c === 0x2d || isDigit(c)) {
          const end = scanNumber(text, i);
          if (typeof end !== 'number') return end;
          i = end;
          state = 'after-value';
        } else {
          const literal = ['true', 'false', 'null'].find((word) => text.startsWith(word, i));
          if (literal === undefined) return fail(i, 'expected a value (an object, array, string, number, true, false or null)');
          i += literal.length;
          state = 'after-value';
        }
        break;
      }
      case 'after-value': {
        if (open.length === 0) return fail(i, 'unexpected content after the value');
        const inObject = open[open.length - 1];
        if (c === 0x2c) {
          state = inObject ? 'key' : 'value';
          i++;
        } else if (c === (inObject ? CLOSE_BRACE : CLOSE_BRACKET)) {
          open.pop();
          i++;
        } else {
          return fail(i, inObject ? "expected ',' or '}' after a property value" : "expected ',' or ']' after an array element");
        }
        break;
      }
      case 'key':
      case 'key-or-close': {
        if (c === CLOSE_BRACE && state === 'key-or-close') {
          open.pop();
          state = 'after-value';
          i++;
        } else if (c === QUOTE) {
          const end = scanString(text, i);
          if (typeof end !== 'number') return end;
          i = end;
          state = 'colon';
        } else {
          return fail(i, 'expected a property name in double quotes');
        }
        break;
      }
      case 'colon': {
        if (c !== 0x3a) return fail(i, "expected ':' after a property name");
        state = 'value';
        i++;
        break;
      }
    }
  }
}

/** The index after the string that opens at `start`, or the error in it. */
function scanString(text: string, start: number): number | JsonSyntaxError {
  const n = text.length;
  for (let i = start + 1; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) return i + 1;
    if (c < 0x20) return { index: i, reason: 'control character in a string (write it as an escape)' };
    if (c === BACKSLASH) {
      if (i + 1 >= n) break;
      const e = text.charCodeAt(i + 1);
      if (e === 0x75) { // \uXXXX
        for (let k = 2; k < 6; k++) {
          if (!isHex(text.charCodeAt(i + k))) return { index: i, reason: 'bad \\u escape in a string (needs four hex digits)' };
        }
        i += 5;
      } else if ('"\\/bfnrt'.includes(text[i + 1])) {
        i++;
      } else {
        return { index: i, reason: 'bad escape in a string' };
      }
    }
  }
  return { index: start, reason: 'unterminated string' };
}

/** The index after the number that starts at `start`, or the error in it. */
function scanNumber(text: string, start: number): number | JsonSyntaxError {
  let i = start;
  const bad = { index: start, reason: 'malformed number' };
  if (text.charCodeAt(i) === 0x2d) i++;
  if (text.charCodeAt(i) === 0x30) i++;
  else if (isDigit(text.charCodeAt(i))) while (isDigit(text.charCodeAt(i))) i++;
  else return bad;
  if (text.charCodeAt(i) === 0x2e) {
    i++;
    if (!isDigit(text.charCodeAt(i))) return bad;
    while (isDigit(text.charCodeAt(i))) i++;
  }
  const e = text.charCodeAt(i);
  if (e === 0x65 || e === 0x45) {
    i++;
    const sign = text.charCodeAt(i);
    if (sign === 0x2b || sign === 0x2d) i++;
    if (!isDigit(text.charCodeAt(i))) return bad;
    while (isDigit(text.charCodeAt(i))) i++;
  }
  return i;
}

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

function isHex(c: number): boolean {
  return isDigit(c) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

/** 1-based line and column of a 0-based index (lines end at \n). */
export function lineColumn(text: string, index: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  for (let nl = text.indexOf('\n'); nl !== -1 && nl < index; nl = text.indexOf('\n', nl + 1)) {
    line++;
    lineStart = nl + 1;
  }
  return { line, column: index - lineStart + 1 };
}
