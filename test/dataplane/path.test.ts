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
  ['/a/..%2fb', '/a/..%2Fb'],
  ['/.well-known/x', '/.well-known/x'],
  ['/a/.b/..c', '/a/.b/..c'],
];

test('paths are normalised: dot segments, repeated slashes, encoded unreserved characters', () => {
  for (const [input, want] of CASES) assert.equal(normalizePath(input), want, input);
});

test('normalising twice changes nothing', () => {
  for (const [input] of CASES) assert.equal(normalizePath(normalizePath(input)), normalizePath(input), input);
});
