// gatehouse controller's flags: defaults, what comes from the pod's
// environment, and a clear refusal of each bad value.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CONTROLLER_DEFAULTS, parseControllerArgs, type ControllerCommand } from '../../src/cli/controller-args.ts';

function parsed(args: string[], env: NodeJS.ProcessEnv = {}): ControllerCommand {
  const r = parseControllerArgs(args, env);
  assert.equal(typeof r, 'object', String(r));
  return r as ControllerCommand;
}

test('defaults: every address a flag, the namespace from the pod, the proxy image from the environment', () => {
  const cmd = parsed([], { POD_NAMESPACE: 'gh', GATEHOUSE_PROXY_IMAGE: 'registry.example/gatehouse:1.2.3' });
  assert.equal(cmd.adminAddress, CONTROLLER_DEFAULTS.adminAddress);
  assert.equal(cmd.healthAddress, '0.0.0.0:8081');
  assert.equal(cmd.configAddress, '0.0.0.0:18000');
  assert.equal(cmd.controllerNamespace, 'gh');
  assert.equal(cmd.proxyImage, 'registry.example/gatehouse:1.2.3');
  assert.equal(cmd.leaseDurationMs, 15_000);
  assert.equal(cmd.namespaces, undefined);
  assert.equal(parsed([]).controllerNamespace, 'gatehouse-system');
  assert.equal(parsed(['--controller-namespace', 'x'], { POD_NAMESPACE: 'gh' }).controllerNamespace, 'x');
});

test('port 0 and namespace restrictions are taken', () => {
  const cmd = parsed(['--admin-address', '127.0.0.1:0', '--config-address', ':0', '--namespaces', 'openstack, infra', '--lease-duration', '6s']);
  assert.equal(cmd.adminAddress, '127.0.0.1:0');
  assert.equal(cmd.configAddress, ':0');
  assert.deepEqual(cmd.namespaces, ['openstack', 'infra']);
  assert.equal(cmd.leaseDurationMs, 6_000);
  assert.equal(parsed(['--namespace-selector', 'gatehouse.dev/watch=true']).namespaceSelector, 'gatehouse.dev/watch=true');
});

test('each bad value is refused with the flag named', () => {
  const cases: [string[], RegExp][] = [
    [['--namespaces', 'a', '--namespace-selector', 'x=y'], /cannot both/],
    [['--namespaces', 'Bad_NS'], /--namespaces .*Bad_NS/],
    [['--health-address', 'nowhere'], /--health-address wants HOST:PORT/],
    [['--lease-duration', '1s'], /--lease-duration .*at least 3s/],
    [['--lease-duration', 'soon'], /--lease-duration/],
    [['--config-secret-name', 'Not A Name'], /--config-secret-name/],
    [['--no-such-flag'], /no-such-flag/],
  ];
  for (const [args, message] of cases) {
    const r = parseControllerArgs(args, {});
    assert.equal(typeof r, 'string', `${args.join(' ')} was taken`);
    assert.match(r as string, message);
  }
});
