#!/usr/bin/env node
// The CLI is TypeScript run by Node 24's type stripping; this shim exists
// because npm bin entries must be plain JavaScript files.
import fs from 'node:fs';
import module from 'node:module';
import { fileURLToPath } from 'node:url';

/**
 * How `serve` and `proxy` run, set at process start because neither glibc
 * nor V8 can change them later: they re-execute themselves once with them
 * (same pid). (`proxy` is the same data plane; without them it measured
 * 173 MiB idle with 5,000 routes and one worker, its main thread's young
 * generation at 64 MiB.)
 * What the user already set (GLIBC_TUNABLES, even empty; a semi-space size
 * on the command line or in NODE_OPTIONS) is left as it is.
 *
 * GLIBC_TUNABLES: glibc's malloc gives freed memory back to the kernel
 * eagerly; every body buffer then costs fresh page faults, which are very
 * expensive in VMs (measured: 16 KiB bodies at a third of the throughput).
 * Keeping up to 64 MiB of freed memory, and growing 16 MiB at a time,
 * keeps the steady state free of page faults; more (1 GiB was tried) also
 * keeps whatever a config load once used, ~40 MB more with 5,000 routes.
 * (Two arenas instead of one per thread saved ~15 MB with 5,000 routes,
 * but cost ~10% on 16 KiB bodies: the threads then share one.)
 *
 * --max-semi-space-size: V8 sizes the young generation from the heap
 * limit, up to 2 x 64 MiB here, and keeps it once a config load has grown
 * it. A proxy's garbage is per-request and short-lived; 8 MiB semi-spaces
 * stay in cache and made scavenges cheaper (p99 4.3-4.7 ms vs 6.1-9.3 ms on
 * small bodies), and save ~110 MB. Worker threads get the same through
 * their resourceLimits. (2 MiB on a main thread that serves no traffic
 * saved ~15 MB more with 5,000 routes, but a new route's p99 to first 200
 * went from 40-48 to 52-60 ms: reloads then promote more.)
 */
const GLIBC_TUNABLES = 'glibc.malloc.trim_threshold=67108864:glibc.malloc.top_pad=16777216';
const SEMI_SPACE = '--max-semi-space-size=8';
const semiSpaceGiven = (s) => s.includes('--max-semi-space-size') || s.includes('--max_semi_space_size');
if ((process.argv[2] === 'serve' || process.argv[2] === 'proxy') && typeof process.execve === 'function') {
  const env = { ...process.env };
  const execArgv = [...process.execArgv];
  if (env.GLIBC_TUNABLES === undefined) env.GLIBC_TUNABLES = GLIBC_TUNABLES;
  if (!execArgv.some(semiSpaceGiven) && !semiSpaceGiven(env.NODE_OPTIONS ?? '')) execArgv.push(SEMI_SPACE);
  if (env.GLIBC_TUNABLES !== process.env.GLIBC_TUNABLES || execArgv.length !== process.execArgv.length) {
    process.execve(process.execPath, [process.execPath, ...execArgv, ...process.argv.slice(1)], env);
  }
}

// Type stripping loads a WebAssembly compiler into every thread that
// imports a .ts file, about 25 MB each. With the compile cache, stripped
// modules are read back from disk and the compiler is never loaded; the
// environment variable carries the cache to the worker threads.
// The image ships a cache made when it was built (compile-cache/ next to
// bin/, scripts/warm-compile-cache.mjs), read-only: a pod's /tmp is new
// at every start, so a cache there would always be cold. Run as another
// uid than the one that made it, node refuses that directory, and the
// cache goes to the default place (os.tmpdir()) as it does outside the image.
const COMPILE_CACHE_STATUS = module.constants?.compileCacheStatus;
let cache;
if (process.env.NODE_COMPILE_CACHE === undefined) {
  const baked = fileURLToPath(new URL('../compile-cache', import.meta.url));
  if (fs.existsSync(baked)) cache = module.enableCompileCache?.(baked);
  if (cache?.status !== COMPILE_CACHE_STATUS?.ENABLED) cache = module.enableCompileCache?.();
  // Only the directory given, not the one returned when the environment
  // already named one (that is a subdirectory per node version and V8
  // flags, which a thread would nest another one under).
  if (cache?.status === COMPILE_CACHE_STATUS?.ENABLED && cache.directory !== undefined) process.env.NODE_COMPILE_CACHE = cache.directory;
}

await import('../src/cli/main.ts');
