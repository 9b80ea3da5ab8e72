// gatehouse: the command line. Subcommands are small modules of their own.
import { parseArgs } from 'node:util';
import { DEFAULT_SHUTDOWN_DELAY_MS, serve } from './serve.ts';
import { OBSERVABILITY_FLAG_OPTIONS, OBSERVABILITY_USAGE, parseObservabilityFlags } from './observability-flags.ts';
import { validate } from './validate.ts';
import { convert } from './convert.ts';
import { EXPLAIN_USAGE, runExplain } from './explain.ts';
import { VERSION } from './version.ts';
import os from 'node:os';
import { parseDuration } from '../api/durations.ts';
import { DEFAULT_LOADER_LIMITS, resolveLoaderLimits, type LoaderLimits } from '../providers/file/limits.ts';
import { formatDuration, limitFlagOptions, limitUsage, parseLimitFlags, parseWorkersFlag } from './limit-flags.ts';
import { cgroupCpuLimit, usableCores } from './cpu-quota.ts';
import { parseProxyArgs, proxy, PROXY_USAGE } from './proxy.ts';
import { CONTROLLER_USAGE, parseControllerArgs } from './controller-args.ts';

/** The file provider's limits, each a serve flag. */
const LOADER_FLAGS: readonly { flag: string; field: keyof LoaderLimits; help: string }[] = [
  { flag: 'config-max-file-bytes', field: 'maxFileBytes', help: 'largest config file read, in bytes' },
  { flag: 'config-max-dir-bytes', field: 'maxDirectoryBytes', help: 'most bytes read from the directory in one load' },
  { flag: 'config-max-files', field: 'maxFiles', help: 'most config files read, the first by name' },
  { flag: 'config-max-depth', field: 'maxDepth', help: 'deepest nesting of maps and lists in a document' },
  { flag: 'config-max-values', field: 'maxValues', help: 'most values in one document, YAML aliases expanded' },
  { flag: 'config-settle-ms', field: 'settleMs', help: 'ms a file rewritten in place must stay unchanged before use' },
];

function loaderUsage(): string {
  return LOADER_FLAGS.map(({ flag, field, help }) => `  --${flag.padEnd(28)}${help}; default ${DEFAULT_LOADER_LIMITS[field]}`).join('\n');
}

/** The loader flags given, as overrides; a string naming the bad flag when one does not parse. */
export function parseLoaderFlags(values: Record<string, unknown>): Partial<LoaderLimits> | string {
  const limits: Partial<LoaderLimits> = {};
  for (const { flag, field } of LOADER_FLAGS) {
    const raw = values[flag];
    if (typeof raw !== 'string') continue;
    if (!/^\d+$/.test(raw)) return `--${flag} wants a whole number, not ${raw}`;
    limits[field] = Number(raw);
  }
  try {
    resolveLoaderLimits(limits);
  } catch (e) {
    return (e as Error).message;
  }
  return limits;
}

const USAGE = `usage: gatehouse <command> [options]

commands:
  serve      run the gateway from a directory of Kubernetes YAML (standalone mode)
  controller run as a Kubernetes Gateway API controller that provisions its proxies (Kubernetes mode)
  proxy      run one Gateway's data plane, configured by the controller (Kubernetes mode)
  validate   check a directory of YAML and print every problem, then exit
  convert    rewrite Envoy Gateway ClientTrafficPolicy/BackendTrafficPolicy files as Gatehouse's
  explain    show which listener, route, rule and backend a request would reach, and why
  version    print the version

gatehouse serve --config-dir DIR [--admin-address HOST:PORT] [--address-pool CIDR] [--workers N] [--log-level LEVEL]
  --config-dir DIR        directory of *.yaml, *.yml, *.json files, reloaded on change
  --admin-address ADDR    admin API (readyz, resources, errors, config); default 127.0.0.1:9901;
                          an address that is not loopback needs --admin-token-file
  --admin-token-file FILE file holding the admin API's bearer token (at least 32 bytes, mode 0600
                          or stricter); every request but /healthz and /readyz must then carry
                          Authorization: Bearer <token>
  --admin-allowed-host NAME
                          a Host name the admin API answers to, besides IP addresses and
                          localhost (repeatable); other names get 403 (DNS rebinding)
  --address-pool CIDR     hand each Gateway an IPv4 address from CIDR, as MetalLB would;
                          without it every Gateway listens on all interfaces
  --workers N             data-plane worker threads sharing the listeners; default one per
                          core on Linux and FreeBSD, else 0; 0 serves from the main thread
  --log-level LEVEL       trace, debug, info, warn, error; default info
  --shutdown-delay DUR    after SIGTERM/SIGINT, /readyz answers 503 and listeners keep accepting
                          this long before they stop and drain (--drain-timeout); default ${formatDuration(DEFAULT_SHUTDOWN_DELAY_MS)}

backend endpoints (serve): loopback is allowed, link-local (169.254.0.0/16, fe80::/10) refused,
the gateway's own listeners and admin API always refused
  --deny-loopback-endpoints   refuse 127.0.0.0/8 and ::1 endpoints too (as Kubernetes mode does)
  --allow-link-local-endpoints
                              allow link-local endpoints (cloud metadata lives there)

limits (serve): durations as 10s, 1m30s, 500ms; counts as whole numbers
${limitUsage()}

config directory limits (serve): a file beyond one is refused, reported, and keeps its last objects
${loaderUsage()}

${OBSERVABILITY_USAGE}

${CONTROLLER_USAGE}

${PROXY_USAGE}

gatehouse validate --config-dir DIR

gatehouse convert FILE... (- for stdin)
  Envoy Gateway ClientTrafficPolicy and BackendTrafficPolicy as Gatehouse's, on stdout (other
  documents as they are); each field that cannot be carried is named on stderr, and the exit
  code is then 2 (1: an input or converted object is invalid)
${EXPLAIN_USAGE}
`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'serve': {
      const { values } = parseArgs({
        args: rest,
        options: {
          'config-dir': { type: 'string' },
          'admin-address': { type: 'string', default: '127.0.0.1:9901' },
          'admin-token-file': { type: 'string' },
          'admin-allowed-host': { type: 'string', multiple: true },
          'shutdown-delay': { type: 'string' },
          'address-pool': { type: 'string' },
          'log-level': { type: 'string', default: 'info' },
          workers: { type: 'string' },
          'deny-loopback-endpoints': { type: 'boolean' },
          'allow-link-local-endpoints': { type: 'boolean' },
          ...OBSERVABILITY_FLAG_OPTIONS,
          ...limitFlagOptions(),
          ...Object.fromEntries(LOADER_FLAGS.map(({ flag }) => [flag, { type: 'string' as const }])),
        },
        strict: true,
      });
      if (!values['config-dir']) return usage('serve needs --config-dir');
      const workers = parseWorkersFlag(values.workers, usableCores(os.availableParallelism(), cgroupCpuLimit()));
      if (typeof workers === 'string') return usage(workers);
      const limits = parseLimitFlags(values);
      if (typeof limits === 'string') return usage(limits);
      const loaderLimits = parseLoaderFlags(values);
      if (typeof loaderLimits === 'string') return usage(loaderLimits);
      const observability = parseObservabilityFlags(values);
      if (typeof observability === 'string') return usage(observability);
      const rawDelay = values['shutdown-delay'];
      const shutdownDelayMs = rawDelay === undefined ? DEFAULT_SHUTDOWN_DELAY_MS : rawDelay === '0' ? 0 : parseDuration(rawDelay);
      if (shutdownDelayMs === null) return usage(`--shutdown-delay wants a duration such as 5s or 500ms, not ${rawDelay}`);
      const allowedHosts = values['admin-allowed-host'] ?? [];
      const badHost = allowedHosts.find((h) => !/^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9.])?$/.test(h));
      if (badHost !== undefined) return usage(`--admin-allowed-host wants a DNS name without port, not ${badHost}`);
      return serve({
        ...observability,
        workers,
        limits,
        loaderLimits,
        endpoints: {
          ...(values['deny-loopback-endpoints'] ? { allowLoopback: false } : {}),
          ...(values['allow-link-local-endpoints'] ? { allowLinkLocal: true } : {}),
        },
        shutdownDelayMs,
        configDir: values['config-dir'],
        adminAddress: values['admin-address']!,
        adminTokenFile: values['admin-token-file'] ?? null,
        adminAllowedHosts: allowedHosts,
        addressPool: values['address-pool'] ?? null,
        logLevel: values['log-level']!,
      });
    }
    case 'controller': {
      const cmd = parseControllerArgs(rest);
      if (typeof cmd === 'string') return usage(cmd);
      // Loaded here: the Kubernetes client is for this command alone.
      const { controller } = await import('./controller.ts');
      return controller(cmd);
    }
    case 'proxy': {
      const cmd = parseProxyArgs(rest);
      if (typeof cmd === 'string') return usage(cmd);
      return proxy(cmd);
    }
    case 'validate': {
      const { values } = parseArgs({ args: rest, options: { 'config-dir': { type: 'string' } }, strict: true });
      if (!values['config-dir']) return usage('validate needs --config-dir');
      return validate(values['config-dir']);
    }
    case 'convert': {
      if (rest.length === 0) return usage('convert needs files (or - for stdin)');
      return convert(rest);
    }
    case 'explain': {
      const code = runExplain(rest, (s) => process.stdout.write(s), (s) => process.stderr.write(s));
      return typeof code === 'string' ? usage(code) : code;
    }
    case 'version':
    case '--version':
      process.stdout.write(`gatehouse ${VERSION}\n`);
      return 0;
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      process.stdout.write(USAGE);
      return 0;
    default:
      return usage(`unknown command ${command}`);
  }
}

function usage(problem: string): number {
  process.stderr.write(`gatehouse: ${problem}\n\n${USAGE}`);
  return 2;
}

main(process.argv.slice(2)).then((code) => {
  if (code !== -1) process.exitCode = code;
}, (e: unknown) => {
  process.stderr.write(`gatehouse: ${e instanceof Error ? e.message : String(e)}\n`);
  // Exit now: data-plane threads or sockets started before the failure would keep the process alive.
  process.exit(1);
});
