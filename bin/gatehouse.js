#!/usr/bin/env node
// The CLI is TypeScript run by Node 24's type stripping; this shim exists
// because npm bin entries must be plain JavaScript files.
import module from 'node:module';
import v8 from 'node:v8';

/**
 * glibc's malloc gives freed memory back to the kernel eagerly; every body
 * buffer then costs fresh page faults, which are very expensive in VMs
 * (measured: 16 KiB bodies at a third of the throughput). `serve` keeps up
 * to 1 GiB of freed malloc memory and grows it 64 MiB at a time instead.
 * glibc reads this only at process start, so serve re-executes itself
 * once with it (same pid). A GLIBC_TUNABLES already set, even empty, is
 * left as it is.
 */
const GLIBC_TUNABLES = 'glibc.malloc.trim_threshold=1073741824:glibc.malloc.top_pad=67108864';
if (process.argv[2] === 'serve' && process.env.GLIBC_TUNABLES === undefined && typeof process.execve === 'function') {
  process.execve(process.execPath, [process.execPath, ...process.execArgv, ...process.argv.slice(1)], { ...process.env, GLIBC_TUNABLES });
}

// Type stripping loads a WebAssembly compiler into every thread that
// imports a .ts file, about 30 MB each. With the compile cache, stripped
// modules are read back from disk and the compiler is never loaded; the
// environment variable carries the cache to the worker threads.
const cache = module.enableCompileCache?.();
if (cache?.directory !== undefined) process.env.NODE_COMPILE_CACHE = cache.directory;

// Route regexes come from route authors in many namespaces. With this
// flag V8 moves a regex that backtracks excessively to its linear-time
// engine, so one catastrophic pattern cannot stall the data plane
// (translate refuses the constructs that engine cannot run). Set before
// any route regex is compiled.
v8.setFlagsFromString('--enable-experimental-regexp-engine-on-excessive-backtracks');

await import('../src/cli/main.ts');
