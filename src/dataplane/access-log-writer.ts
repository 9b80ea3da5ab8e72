// The main thread's handle on the access log's writer thread
// (access-log-thread.ts): started once per process when access logs are
// on; each data-plane thread gets a port of its own to it (connect()).
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import type { AccessLogOptions } from './access-log.ts';

const ENTRY = new URL('./access-log-thread.ts', import.meta.url);
/** How long close() lets the writer finish what it holds before stopping it. */
const CLOSE_WAIT_MS = 1_000;

export class AccessLogWriter {
  readonly options: AccessLogOptions;
  readonly #worker: Worker;
  /** Settles when the writer has tried to open its target: the error, or null. */
  readonly opened: Promise<string | null>;

  constructor(options: AccessLogOptions) {
    this.options = options;
    this.#worker = new Worker(ENTRY, { workerData: { target: options.target }, resourceLimits: { maxOldGenerationSizeMb: 64 } });
    // It must not keep the process alive, nor stop with its own errors silent.
    this.#worker.unref();
    this.opened = new Promise((resolve) => {
      this.#worker.once('message', (m: { type: 'opened'; error: string | null }) => resolve(m.error));
      this.#worker.once('error', (err) => resolve(err.message));
      this.#worker.once('exit', () => resolve('access log writer exited'));
    });
  }

  /** A new port to the writer, for one data-plane thread (transfer it there). */
  connect(): MessagePort {
    const { port1, port2 } = new MessageChannel();
    this.#worker.postMessage({ type: 'connect', port: port1 }, [port1]);
    return port2;
  }

  /**
   * Stops the writer once it has written what it was handed, or after
   * CLOSE_WAIT_MS. A writer blocked in a write to a sink nobody reads
   * cannot be stopped (the write does not return): it is left, unref'd, to
   * end with the process.
   */
  async close(): Promise<void> {
    const exited = new Promise<void>((resolve) => this.#worker.once('exit', () => resolve()));
    this.#worker.postMessage({ type: 'close' });
    let timer: NodeJS.Timeout | undefined;
    const waited = new Promise<void>((resolve) => { timer = setTimeout(resolve, CLOSE_WAIT_MS); });
    await Promise.race([exited, waited]);
    clearTimeout(timer);
  }
}
