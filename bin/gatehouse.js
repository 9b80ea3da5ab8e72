#!/usr/bin/env node
// The CLI is TypeScript run by Node 24's type stripping; this shim only
// exists because npm bin entries must be plain JavaScript files.
import '../src/cli/main.ts';
