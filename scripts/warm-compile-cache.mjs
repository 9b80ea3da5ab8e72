// node scripts/warm-compile-cache.mjs DIR: fills node's compile cache in DIR
// with every module under src/, the way they are laid out where this runs.
// The Containerfile runs it, as the image's user, so that a new pod reads
// its modules' stripped types from the image: a thread that misses the
// cache loads node's TypeScript compiler (WebAssembly, ~25 MB of resident
// memory for the life of the thread), and a provisioned proxy's /tmp is a
// fresh emptyDir at every start, where the cache is always cold.
//
// Importing a module compiles it, and what it imports, before it runs;
// the cache entry is made at compile time. A module that fails when run
// here (a thread's entry point outside its thread, or in a thread without
// its setup) is still cached, so its failure is ignored. src/cli/main.ts runs the CLI when evaluated: it is
// given `version` to run.
//
// Node files its cache under a tag that includes a hash of the V8 flags a
// thread starts with, and importing src/dataplane/regex-safety.ts sets a
// flag: the main thread starts before it is set, the data-plane and
// access-log threads after. So the modules are compiled twice, here and
// then in a worker thread started after the imports.
// (test/deploy/image.test.ts checks that serve then compiles nothing anew.)
import fs from 'node:fs';
import module from 'node:module';
import path from 'node:path';
import { Worker } from 'node:worker_threads';

const dir = process.argv[2];
if (dir === undefined) {
  process.stderr.write('usage: node scripts/warm-compile-cache.mjs DIR\n');
  process.exit(2);
}
const enabled = module.enableCompileCache(dir);
if (enabled.status !== module.constants.compileCacheStatus.ENABLED) {
  process.stderr.write(`warm-compile-cache: cannot use ${dir}: ${enabled.message ?? `status ${enabled.status}`}\n`);
  process.exit(1);
}

const src = path.join(import.meta.dirname, '..', 'src');
const main = path.join(src, 'cli', 'main.ts');
const modules = fs.readdirSync(src, { recursive: true, encoding: 'utf8' })
  .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))
  .map((f) => path.join(src, f))
  .filter((f) => f !== main)
  .sort();

/** Imports each module, ignoring what fails when run; returns how many failed. Also the worker's body. */
async function importAll(files) {
  let failed = 0;
  for (const file of files) {
    try {
      await import(file);
    } catch {
      failed++;
    }
  }
  return failed;
}

const failedHere = await importAll(modules);
process.argv = [process.argv[0], main, 'version'];
await import(main);
module.flushCompileCache();

// The worker inherits the cache directory from the environment.
const failedInWorker = await new Promise((resolve, reject) => {
  const worker = new Worker(`
    import module from 'node:module';
    import { parentPort, workerData } from 'node:worker_threads';
    ${importAll.toString()}
    const failed = await importAll(workerData.modules);
    module.flushCompileCache();
    parentPort.postMessage(failed);`, { eval: true, workerData: { modules }, env: { ...process.env, NODE_COMPILE_CACHE: dir } });
  worker.once('message', (failed) => {
    worker.terminate().then(() => resolve(failed), reject);
  });
  worker.once('error', reject);
});
process.stdout.write(`warm-compile-cache: ${modules.length + 1} modules compiled into ${dir} on the main thread (${failedHere} failed when run, as thread entry points do), ${modules.length} in a worker thread (${failedInWorker} failed)\n`);
process.exit(0);
