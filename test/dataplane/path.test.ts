import { test } from 'node:test';
import assert from 'node:assert/strict';
import { normalizePath } from '../../src/dataplane/http/path.ts';

const CASES: [string, string][] = [
  ['/', '/'],
  ['/a/b', '/a/b'],
  ['/a/b/', '/a/b/'],
  ['/public/../admin', '/admin'],
  ['/public/%2e%2e/admin', '/admin'],
  ['/public/%2E%2E/admin', '/admin'],
  ['/a/./b/./c', '/a/b/c'],
  ['/a/b/..', '/a/'],
  ['/a/b/.', '/a/b/'],
  ['/../../etc/passwd', '/etc/passwd'],
  ['//a///b', '/a/b'],
  ['/a%2Fb', '/a%2Fb'],
  ['/a%2fb', '/a%2Fb'],
  ['/%7Euser/%41', '/~user/A'],
  ['/..', '/'],
  ['/.', '/'],
  ['/.well-known/x', '/.well-known/x'],
  ['/a/.b/..c', '/a/.b/..c'],
  // Encoded separators that do not touch a dot segment are data (object names).
  ['/v1/AUTH_t/c/photos%2F2024%2Fa.jpg', '/v1/AUTH_t/c/photos%2F2024%2Fa.jpg'],
  ['/v2/images/a%2F%2Fb', '/v2/images/a%2F%2Fb'],
  ['/a/..b%2Fc', '/a/..b%2Fc'],
  ['/a/b.%2F.c', '/a/b.%2F.c'],
  ['/a/%5Cname', '/a/%5Cname'],
];

/** Paths a backend that decodes %2F or %5C, or reads `\` as `/`, would resolve elsewhere. */
const REFUSED: string[] = [
  '/public/..%2fadmin',
  '/public/..%2Fadmin',
  '/public/..%5cadmin',
  '/public/..%5Cadmin',
  '/a/%2e%2e%2fadmin',
  '/a/%2E%2E%5Cadmin',
  '/a/..%2f',
  '/a/x%2f..',
  '/a/x%2F..%2Fy',
  '/a/.%2fb',
  '/a/%2F.',
  '/a/..%2F/../b',
  '/a/..\\admin',
  '/a\\b',
];

test('paths are normalised: dot segments, repeated slashes, encoded unreserved characters', () => {
  for (const [input, want] of CASES) assert.equal(normalizePath(input), want, input);
});

test('normalising twice changes nothing', () => {
  for (const [input] of CASES) {
    const once = normalizePath(input);
    assert.equal(typeof once, 'string');
    assert.equal(normalizePath(once as string), once, input);
  }
});

test('an encoded separator next to a dot segment, or a backslash, is refused', () => {
  for (const input of REFUSED) {
    const result = normalizePath(input);
    assert.equal(typeof result, 'object', `${input} -> ${JSON.stringify(result)}`);
  }
});
