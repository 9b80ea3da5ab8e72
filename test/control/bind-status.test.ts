// markUnboundListeners: a socket the data plane could not bind turns the
// Programmed condition of every listener on it False, in the status of the
// object the listener is written in (a Gateway or a ListenerSet).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { markUnboundListeners } from '../../src/control/bind-status.ts';
import type { IR } from '../../src/ir/types.ts';

const programmed = () => [{ type: 'Programmed', status: 'True', reason: 'Programmed', message: 'Listener is serving' }];

test('an unbound socket marks its Gateway listener and its ListenerSet listener PortUnavailable, and nothing else', () => {
  const ir: IR = {
    version: 1,
    clusters: {},
    listeners: [
      { key: '10.0.0.1:8443', address: '10.0.0.1', port: 8443, protocol: 'HTTP', gatewayListeners: [
        { name: 'infra/gw/web', hostname: 'a.test', virtualHosts: [] },
        { name: 'infra/gw/ListenerSet/team/extra/web', hostname: 'b.test', virtualHosts: [] },
      ] },
      { key: '10.0.0.1:80', address: '10.0.0.1', port: 80, protocol: 'HTTP', gatewayListeners: [
        { name: 'infra/gw/ListenerSet/team/extra/plain', hostname: null, virtualHosts: [] },
      ] },
    ],
  } as unknown as IR;
  const statuses = new Map<string, unknown>([
    ['Gateway|infra|gw', { conditions: [], listeners: [{ name: 'web', conditions: programmed() }] }],
    ['ListenerSet|team|extra', { conditions: [], listeners: [{ name: 'web', conditions: programmed() }, { name: 'plain', conditions: programmed() }] }],
  ]);
  markUnboundListeners(ir, statuses, { '10.0.0.1:8443': 'EADDRINUSE' });
  const reason = (key: string, listener: string) => (statuses.get(key) as any).listeners.find((l: any) => l.name === listener).conditions[0].reason; // eslint-disable-line @typescript-eslint/no-explicit-any
  assert.equal(reason('Gateway|infra|gw', 'web'), 'PortUnavailable');
  assert.equal(reason('ListenerSet|team|extra', 'web'), 'PortUnavailable');
  assert.equal(reason('ListenerSet|team|extra', 'plain'), 'Programmed');
});
