// A data-plane worker process: one DataPlane, driven by IR messages from
// the cluster primary; answers each apply with its ApplyResult so bind
// errors still reach status. Listening sockets are shared through the
// cluster, so every worker accepts on the same ports.
import pino from 'pino';
import type { FromWorker, ToWorker } from '../control/worker-protocol.ts';
import { DataPlane } from './dataplane.ts';

export function runDataPlaneWorker(): void {
  const send = process.send?.bind(process);
  if (send === undefined) throw new Error('the data-plane worker must be started by the gatehouse control plane');
  const log = pino({ level: process.env.GATEHOUSE_LOG_LEVEL ?? 'info', base: { worker: process.pid } });
  const dataPlane = new DataPlane({ log: (level, msg, fields) => log[level](fields ?? {}, msg) });
  let appliedSeq = 0;
  let closing = false;
  const reply = (m: FromWorker) => { if (process.connected) send(m); };

  process.on('message', (m: ToWorker) => {
    switch (m.type) {
      case 'apply':
        dataPlane.apply(JSON.parse(m.irJson)).then(
          (result) => { appliedSeq = m.seq; reply({ type: 'applied', seq: m.seq, result }); },
          (err: unknown) => reply({ type: 'applied', seq: m.seq, error: String(err) }),
        );
        return;
      case 'stats':
        reply({ type: 'stats', seq: m.seq, stats: { pid: process.pid, requests: dataPlane.requestCount, appliedSeq } });
        return;
      case 'close':
        if (closing) return;
        closing = true;
        // Drain: stop accepting, let requests in flight finish, then go.
        dataPlane.close().finally(() => process.exit(0));
        return;
    }
  });
  // The primary went away without telling us: nobody will send config or
  // ask us to stop, so drain and go rather than serve on unsupervised.
  process.on('disconnect', () => {
    if (closing) return;
    closing = true;
    dataPlane.close().finally(() => process.exit(0));
  });
  // Signals go to the whole process group on Ctrl-C; the primary decides
  // when workers stop, so ignore them here.
  process.on('SIGINT', () => {});
  process.on('SIGTERM', () => {});
  process.on('uncaughtException', (err) => log.error({ err }, 'uncaught exception'));
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection'));
  reply({ type: 'started' });
}
