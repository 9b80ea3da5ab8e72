// Messages between the control plane (cluster primary) and the data-plane
// workers, over node:cluster IPC with the 'advanced' (structured clone)
// serialization. The IR travels as one JSON string, serialised once for
// all workers: with the default JSON channel every worker.send() would
// stringify the whole IR again (about 10 ms per worker per 1,000 routes),
// and a string crosses the advanced channel as a plain copy. Each apply
// carries a sequence number so answers are matched to requests.
import type { ApplyResult } from '../dataplane/dataplane.ts';

export type ToWorker =
  | { type: 'apply'; seq: number; irJson: string }
  | { type: 'stats'; seq: number }
  | { type: 'close' };

export interface WorkerStats {
  pid: number;
  /** Requests the worker's listeners received since it started. */
  requests: number;
  /** Sequence number of the last IR it applied. */
  appliedSeq: number;
}

export type FromWorker =
  | { type: 'started' }
  | { type: 'applied'; seq: number; result?: ApplyResult; error?: string }
  | { type: 'stats'; seq: number; stats: WorkerStats };

/** The argument that makes bin/gatehouse.js run a data-plane worker instead of a command. */
export const WORKER_COMMAND = 'data-plane-worker';

/**
 * glibc's malloc gives freed memory back to the kernel eagerly; every body
 * buffer then costs fresh page faults, which are very expensive in VMs
 * (measured: 16 KiB bodies at a third of the throughput). Workers keep
 * up to 1 GiB of freed heap and grow it 64 MiB at a time instead. A
 * GLIBC_TUNABLES already in the environment (even empty) is left as it is.
 */
export const DEFAULT_GLIBC_TUNABLES = 'glibc.malloc.trim_threshold=1073741824:glibc.malloc.top_pad=67108864';

/**
 * V8's young generation for workers, in MiB per semi-space. V8 sizes it
 * from the heap limit (several times larger here); a proxy's garbage is
 * almost all per-request and short-lived, and a small nursery that stays
 * in cache made scavenges cheaper: measured at 8 vs the default, p99
 * 4.3-4.7 ms vs 6.1-9.3 ms (small body) and 6.5-6.9 ms vs 15-19 ms (16 KiB),
 * req/s unchanged or better, RSS of the process tree ~85 MiB lower.
 * 4 was worse (p99 13-14 ms). A --max-semi-space-size already given to
 * node (command line or NODE_OPTIONS) is left as it is.
 */
export const DEFAULT_MAX_SEMI_SPACE_MB = 8;

/** The node options a worker starts with: the primary's, plus the semi-space default. */
export function workerExecArgv(execArgv: readonly string[], nodeOptions: string | undefined): string[] {
  const given = (s: string) => s.includes('--max-semi-space-size') || s.includes('--max_semi_space_size');
  if (execArgv.some(given) || (nodeOptions !== undefined && given(nodeOptions))) return [...execArgv];
  return [...execArgv, `--max-semi-space-size=${DEFAULT_MAX_SEMI_SPACE_MB}`];
}
