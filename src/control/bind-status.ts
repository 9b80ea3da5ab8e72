// A listener that translate() accepted can still fail to bind (the port is
// taken by another process). The data plane reports that; this folds it
// back into the Gateway's status so `kubectl get`-style readers see it.
import type { IR } from '../ir/types.ts';
import type { PlainCondition } from '../translate/conditions.ts';

interface ListenerStatusLike { name: string; conditions: PlainCondition[] }
interface GatewayStatusLike { conditions: PlainCondition[]; listeners: ListenerStatusLike[] }

export function markUnboundListeners(ir: IR, statuses: Map<string, unknown>, errors: Record<string, string>): void {
  for (const sock of ir.listeners) {
    const err = errors[sock.key];
    if (!err) continue;
    for (const gl of sock.gatewayListeners) {
      const [ns, gw, listener] = gl.name.split('/');
      const st = statuses.get(`Gateway|${ns}|${gw}`) as GatewayStatusLike | undefined;
      const ls = st?.listeners.find((l) => l.name === listener);
      if (!st || !ls) continue;
      const message = `cannot listen on ${sock.key}: ${err}`;
      ls.conditions = ls.conditions.map((c) => (c.type === 'Programmed'
        ? { ...c, status: 'False', reason: 'PortUnavailable', message }
        : c));
    }
  }
}
