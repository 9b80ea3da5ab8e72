// The rule every data plane behind a DataPlaneHandle keeps, in worker
// threads (WorkerPool) or on this thread (localDataPlane): fed the deltas
// of one source, in order, it is sent the source's full() after a delta
// it refused, so a virtual host defined only in that delta is not taken
// as known afterwards.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { localDataPlane, type DataPlaneHandle } from '../../src/control/data-plane-handle.ts';
import { WorkerPool } from '../../src/control/worker-pool.ts';
import { DataPlane } from '../../src/dataplane/dataplane.ts';
import { silentLog } from '../../src/dataplane/log.ts';
import { IRDeltaEncoder, type DeltaSource } from '../../src/ir/delta.ts';
import type { IR } from '../../src/ir/types.ts';
import { backend, cluster, freePort, gatewayListener, ir, listener, match, request, route, startBackend, vhost } from '../dataplane/helpers.ts';

const handles: Record<string, (source: DeltaSource) => DataPlaneHandle> = {
  WorkerPool: (source) => new WorkerPool({ workers: 2, logLevel: 'silent', log: () => {}, drainTimeoutMs: 2_000, source }),
  localDataPlane: (source) => localDataPlane(new DataPlane({ limits: { drainTimeoutMs: 1_000 } }), source, silentLog),
};

for (const [name, start] of Object.entries(handles)) {
  test(`${name}: after a delta the data plane refuses, the next one reaches it whole`, { timeout: 60_000 }, async (t) => {
    const echo = await startBackend(t, 'echo');
    const port = await freePort();
    // Fed as serve feeds it: each IR's delta from an encoder that is the source.
    const encoder = new IRDeltaEncoder();
    const dataPlane = start(encoder);
    t.after(() => dataPlane.close());
    const apply = (config: IR) => dataPlane.apply(encoder.encode(config), config.clusters);
    const one = vhost('one.test', [route('one', match('/'), [backend('echo')])]);
    const two = vhost('two.test', [route('two', match('/'), [backend('echo')])]);
    const echoCluster = cluster('echo', echo);
    const config = (hosts: ReturnType<typeof vhost>[]) => ir([listener(port, [gatewayListener('gw', null, hosts)])], [echoCluster]);

    await apply(config([one]));
    // two.test is defined in a delta that the data plane rejects...
    await assert.rejects(apply({ ...config([one, two]), version: 2 as 1 }), /unsupported IR version/);
    assert.equal((await request(port, '/', { host: 'two.test', headers: { connection: 'close' } })).status, 404);
    // ...so the next IR, which keeps it, must be sent in full, not as "two.test unchanged".
    assert.deepEqual(await apply(config([one, two])), { listenerErrors: {}, certificateErrors: {}, routeErrors: {} });
    for (let i = 0; i < 10; i++) {
      assert.equal((await request(port, '/', { host: 'two.test', headers: { connection: 'close' } })).status, 200);
    }
  });
}
