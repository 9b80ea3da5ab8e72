// node bench/lib/strip-types.mjs REPO OUT: copies REPO's src/ and bin/ to
// OUT as plain JavaScript (types stripped by node's own stripper, `.ts`
// import specifiers made `.js`), with package.json and a node_modules
// link. An experiment, not a build: it measures what loading .ts files
// costs at run time (node loads its TypeScript stripper, a wasm module,
// into every thread that imports one; bench/RESULTS.md).
import fs from 'node:fs';
import path from 'node:path';
import { stripTypeScriptTypes } from 'node:module';
const [from, to] = process.argv.slice(2);
fs.rmSync(to, { recursive: true, force: true });
const fix = (code) => code.replace(/((?:from|import\(|import|new URL\()\s*['"])([^'"]+)\.ts(['"])/g, '$1$2.js$3');
function walk(dir) {
  for (const e of fs.readdirSync(path.join(from, dir), { withFileTypes: true })) {
    const rel = path.join(dir, e.name);
    if (e.isDirectory()) { walk(rel); continue; }
    const src = fs.readFileSync(path.join(from, rel), 'utf8');
    const out = path.join(to, rel.replace(/\.ts$/, '.js'));
    fs.mkdirSync(path.dirname(out), { recursive: true });
    fs.writeFileSync(out, rel.endsWith('.ts') ? fix(stripTypeScriptTypes(src)) : (rel.endsWith('.js') || rel.endsWith('.mjs') ? fix(src) : src));
  }
}
walk('src'); walk('bin');
fs.copyFileSync(path.join(from, 'package.json'), path.join(to, 'package.json'));
fs.symlinkSync(fs.realpathSync(path.join(from, 'node_modules')), path.join(to, 'node_modules'));
