// Which versions of each kind of an API group the API server serves: the
// provider watches every Gateway API kind at the newest version served
// that the validator knows, so that a cluster with an older or a newer
// bundle works.
import type * as k8s from '@kubernetes/client-node';
import { rawGet, RawGetError } from './raw-get.ts';

export interface ServedKind {
  group: string;
  version: string;
  kind: string;
  /** The resource name in URLs, e.g. `httproutes`. */
  plural: string;
  namespaced: boolean;
}

const DISCOVERY_TIMEOUT_MS = 15_000;
/** A group's discovery document is a few KB; this bounds a broken or hostile answer. */
const DISCOVERY_MAX_BYTES = 4 * 1024 * 1024;

/**
 * Orders versions the way Kubernetes does (newest first): GA before beta
 * before alpha, then by major and by the alpha/beta number, then anything
 * that does not look like a Kubernetes version, by name.
 */
export function compareVersions(a: string, b: string): number {
  const key = (v: string): [number, number, number] => {
    const m = /^v(\d+)(?:(alpha|beta)(\d+))?$/.exec(v);
    if (!m) return [0, 0, 0];
    return [m[2] === undefined ? 3 : m[2] === 'beta' ? 2 : 1, Number(m[1]), Number(m[3] ?? 0)];
  };
  const ka = key(a);
  const kb = key(b);
  for (let i = 0; i < 3; i++) if (ka[i] !== kb[i]) return kb[i] - ka[i];
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * The kinds `group` serves, each with every version it is served at,
 * newest first; an empty map when the API server does not serve the group
 * at all (no CRD of it installed). Throws RawGetError on any other failure.
 */
export async function discoverGroup(kc: k8s.KubeConfig, group: string, signal?: AbortSignal): Promise<Map<string, ServedKind[]>> {
  const opts = { timeoutMs: DISCOVERY_TIMEOUT_MS, maxBytes: DISCOVERY_MAX_BYTES, signal };
  let groupDoc: { versions?: { version?: string }[] };
  try {
    groupDoc = await rawGet(kc, `/apis/${group}`, opts) as typeof groupDoc;
  } catch (err) {
    if (err instanceof RawGetError && err.statusCode === 404) return new Map();
    throw err;
  }
  const versions = (groupDoc.versions ?? []).map((v) => v.version).filter((v): v is string => typeof v === 'string').sort(compareVersions);
  const found = new Map<string, ServedKind[]>();
  for (const version of versions) {
    let list: { resources?: { name?: string; kind?: string; namespaced?: boolean }[] };
    try {
      list = await rawGet(kc, `/apis/${group}/${version}`, opts) as typeof list;
    } catch (err) {
      // A version removed between the two requests (a CRD being updated): the others still count.
      if (err instanceof RawGetError && err.statusCode === 404) continue;
      throw err;
    }
    for (const r of list.resources ?? []) {
      // Subresources (`httproutes/status`) name no kind of their own.
      if (typeof r.name !== 'string' || r.name.includes('/') || typeof r.kind !== 'string') continue;
      const served = { group, version, kind: r.kind, plural: r.name, namespaced: r.namespaced === true };
      const all = found.get(r.kind);
      if (all) all.push(served);
      else found.set(r.kind, [served]);
    }
  }
  return found;
}

/**
 * The version to watch a kind at: the newest served that `known` accepts
 * (the validator has its schema), else the newest served, whose objects
 * validation will then report.
 */
export function chooseVersion(served: ServedKind[] | undefined, known: (s: ServedKind) => boolean): ServedKind | null {
  if (!served || served.length === 0) return null;
  return served.find(known) ?? served[0];
}
