// Reading the objects of deploy/manifests (and of rendered charts) for the
// deploy tests: every document parsed strictly, each with the file it came from.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const MANIFESTS_DIR = path.join(ROOT, 'deploy/manifests');
export const CHART_DIR = path.join(ROOT, 'deploy/helm/gatehouse');

// Loose on purpose: the tests check the fields they care about.
export interface Obj {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; [k: string]: unknown };
  [field: string]: any;
}

export interface Loaded {
  file: string;
  object: Obj;
}

/** Every non-empty document of a YAML stream; throws on any YAML error or warning. */
export function parseObjects(text: string, file: string): Loaded[] {
  const out: Loaded[] = [];
  for (const doc of parseAllDocuments(text, { strict: true, uniqueKeys: true })) {
    if (doc.errors.length) throw new Error(`${file}: ${doc.errors.map((e) => e.message).join('; ')}`);
    if (doc.warnings.length) throw new Error(`${file}: ${doc.warnings.map((e) => e.message).join('; ')}`);
    const object = doc.toJS() as Obj | null;
    if (object === null) continue;
    out.push({ file, object });
  }
  return out;
}

/** The files of deploy/manifests, in the order they are meant to be applied (by name). */
export function manifestFiles(): string[] {
  return fs.readdirSync(MANIFESTS_DIR).filter((f) => f.endsWith('.yaml')).sort().map((f) => path.join(MANIFESTS_DIR, f));
}

export function loadManifests(): Loaded[] {
  return manifestFiles().flatMap((f) => parseObjects(fs.readFileSync(f, 'utf8'), path.relative(ROOT, f)));
}

export function keyOf(o: Obj): string {
  return `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`;
}

/** The one object of this kind and name; throws when there is none or more than one. */
export function only(objects: Obj[], kind: string, name?: string): Obj {
  const found = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  if (found.length !== 1) throw new Error(`expected one ${kind}${name ? ` ${name}` : ''}, found ${found.length}`);
  return found[0]!;
}
