// gatehouse convert FILE...: Envoy Gateway's ClientTrafficPolicy and
// BackendTrafficPolicy rewritten as Gatehouse's, printed as YAML on
// stdout; every other document is printed as it was. Each field that
// cannot be carried is named on stderr with why (never dropped silently),
// and the exit code is 2 when there was one, so a script notices; a
// converted object the schema refuses is an error (1). `-` reads stdin.
import fs from 'node:fs';
import jsyaml from 'js-yaml';
import { convertEnvoyGatewayPolicy, isEnvoyGatewayPolicy } from '../convert/envoy-gateway.ts';
import { validateObject } from '../api/validate.ts';
import { describeObject } from '../api/validate.ts';

/** Largest input read, per file: policies are small, this is far above any real set. */
const MAX_INPUT_BYTES = 16 * 1024 * 1024;

export function convert(files: string[], out: (s: string) => void = (s) => process.stdout.write(s), err: (s: string) => void = (s) => process.stderr.write(s)): number {
  let dropped = 0;
  let failed = 0;
  const docs: unknown[] = [];
  for (const file of files) {
    let text: string;
    try {
      const fd = file === '-' ? 0 : fs.openSync(file, 'r');
      const buf = Buffer.alloc(MAX_INPUT_BYTES + 1);
      let n = 0;
      for (let r; (r = fs.readSync(fd, buf, n, buf.length - n, null)) > 0;) n += r;
      if (fd !== 0) fs.closeSync(fd);
      if (n > MAX_INPUT_BYTES) throw new Error(`larger than ${MAX_INPUT_BYTES} bytes`);
      text = buf.toString('utf8', 0, n);
      for (const d of jsyaml.loadAll(text, undefined, { schema: jsyaml.CORE_SCHEMA })) if (d != null) docs.push(d);
    } catch (e) {
      err(`error: ${file}: ${(e as Error).message}\n`);
      failed++;
    }
  }
  const written: unknown[] = [];
  for (const d of docs) {
    if (!isEnvoyGatewayPolicy(d)) {
      written.push(d);
      continue;
    }
    const { object, notCarried } = convertEnvoyGatewayPolicy(d);
    const name = describeObject(object.kind, object.metadata.namespace, object.metadata.name);
    for (const n of notCarried) {
      err(`not carried: ${name}: ${n.field}: ${n.reason}\n`);
      dropped++;
    }
    const v = validateObject(object);
    for (const e of v.errors) {
      err(`error: ${name}: ${e.field}: ${e.reason}\n`);
      failed++;
    }
    written.push(object);
  }
  out(written.map((d) => jsyaml.dump(d, { noRefs: true, lineWidth: -1 })).join('---\n'));
  return failed ? 1 : dropped ? 2 : 0;
}
