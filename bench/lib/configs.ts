// The configurations both proxies run: the same backend, the same routes,
// written once as Gateway API YAML for Gatehouse and once as nginx.conf.
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { GRPC_HOST, GRPC_METHOD, GRPC_SERVICE } from './grpc-backend.ts';

/**
 * nginx serves HTTP/2 on ports of its own: `http2` on a plain listener
 * makes it HTTP/2 only (prior knowledge), and the HTTP/1.1 scenarios keep
 * their listeners exactly as they were. Gatehouse serves both protocols on
 * each of its listeners.
 */
export const PORTS = { backend: 28080, grpcBackend: 28090, ghHttp: 28081, ghHttps: 28443, ghAdmin: 29901, ngHttp: 28082, ngHttps: 28444, ngH2c: 28083, ngH2: 28445 };
export const SMALL_BODY = 'x'.repeat(64);
export const BIG_BODY_BYTES = 16 * 1024;
export const ROUTES_1K = 1000;
export const RULES_PER_ROUTE = 10;
export const TENANTS = 10;

export interface Paths { root: string; www: string; cert: string; key: string }

export function prepareFiles(root: string): Paths {
  const www = path.join(root, 'www');
  fs.mkdirSync(www, { recursive: true });
  // nginx workers run as another user unless told otherwise.
  fs.chmodSync(root, 0o755);
  fs.writeFileSync(path.join(www, 'small'), SMALL_BODY);
  fs.writeFileSync(path.join(www, 'big'), Buffer.alloc(BIG_BODY_BYTES, 'y'));
  const cert = path.join(root, 'tls.crt');
  const key = path.join(root, 'tls.key');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=bench.test',
    '-addext', 'subjectAltName=DNS:bench.test,DNS:*.bench.test,IP:127.0.0.1', '-keyout', key, '-out', cert], { stdio: 'ignore' });
  return { root, www, cert, key };
}

function nginxPreamble(prefix: string, workers: number): string {
  fs.mkdirSync(prefix, { recursive: true });
  const user = process.getuid?.() === 0 ? 'user root;\n' : '';
  return `${user}worker_processes ${workers};
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${prefix}/body; proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fcgi; uwsgi_temp_path ${prefix}/uwsgi; scgi_temp_path ${prefix}/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 60s;
  default_type application/octet-stream;
`;
}

/** The backend: nginx serving two static files (the small body for every path, 16 KiB at /big). */
/**
 * The backend answers from memory: `return` with the body in the config, so
 * it costs the load core as little as nginx can (no open, stat or sendfile
 * per request, as `try_files` cost). nginx refuses a config token over 4 KiB,
 * so the 16 KiB body is one 2 KiB variable repeated.
 */
export function backendConf(p: Paths): string {
  const prefix = path.join(p.root, 'backend');
  const file = path.join(prefix, 'nginx.conf');
  const chunk = 'y'.repeat(BIG_BODY_BYTES / 8);
  fs.writeFileSync(file, `${nginxPreamble(prefix, 1)}
  server {
    listen 127.0.0.1:${PORTS.backend} backlog=4096;
    default_type application/octet-stream;
    location = /big { set $chunk "${chunk}"; return 200 "${'$chunk'.repeat(8)}"; }
    location / { return 200 "${SMALL_BODY}"; }
  }
}
`);
  return file;
}

/** nginx as the reference reverse proxy: upstream keep-alive, the same routes as Gatehouse. */
export function nginxProxyConf(p: Paths, name: string, routes1k: boolean, workers: number): string {
  const prefix = path.join(p.root, `nginx-${name}`);
  const file = path.join(prefix, 'nginx.conf');
  const proxy = `proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header Host $http_host; proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;`;
  // gRPC (bench/lib/grpc-backend.ts), on the h2c listener by hostname as Gatehouse's GRPCRoute is on its HTTP one.
  const grpc = `grpc_pass grpc://grpc_backend; grpc_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      grpc_set_header X-Forwarded-Proto $scheme;`;
  const listenOn = (def: string) => `listen 127.0.0.1:${PORTS.ngHttp}${def}; listen 127.0.0.1:${PORTS.ngHttps} ssl${def};
    ssl_certificate ${p.cert}; ssl_certificate_key ${p.key};`;
  const listen = listenOn('');
  // nginx 1.22 spells it on the listen line (1.25 has `http2 on;`).
  let servers = `  server {
    ${listenOn(' default_server backlog=4096')}
    listen 127.0.0.1:${PORTS.ngH2c} http2 default_server backlog=4096;
    listen 127.0.0.1:${PORTS.ngH2} ssl http2 default_server backlog=4096;
    location / { ${proxy} }
  }
  map $http_x_bench_tenant $bench_tenant {
${Array.from({ length: TENANTS }, (_, i) => `    tenant-${i} 1;`).join('\n')}
    default "";
  }
  server {
    ${listen} server_name headers.bench.test;
    location / { if ($bench_tenant = "") { return 404; } ${proxy} }
  }
  server {
    listen 127.0.0.1:${PORTS.ngH2c} http2; server_name ${GRPC_HOST};
    location / { ${grpc} }
  }
`;
  if (routes1k) {
    for (let i = 0; i < ROUTES_1K; i++) {
      const locs = Array.from({ length: RULES_PER_ROUTE }, (_, j) => `location /p${j} { ${proxy} }`).join(' ');
      servers += `  server { ${listen} server_name r${i}.bench.test; ${locs} }\n`;
    }
  }
  fs.writeFileSync(file, `${nginxPreamble(prefix, workers)}
  server_names_hash_bucket_size 128;
  upstream backend { server 127.0.0.1:${PORTS.backend}; keepalive 128; }
  upstream grpc_backend { server 127.0.0.1:${PORTS.grpcBackend}; keepalive 128; }
${servers}}
`);
  return file;
}

const b64 = (s: string) => Buffer.from(s).toString('base64');

/**
 * Gatehouse's config dir: Gateway (HTTP + HTTPS), backend Service, the
 * catch-all and header routes, the gRPC route, optionally 1,000 more.
 */
export function gatehouseConfigDir(p: Paths, name: string, routes1k: boolean): string {
  const dir = path.join(p.root, `gatehouse-${name}`);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, '00-gateway.yaml'), gatewayYAML(p));
  const headerRules = Array.from({ length: TENANTS }, (_, i) =>
    `  - matches: [{path: {type: PathPrefix, value: /}, headers: [{name: x-bench-tenant, value: tenant-${i}}]}]\n    backendRefs: [{name: backend, port: 80}]`).join('\n');
  fs.writeFileSync(path.join(dir, '10-routes.yaml'), `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: catch-all, namespace: bench}
spec:
  parentRefs: [{name: bench}]
  rules:
  - backendRefs: [{name: backend, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: headers, namespace: bench}
spec:
  parentRefs: [{name: bench}]
  hostnames: [headers.bench.test]
  rules:
${headerRules}
`);
  fs.writeFileSync(path.join(dir, '30-grpc.yaml'), grpcYAML());
  if (routes1k) fs.writeFileSync(path.join(dir, '20-routes-1k.yaml'), manyRoutesYAML(0, ROUTES_1K));
  return dir;
}

export function gatewayYAML(p: Paths): string {
  return `apiVersion: v1
kind: Namespace
metadata: {name: bench}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: gatehouse}
spec: {controllerName: gatehouse.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: bench, namespace: bench}
spec:
  gatewayClassName: gatehouse
  listeners:
  - {name: http, protocol: HTTP, port: ${PORTS.ghHttp}}
  - name: https
    protocol: HTTPS
    port: ${PORTS.ghHttps}
    tls: {mode: Terminate, certificateRefs: [{name: bench-tls}]}
---
apiVersion: v1
kind: Secret
metadata: {name: bench-tls, namespace: bench}
type: kubernetes.io/tls
data: {tls.crt: ${b64(fs.readFileSync(p.cert, 'utf8'))}, tls.key: ${b64(fs.readFileSync(p.key, 'utf8'))}}
---
${serviceYAML('backend', 'http', PORTS.backend, '')}`;
}

/** Service `name` (port 80) and its EndpointSlice: one endpoint, 127.0.0.1:`target`. */
function serviceYAML(name: string, portName: string, target: number, appProtocol: string): string {
  return `apiVersion: v1
kind: Service
metadata: {name: ${name}, namespace: bench}
spec: {ports: [{name: ${portName}, port: 80${appProtocol === '' ? '' : `, appProtocol: ${appProtocol}`}}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: ${name}-1, namespace: bench, labels: {kubernetes.io/service-name: ${name}}}
addressType: IPv4
ports: [{name: ${portName}, port: ${target}}]
endpoints: [{addresses: [127.0.0.1]}]
`;
}

/**
 * The gRPC scenario's route: a GRPCRoute on the HTTP listener (h2c with
 * prior knowledge), on a hostname of its own so that the other scenarios'
 * requests (any other host) meet the same routes as before, to the gRPC
 * backend (bench/lib/grpc-backend.ts) that cpu-ab starts for it.
 */
function grpcYAML(): string {
  return `${serviceYAML('grpc-backend', 'grpc', PORTS.grpcBackend, 'kubernetes.io/h2c')}---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: grpc, namespace: bench}
spec:
  parentRefs: [{name: bench, sectionName: http}]
  hostnames: [${GRPC_HOST}]
  rules:
  - matches: [{method: {service: ${GRPC_SERVICE}, method: ${GRPC_METHOD}}}]
    backendRefs: [{name: grpc-backend, port: 80}]
`;
}

/** HTTPRoute r{i} for host r{i}.bench.test with rules /p0 ... /p9. */
export function routeYAML(i: number, suffix = ''): string {
  const rules = Array.from({ length: RULES_PER_ROUTE }, (_, j) =>
    `  - matches: [{path: {type: PathPrefix, value: /p${j}${suffix}}}]\n    backendRefs: [{name: backend, port: 80}]`).join('\n');
  return `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r${i}, namespace: bench}
spec:
  parentRefs: [{name: bench}]
  hostnames: [r${i}.bench.test]
  rules:
${rules}
`;
}

export function manyRoutesYAML(from: number, to: number): string {
  const docs: string[] = [];
  for (let i = from; i < to; i++) docs.push(routeYAML(i));
  return docs.join('---\n');
}
