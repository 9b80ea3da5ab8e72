// What the admin page shows: each Gateway with its listeners and their
// conditions, and the routes that name it with their status, from the
// same objects and statuses explain reads.
import { nameOf, namespaceOf } from '../api/snapshot.ts';
import { statusKey } from '../translate/index.ts';
import type { ExplainInput } from './explain.ts';

interface Condition { type: string; status: string; reason: string; message: string }

export interface Overview {
  gateways: {
    name: string;
    addresses: string[];
    conditions: Condition[];
    listeners: { name: string; port: number; protocol: string; hostname: string | null; attachedRoutes: number; conditions: Condition[] }[];
    routes: { name: string; hostnames: string[]; sectionName: string | null; conditions: Condition[]; requests: number | null }[];
  }[];
}

/**
 * `requests(gateway, route, listener)`: requests the route served through
 * that Gateway (and listener, null: any) since start, or null when the
 * data plane does not count them. A parent that did not accept the route
 * shows null: it serves nothing of it.
 */
export function overview(
  input: ExplainInput, requests: (gateway: string, route: string, listener: string | null) => number | null = () => null,
): Overview {
  return {
    gateways: input.gateways.filter((gw) => input.statuses.has(statusKey(gw))).map((gw) => {
      const status = input.statuses.get(statusKey(gw)) as {
        addresses?: { value: string }[]; conditions?: Condition[];
        listeners?: { name: string; attachedRoutes: number; conditions: Condition[] }[];
      } | undefined;
      const name = nameOf(gw);
      const routes: Overview['gateways'][number]['routes'] = [];
      for (const route of input.routes) {
        const rs = input.statuses.get(statusKey(route)) as { parents?: { parentRef: { name: string; namespace?: string; kind?: string; sectionName?: string }; conditions: Condition[] }[] } | undefined;
        for (const p of rs?.parents ?? []) {
          if ((p.parentRef.kind ?? 'Gateway') !== 'Gateway' || `${p.parentRef.namespace ?? namespaceOf(route)}/${p.parentRef.name}` !== name) continue;
          routes.push({
            name: nameOf(route),
            hostnames: route.spec.hostnames ?? [],
            sectionName: p.parentRef.sectionName ?? null,
            conditions: p.conditions.map(plain),
            requests: p.conditions.some((c) => c.type === 'Accepted' && c.status === 'True')
              ? requests(name, nameOf(route), p.parentRef.sectionName ?? null) : null,
          });
        }
      }
      return {
        name,
        addresses: (status?.addresses ?? []).map((a) => a.value),
        conditions: (status?.conditions ?? []).map(plain),
        listeners: gw.spec.listeners.map((l) => {
          const ls = status?.listeners?.find((x) => x.name === l.name);
          return {
            name: l.name, port: l.port, protocol: l.protocol, hostname: l.hostname ?? null,
            attachedRoutes: ls?.attachedRoutes ?? 0, conditions: (ls?.conditions ?? []).map(plain),
          };
        }),
        routes,
      };
    }),
  };
}

function plain(c: Condition): Condition {
  return { type: c.type, status: c.status, reason: c.reason, message: c.message };
}
