// Where a proxy's CPU goes, from `perf record -g` samples: each sample is
// put in one bucket by its leaf frame and, for kernel samples, the system
// call it happened under (a loopback write also delivers to the peer's
// socket inside the writer's system call, so "write" includes that). Used
// to compare Gatehouse's time per request with nginx's, bucket by bucket.
//
//   perf record -F 2000 -g -p PID -o perf.data   (node with --perf-basic-prof, for JS names)
//   perf script -i perf.data -F tid,ip,sym,dso | node bench/perf-buckets.ts [US_PER_REQUEST]
//
// With US_PER_REQUEST (the process's CPU per request, from /proc), each
// bucket is also printed in microseconds per request.
import { createInterface } from 'node:readline';

interface Frame { sym: string; dso: string }

const GC = /Scavenge|MarkCompact|ConcurrentMarking|Heap::|GCTracer|MinorMark|Sweeper|IncrementalMarking|MemoryAllocator/;

function jsBucket(sym: string, builtin: boolean): string {
  const who = sym.includes('file:///') && sym.includes('/src/') ? 'Gatehouse code (src/)' : sym.includes('node:') ? 'node internals (streams, net, events)' : 'other JS';
  return `JS: ${who}${builtin ? ', builtins it calls (strings, regexps, maps)' : ''}`;
}

function bucket(stack: readonly Frame[]): string {
  const leaf = stack[0];
  if (leaf.dso.includes('[kernel')) {
    for (const { sym } of stack) {
      if (/sys_write|do_writev|vfs_write|tcp_sendmsg|sys_sendto|sys_sendmsg/.test(sym)) return 'kernel: write (with loopback delivery to the peer)';
      if (/sys_read|vfs_read|do_readv|tcp_recvmsg|sys_recv/.test(sym)) return 'kernel: read';
      if (sym.includes('epoll')) return 'kernel: epoll';
      if (sym.includes('futex')) return 'kernel: futex';
      if (/page_fault|exc_page/.test(sym)) return 'kernel: page faults';
    }
    return 'kernel: other (softirq, scheduler, timers)';
  }
  if (stack.some((f) => GC.test(f.sym))) return 'V8 garbage collection';
  if (leaf.sym.includes('llhttp')) return 'llhttp (the C parser itself)';
  if (leaf.sym.startsWith('JS:')) return jsBucket(leaf.sym, false);
  if (leaf.sym.startsWith('Builtins_') || leaf.sym.startsWith('RegExp')) {
    const caller = stack.slice(1).find((f) => f.sym.startsWith('JS:'));
    return caller === undefined ? 'V8 builtins outside JS' : jsBucket(caller.sym, true);
  }
  if (/^uv_|^uv__/.test(leaf.sym)) return 'libuv';
  if (leaf.dso.includes('libc')) return /malloc|free|memcpy|memmove|memset/.test(leaf.sym) ? 'libc: malloc, memcpy' : 'libc: system call wrappers, other';
  if (leaf.dso.includes('vdso')) return 'clock reads (vdso)';
  if (leaf.sym.startsWith('node::') || leaf.sym.startsWith('v8::')) {
    // node's parser and stream glue calling into JS: MakeCallback, handle scopes, async context, property lookups of the callbacks.
    if (stack.some((f) => /MakeCallback|Function::Call|Execution::Call/.test(f.sym))) return 'C++ <-> JS transitions (MakeCallback and around it)';
    return leaf.sym.startsWith('node::') ? 'node C++ (stream and parser glue)' : 'V8 runtime in C++ (strings and arrays for the parser, lookups)';
  }
  if (leaf.dso.includes('nginx')) return 'nginx itself (user space)';
  return 'other user space';
}

async function main(): Promise<void> {
  const usPerRequest = process.argv[2] === undefined ? null : Number(process.argv[2]);
  const counts = new Map<string, number>();
  let total = 0;
  let stack: Frame[] = [];
  const flush = (): void => {
    if (stack.length === 0) return;
    const b = bucket(stack);
    counts.set(b, (counts.get(b) ?? 0) + 1);
    total++;
    stack = [];
  };
  for await (const line of createInterface({ input: process.stdin })) {
    if (line === '') { flush(); continue; }
    if (!/^\s/.test(line)) continue; // the sample's header line (tid)
    const m = /^\s*[0-9a-f]+\s+(.*)\s+\((.*)\)$/.exec(line);
    if (m !== null) stack.push({ sym: m[1], dso: m[2] });
  }
  flush();
  for (const [name, n] of [...counts].sort((a, b) => b[1] - a[1])) {
    const share = n / total;
    const us = usPerRequest === null ? '' : `  ${(share * usPerRequest).toFixed(1).padStart(5)} us/request`;
    process.stdout.write(`${(100 * share).toFixed(1).padStart(5)}%${us}  ${name}\n`);
  }
  process.stdout.write(`${total} samples\n`);
}

await main();
