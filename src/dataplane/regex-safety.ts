// Route regexes come from route authors in many namespaces, and a request
// path or header is whatever a client sends. V8's backtracking engine
// takes exponential time on patterns such as `(a+)+$` (a 32-character
// input blocked a thread for 23 s). With this flag V8 moves a regex that
// backtracks excessively to its linear-time engine, so one catastrophic
// pattern cannot stall the data plane; translate refuses the constructs
// that engine cannot run (backreferences, lookaround), so every accepted
// regex has the fallback.
//
// V8 flags are per process and must be set before the regex runs. The
// module that compiles route regexes (http/match.ts) imports this one, so
// every way of starting a data plane (the CLI, npm scripts, the example,
// a worker thread, a test that builds a DataPlane) gets the flag with no
// launch script having to remember it.
import v8 from 'node:v8';

export const LINEAR_FALLBACK_FLAG = '--enable-experimental-regexp-engine-on-excessive-backtracks';

v8.setFlagsFromString(LINEAR_FALLBACK_FLAG);
