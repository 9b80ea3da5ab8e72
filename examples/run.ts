// npm run example: the echo backends, then `gatehouse serve` on
// examples/config, in the foreground until Ctrl-C.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startEchoBackends, BACKENDS } from './echo-backends.ts';

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
const servers = await startEchoBackends();
process.stderr.write(`echo backends: ${BACKENDS.map((b) => `${b.service} on 127.0.0.1:${b.port}`).join(', ')}\n`);
const gw = spawn(process.execPath, [here('../src/cli/main.ts'), 'serve', '--config-dir', here('./config'), '--admin-address', '127.0.0.1:9901', ...process.argv.slice(2)], { stdio: 'inherit' });
process.stderr.write(`try:
  curl -H 'Host: keystone.cloud.example.test' http://127.0.0.1:8080/v3
  curl -k --resolve glance.cloud.example.test:8443:127.0.0.1 https://glance.cloud.example.test:8443/v2/images
  curl http://127.0.0.1:9901/api/v1/resources
`);
const stop = () => { gw.kill('SIGTERM'); };
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
gw.on('exit', (code) => { for (const s of servers) s.close(); process.exitCode = code ?? 0; });
