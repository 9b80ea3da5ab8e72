#!/usr/bin/env node
// The CLI is TypeScript run by Node 24's type stripping; this shim exists
// because npm bin entries must be plain JavaScript files.
import v8 from 'node:v8';

// Route regexes come from route authors in many namespaces. With this
// flag V8 moves a regex that backtracks excessively to its linear-time
// engine, so one catastrophic pattern cannot stall the data plane
// (translate refuses the constructs that engine cannot run). Set before
// any route regex is compiled.
v8.setFlagsFromString('--enable-experimental-regexp-engine-on-excessive-backtracks');

await import('../src/cli/main.ts');
