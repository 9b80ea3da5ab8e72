// gatehouse explain: which listener, route, rule and backend a request
// would reach with the config in a directory, and why the others did not.
// The directory is loaded and translated as `serve` and `validate` load it;
// the decision is the data plane's (src/explain/explain.ts).
// Exit codes: 0 routed, 1 not routed, 2 bad input.
import fs from 'node:fs';
import { buildSnapshot } from '../api/build-snapshot.ts';
import { CONTROLLER_NAME } from '../control/standalone.ts';
import { explain, type ExplainInput } from '../explain/explain.ts';
import { formatExplain } from '../explain/format.ts';
import { parseExplainRequest } from '../explain/request.ts';
import { GenerationTracker } from '../providers/file/generations.ts';
import { loadDirectory } from '../providers/file/loader.ts';
import { translate } from '../translate/index.ts';

export const EXPLAIN_USAGE = `gatehouse explain --config-dir DIR [--json] [--gateway NS/NAME] [--listener NAME] [--address IP] [--sni NAME] 'METHOD URL [-H "Name: value"]...'
  prints the socket, listener, route hostname, rule and backend the request would reach, why
  every other candidate did not, and the routes the Gateway refused (their status conditions);
  SNI is the URL's host for https; exit 0 routed, 1 not routed, 2 bad input`;

/** The config directory as `serve` would serve it. */
export function explainInputFromDirectory(dir: string): { input: ExplainInput; errors: string[] } {
  const loaded = loadDirectory(dir);
  const objects = new GenerationTracker().stamp(loaded.objects.map((o) => o.object));
  const snap = buildSnapshot(objects);
  const result = translate(snap, {
    controllerName: CONTROLLER_NAME,
    addressing: { pool: null, hostAddress: '0.0.0.0', previous: {} },
  });
  return {
    input: { ir: result.ir, statuses: result.statuses, gateways: snap.gateways, routes: [...snap.httpRoutes, ...snap.grpcRoutes] },
    errors: loaded.errors.filter((e) => e.severity !== 'warning').map((e) => e.message),
  };
}

/** Returns the exit code, or a usage problem as a string. */
export function runExplain(args: string[], out: (s: string) => void, err: (s: string) => void): number | string {
  const parsed = splitArgs(args);
  if (typeof parsed === 'string') return parsed;

  const { values, positionals } = parsed;
  if (!values['config-dir']) return 'explain needs --config-dir';
  if (!isDirectory(values['config-dir'])) return `--config-dir ${values['config-dir']} is not a readable directory`;
  if (positionals.length === 0) return 'explain needs a request, e.g. \'GET https://nova.example/v2.1/servers -H "X-Foo: bar"\'';
  if (values.gateway !== undefined && !/^[^/\s]+\/[^/\s]+$/.test(values.gateway)) return `--gateway wants namespace/name, not ${values.gateway}`;
  // One argument holding the whole request, or the words of it as the shell split them.
  const text = positionals.length === 1 ? positionals[0] : positionals.map(quote).join(' ');
  const req = parseExplainRequest(text, {
    ...(values.gateway !== undefined ? { gateway: values.gateway } : {}),
    ...(values.listener !== undefined ? { listener: values.listener } : {}),
    ...(values.address !== undefined ? { address: values.address } : {}),
    ...(values.sni !== undefined ? { sni: values.sni } : {}),
  });
  if (typeof req === 'string') return `explain: ${req}`;
  const { input, errors } = explainInputFromDirectory(values['config-dir']);
  for (const e of errors) err(`config: ${e}\n`);
  const result = explain(input, req);
  out(values.json ? `${JSON.stringify(result, null, 2)}\n` : formatExplain(result));
  return result.routed ? 0 : 1;
}

const VALUED = new Set(['config-dir', 'gateway', 'listener', 'address', 'sni']);

/**
 * Explain's own flags, anywhere; every other word is the request's, so an
 * unquoted `GET URL -H 'X: y'` works as well as one quoted argument.
 */
function splitArgs(args: string[]): { values: Partial<Record<'config-dir' | 'gateway' | 'listener' | 'address' | 'sni', string>> & { json?: boolean }; positionals: string[] } | string {
  const values: Record<string, string | boolean> = {};
  const positionals: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(a);
    if (m !== null && m[1] === 'json' && m[2] === undefined) values.json = true;
    else if (m !== null && VALUED.has(m[1])) {
      const v = m[2] ?? args[++i];
      if (v === undefined) return `--${m[1]} wants a value`;
      values[m[1]] = v;
    } else if (a === '--') {
      positionals.push(...args.slice(i + 1));
      break;
    } else positionals.push(a);
  }
  return { values, positionals };
}

function isDirectory(dir: string): boolean {
  try {
    return fs.statSync(dir).isDirectory();
  } catch {
    return false;
  }
}

function quote(word: string): string {
  return `'${word.replaceAll("'", `'\\''`)}'`;
}
