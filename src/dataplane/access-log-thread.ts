// The access log's writer thread (see access-log.ts): the one thread that
// may block on the sink. It opens the target itself (opening a FIFO
// blocks until a reader comes), writes each batch it is handed with
// blocking writes, and answers each one, written or not, so that the
// producer knows how much it may still hand over.
import fs from 'node:fs';
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import type { AccessLogAck, AccessLogBatch } from './access-log.ts';

/** Writes to a pipe up to this size are atomic (POSIX PIPE_BUF on Linux): lines on stdout never interleave with other writers'. */
const PIPE_BUF = 4096;

const { target } = (workerData ?? {}) as { target?: unknown };
// Started any other way (scripts/warm-compile-cache.mjs loads every module in a thread), it does nothing.
if (typeof target !== 'string') throw new Error('the access-log thread runs as a thread of gatehouse, given its target');
let fd = -1;
let openError: string | null = null;
try {
  fd = target === 'stdout' ? 1 : fs.openSync(target, 'a', 0o640);
} catch (err) {
  openError = (err as Error).message;
}

function writeAll(text: string): void {
  const data = Buffer.from(text);
  if (target !== 'stdout') {
    let off = 0;
    while (off < data.length) off += fs.writeSync(fd, data, off);
    return;
  }
  // Whole lines, at most PIPE_BUF bytes a write where lines allow.
  let start = 0;
  while (start < data.length) {
    let end = Math.min(start + PIPE_BUF, data.length);
    if (end < data.length) {
      const nl = data.lastIndexOf(0x0a, end - 1);
      if (nl >= start) end = nl + 1;
    }
    let off = start;
    while (off < end) off += fs.writeSync(fd, data, off, end - off);
    start = end;
  }
}

function serve(port: MessagePort): void {
  port.on('message', (batch: AccessLogBatch) => {
    let ack: AccessLogAck;
    if (fd === -1) {
      ack = { bytes: batch.bytes, lines: batch.lines, written: false, error: openError ?? 'not open' };
    } else {
      try {
        writeAll(batch.text);
        ack = { bytes: batch.bytes, lines: batch.lines, written: true };
      } catch (err) {
        ack = { bytes: batch.bytes, lines: batch.lines, written: false, error: (err as Error).message };
      }
    }
    port.postMessage(ack);
  });
}

parentPort!.on('message', (m: { type: 'connect'; port: MessagePort } | { type: 'close' }) => {
  if (m.type === 'connect') serve(m.port);
  else process.exit(0);
});
parentPort!.postMessage({ type: 'opened', error: openError });
