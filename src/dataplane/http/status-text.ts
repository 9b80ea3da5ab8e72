// Reason phrases for the status lines Gatehouse writes, from node:http.
// Taken with require(): importing node:http as an ES module evaluates
// every lazy export it has, which loads node's bundled undici (its
// WebSocket) into each thread: ~2.7 MiB of heap per worker for nothing.
import { createRequire } from 'node:module';

export const STATUS_CODES: Readonly<Record<number, string | undefined>> = (
  createRequire(import.meta.url)('node:http') as typeof import('node:http')
).STATUS_CODES;
