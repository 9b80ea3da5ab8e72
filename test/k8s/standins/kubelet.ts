// A stand-in for the kubelet (and, for pods nobody scheduled, for the
// scheduler), doing what they do through the same API:
//
// - registers a Node (`standin-node`, Ready, the pod network's gateway as
//   its InternalIP);
// - binds pending pods to it (POST pods/NAME/binding): the scheduler's
//   job, done here because no scheduler runs;
// - runs each pod bound to it: a sandbox (network namespace on the pod
//   bridge with its own address, private mount namespace; netns.ts), the
//   pod's volumes (emptyDir, configMap, secret, projected
//   serviceAccountToken from the TokenRequest API bound to the pod,
//   downwardAPI) bind-mounted at the container's volumeMounts, the pod's
//   net.* sysctls, the container's env (values, fieldRefs, configMap and
//   secret keys), user, group, supplementary groups (fsGroup),
//   capabilities (drop ALL), no_new_privs and read-only root file system;
//   the container's image is mapped to a command by the test (images
//   option), its command replaces that, its args follow; stdout and
//   stderr go to a log file;
// - reports the pod's status (Running, podIP, hostIP, containerStatuses,
//   the Ready condition from the readinessProbe: httpGet or tcpSocket,
//   periodSeconds, timeoutSeconds, successThreshold, failureThreshold);
// - restarts a container that exits (restartPolicy Always/OnFailure) after
//   a back-off;
// - on deletion (deletionTimestamp set): SIGTERM, up to the grace period,
//   SIGKILL, sandbox torn down, then the final delete with
//   gracePeriodSeconds 0 (the kubelet's part of a graceful delete).
//
// Not done: multiple or init containers, liveness and startup probes,
// resource limits, images (the test's map stands in for them), host
// paths, node heartbeats (the node lifecycle controller is off in the
// harness). Needs root and a network namespace of the test's own
// (netns.ts: runInOwnNetworkNamespace).
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { Api, listWatch, sleep, type Json } from './api.ts';
import { createSandbox, ensureBridge, intToIp, ipToInt, SETPRIV, sh, type Sandbox } from './netns.ts';

export const NODE_NAME = 'standin-node';

/**
 * First restart after 1 s, doubling up to 30 s: shorter than the
 * kubelet's 10 s to 5 min, so that a test sees a crash-looping container
 * within its bounds.
 */
const RESTART_BACKOFF_MS = [1_000, 2_000, 4_000, 8_000, 16_000, 30_000];
/** A start that failed (a ConfigMap not there yet, an unknown image) is tried again after this. */
const START_RETRY_MS = 2_000;
/** Kept from a probe's answer: the status is all that counts. */
const PROBE_BODY_LIMIT = 10 * 1024;
/** A container's log line longer than this is written as several (the container runtime cuts at 16 KiB). */
const LOG_LINE_LIMIT = 16 * 1024;

export interface KubeletOptions {
  api: Api;
  nodeName?: string;
  /** image -> the command it runs (its entrypoint), e.g. {'gatehouse:e2e': [process.execPath, 'bin/gatehouse.js']}. */
  images: Record<string, string[]>;
  /**
   * Pods' volumes and containers' logs go here. Not under a path a
   * container mounts a volume over (such as /tmp): volumes are mounted
   * from inside the pod's mount namespace, where such a path is hidden.
   */
  dir: string;
  /** The pod network: a /24 or larger; its first address is the bridge's (the pods' gateway). */
  podCidr?: string;
  bridge?: string;
  log?: (msg: string) => void;
  /**
   * What the kubelet gives pods in a cluster whose pods talk to the API
   * (tools/cluster/): an /etc/resolv.conf naming the cluster DNS with the
   * pod's search path, and the `kubernetes` Service's environment variables.
   */
  cluster?: { dnsServer: string; domain: string; apiServiceHost: string; apiServicePort: number };
  /**
   * The kubelet's port, serving containers' logs to the API server
   * (`kubectl logs`, with sinceTime, tailLines, timestamps): HTTPS with this
   * certificate on the node's address, published in the Node's
   * daemonEndpoints. Without it, no log endpoint.
   */
  server?: { port: number; cert: string; key: string };
}

export interface RunningPod {
  namespace: string;
  name: string;
  uid: string;
  ip: string;
  /** The container's process id (in this pid namespace), while it runs. */
  pid: number | null;
  ready: boolean;
  logFile: string;
  restartCount: number;
}

export interface Kubelet {
  synced: Promise<void>;
  nodeName: string;
  pods(): RunningPod[];
  pod(namespace: string, name: string): RunningPod | undefined;
  /** Kills every container at once and tears every sandbox down (the pods' objects stay). */
  stop(): Promise<void>;
}

interface Probe { stop(): void }

interface Runtime {
  uid: string;
  namespace: string;
  name: string;
  pod: Json;
  ip: string | null;
  sandbox: Sandbox | null;
  child: ChildProcess | null;
  exited: Promise<void> | null;
  startedAt: string | null;
  podStartTime: string | null;
  restartCount: number;
  lastTerminated: Json | null;
  waiting: { reason: string; message: string } | null;
  terminated: Json | null;
  ready: boolean;
  probe: Probe | null;
  timers: Set<NodeJS.Timeout>;
  logFile: string;
  terminating: boolean;
  done: boolean;
  chain: Promise<void>;
  statusDirty: boolean;
  statusRunning: boolean;
  /** Per condition type: its status and since when, so that a transition time moves only on a transition. */
  conditionSince: Map<string, { ok: boolean; at: string }>;
}

function now(): string {
  return new Date().toISOString().replace(/\.\d+Z$/, 'Z');
}

function mode(m: unknown, fallback: number): number {
  return typeof m === 'number' ? m : fallback;
}

export async function startKubelet(opts: KubeletOptions): Promise<Kubelet> {
  const { api } = opts;
  const nodeName = opts.nodeName ?? NODE_NAME;
  const log = opts.log ?? (() => {});
  const bridge = opts.bridge ?? 'br0';
  const [netAddr, prefixText] = (opts.podCidr ?? '10.244.0.0/24').split('/');
  const prefixLength = Number(prefixText);
  const parsedBase = ipToInt(netAddr);
  if (parsedBase === null || !(prefixLength >= 8 && prefixLength <= 24)) throw new Error(`podCidr ${opts.podCidr}: want an IPv4 /8 to /24`);
  const base = parsedBase;
  const gateway = intToIp(base + 1);
  const lastHost = base + 2 ** (32 - prefixLength) - 2;
  const podsDir = path.join(opts.dir, 'pods');
  const logsDir = path.join(opts.dir, 'logs');
  fs.mkdirSync(podsDir, { recursive: true });
  fs.mkdirSync(logsDir, { recursive: true });

  const runtimes = new Map<string, Runtime>();
  const usedIPs = new Set<string>();
  const binding = new Set<string>();
  const finalDeletes = new Set<string>();
  /** Mount points this kubelet made on the host, to remove (when empty) at stop. */
  const createdMountPoints = new Set<string>();
  let stopped = false;

  // ---------------------------------------------------------------- node

  await ensureBridge(bridge, `${gateway}/${prefixLength}`);
  await api.must('POST', '/api/v1/nodes', {
    apiVersion: 'v1', kind: 'Node',
    metadata: { name: nodeName, labels: { 'kubernetes.io/hostname': nodeName, 'kubernetes.io/os': 'linux', 'kubernetes.io/arch': 'amd64' } },
    spec: { podCIDR: opts.podCidr ?? '10.244.0.0/24', podCIDRs: [opts.podCidr ?? '10.244.0.0/24'] },
  }, undefined, [409]);
  const t = now();
  await api.mergePatch(`/api/v1/nodes/${nodeName}/status`, {
    status: {
      conditions: [{ type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'stand-in kubelet is posting ready status', lastHeartbeatTime: t, lastTransitionTime: t }],
      addresses: [{ type: 'InternalIP', address: gateway }, { type: 'Hostname', address: nodeName }],
      capacity: { cpu: '2', memory: '8Gi', pods: '110' },
      allocatable: { cpu: '2', memory: '8Gi', pods: '110' },
      ...(opts.server ? { daemonEndpoints: { kubeletEndpoint: { Port: opts.server.port } } } : {}),
    },
  });
  const logServer = opts.server ? await serveLogs(opts.server) : null;

  // ---------------------------------------------------------------- helpers

  function allocateIP(): string {
    for (let n = base + 2; n <= lastHost; n++) {
      const ip = intToIp(n);
      if (!usedIPs.has(ip)) { usedIPs.add(ip); return ip; }
    }
    throw new Error('the pod network has no free address');
  }

  function enqueue(rt: Runtime, what: string, fn: () => Promise<void>): void {
    rt.chain = rt.chain.then(fn).catch((err: Error) => log(`kubelet: ${rt.namespace}/${rt.name}: ${what} failed: ${err.message}`));
  }

  function later(rt: Runtime, ms: number, fn: () => void): void {
    const timer = setTimeout(() => { rt.timers.delete(timer); if (!stopped) fn(); }, ms);
    rt.timers.add(timer);
  }

  const container = (rt: Runtime): Json => rt.pod.spec.containers[0];

  // ---------------------------------------------------------------- status

  function statusOf(rt: Runtime): Json {
    const c = container(rt);
    const running = rt.child !== null && rt.startedAt !== null && rt.terminated === null;
    const state = rt.terminated ? { terminated: rt.terminated, running: null, waiting: null }
      : running ? { running: { startedAt: rt.startedAt }, waiting: null, terminated: null }
      : { waiting: rt.waiting ?? { reason: 'ContainerCreating' }, running: null, terminated: null };
    const ready = running && rt.ready;
    const cond = (type: string, ok: boolean, reason?: string) => {
      let since = rt.conditionSince.get(type);
      if (!since || since.ok !== ok) { since = { ok, at: now() }; rt.conditionSince.set(type, since); }
      return { type, status: ok ? 'True' : 'False', lastTransitionTime: since.at, lastProbeTime: null, reason: reason && !ok ? reason : null };
    };
    let phase = 'Pending';
    if (rt.terminated) phase = rt.terminated.exitCode === 0 ? 'Succeeded' : 'Failed';
    else if (rt.startedAt !== null) phase = 'Running';
    const status: Json = {
      phase,
      hostIP: gateway, hostIPs: [{ ip: gateway }],
      conditions: [
        cond('PodReadyToStartContainers', rt.sandbox !== null),
        cond('Initialized', true),
        cond('ContainersReady', ready, 'ContainersNotReady'),
        cond('Ready', ready, 'ContainersNotReady'),
      ],
      containerStatuses: [{
        name: c.name, image: c.image, imageID: `standin://${c.image}`,
        containerID: rt.child?.pid ? `standin://${rt.child.pid}` : undefined,
        started: running, ready, restartCount: rt.restartCount, state,
        lastState: rt.lastTerminated ? { terminated: rt.lastTerminated } : {},
      }],
    };
    if (rt.ip) { status.podIP = rt.ip; status.podIPs = [{ ip: rt.ip }]; }
    if (rt.podStartTime) status.startTime = rt.podStartTime;
    return status;
  }

  /**
   * The pod's status as it is now, written by strategic merge patch (as
   * the kubelet does: conditions merge by type, containerStatuses by
   * name). Changes made while a write is under way cause one more write
   * of the latest state: never an older state after a newer one.
   */
  function reportStatus(rt: Runtime): void {
    rt.statusDirty = true;
    if (rt.statusRunning || stopped) return;
    rt.statusRunning = true;
    void (async () => {
      try {
        while (rt.statusDirty && !stopped) {
          rt.statusDirty = false;
          const path = `/api/v1/namespaces/${rt.namespace}/pods/${rt.name}/status`;
          for (let attempt = 1; ; attempt++) {
            const a = await api.call('PATCH', path, { metadata: { uid: rt.uid }, status: statusOf(rt) }, 'application/strategic-merge-patch+json').catch((err: Error) => ({ status: 0, body: { message: err.message } }));
            if (a.status === 200 || a.status === 404) break;
            if (attempt >= 3) { log(`kubelet: ${rt.namespace}/${rt.name}: status not written: HTTP ${a.status} ${a.body?.message ?? ''}`); break; }
            await sleep(200 * attempt);
          }
        }
      } finally {
        rt.statusRunning = false;
      }
    })();
  }

  // ---------------------------------------------------------------- volumes

  function fsGroupOf(rt: Runtime): number | undefined {
    const g = rt.pod.spec.securityContext?.fsGroup;
    return typeof g === 'number' ? g : undefined;
  }

  function writeFile(rt: Runtime, dir: string, rel: string, data: Buffer | string, fileMode: number): void {
    const file = path.join(dir, rel);
    if (!file.startsWith(dir + path.sep)) throw new Error(`volume item path ${rel} leaves the volume`);
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o755 });
    const group = fsGroupOf(rt);
    fs.writeFileSync(file, data, { mode: fileMode });
    // With fsGroup, volume files belong to that group and it may read them (as the kubelet sets it).
    if (group !== undefined) {
      fs.chownSync(file, 0, group);
      fs.chmodSync(file, fileMode | 0o040);
    } else {
      fs.chmodSync(file, fileMode);
    }
  }

  async function getObject(rt: Runtime, kind: 'configmaps' | 'secrets', name: string, optional: boolean): Promise<Json | null> {
    const a = await api.call('GET', `/api/v1/namespaces/${rt.namespace}/${kind}/${name}`);
    if (a.status === 200) return a.body;
    if (a.status === 404 && optional) return null;
    throw new Error(`${kind.slice(0, -1)} ${rt.namespace}/${name}: HTTP ${a.status}`);
  }

  function keyData(obj: Json, kind: 'configmaps' | 'secrets'): Map<string, Buffer> {
    const out = new Map<string, Buffer>();
    if (kind === 'configmaps') {
      for (const [k, v] of Object.entries(obj.data ?? {})) out.set(k, Buffer.from(String(v)));
      for (const [k, v] of Object.entries(obj.binaryData ?? {})) out.set(k, Buffer.from(String(v), 'base64'));
    } else {
      for (const [k, v] of Object.entries(obj.data ?? {})) out.set(k, Buffer.from(String(v), 'base64'));
    }
    return out;
  }

  async function writeKeys(rt: Runtime, dir: string, kind: 'configmaps' | 'secrets', src: Json, defaultMode: number): Promise<void> {
    const obj = await getObject(rt, kind, kind === 'configmaps' ? src.name : src.secretName ?? src.name, src.optional === true);
    if (!obj) return;
    const data = keyData(obj, kind);
    const items: Json[] = src.items ?? [...data.keys()].map((key) => ({ key, path: key }));
    for (const item of items) {
      const v = data.get(item.key);
      if (v === undefined) {
        if (src.optional) continue;
        throw new Error(`${kind.slice(0, -1)} ${rt.namespace}/${obj.metadata.name} has no key ${item.key}`);
      }
      writeFile(rt, dir, item.path, v, mode(item.mode, defaultMode));
    }
  }

  /** A token from the TokenRequest API, bound to the pod; written again at 80% of its life, as the kubelet does. */
  async function writeToken(rt: Runtime, dir: string, src: Json, defaultMode: number): Promise<void> {
    const sa = rt.pod.spec.serviceAccountName ?? 'default';
    const expirationSeconds = src.expirationSeconds ?? 3600;
    const a = await api.must('POST', `/api/v1/namespaces/${rt.namespace}/serviceaccounts/${sa}/token`, {
      apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest',
      spec: {
        audiences: src.audience ? [src.audience] : undefined,
        expirationSeconds,
        boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: rt.name, uid: rt.uid },
      },
    });
    // Never logged: the token is a credential.
    writeFile(rt, dir, src.path, a.body!.status.token, defaultMode);
    later(rt, expirationSeconds * 800, () => {
      if (!rt.terminating && !rt.done) enqueue(rt, 'token refresh', () => writeToken(rt, dir, src, defaultMode));
    });
  }

  function fieldValue(rt: Runtime, fieldPath: string): string {
    const m = rt.pod.metadata;
    switch (fieldPath) {
      case 'metadata.name': return m.name;
      case 'metadata.namespace': return m.namespace;
      case 'metadata.uid': return m.uid;
      case 'spec.nodeName': return nodeName;
      case 'spec.serviceAccountName': return rt.pod.spec.serviceAccountName ?? 'default';
      case 'status.podIP': return rt.ip ?? '';
      case 'status.podIPs': return rt.ip ?? '';
      case 'status.hostIP': return gateway;
      case 'status.hostIPs': return gateway;
    }
    const label = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(fieldPath);
    if (label) return m[label[1]]?.[label[2]] ?? '';
    if (fieldPath === 'metadata.labels' || fieldPath === 'metadata.annotations') {
      const map: Record<string, string> = m[fieldPath.slice(9)] ?? {};
      return Object.entries(map).sort().map(([k, v]) => `${k}=${JSON.stringify(v)}`).join('\n');
    }
    throw new Error(`fieldRef ${fieldPath} is not supported by this stand-in`);
  }

  async function setUpVolumes(rt: Runtime): Promise<Map<string, string>> {
    const dirs = new Map<string, string>();
    for (const v of rt.pod.spec.volumes ?? []) {
      const dir = path.join(podsDir, rt.uid, 'volumes', v.name);
      fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
      dirs.set(v.name, dir);
      const group = fsGroupOf(rt);
      if (v.emptyDir) {
        // The kubelet makes emptyDir volumes world-writable.
        fs.chmodSync(dir, 0o777);
      } else if (v.configMap) {
        await writeKeys(rt, dir, 'configmaps', v.configMap, mode(v.configMap.defaultMode, 0o644));
      } else if (v.secret) {
        await writeKeys(rt, dir, 'secrets', v.secret, mode(v.secret.defaultMode, 0o644));
      } else if (v.projected) {
        const dm = mode(v.projected.defaultMode, 0o644);
        for (const s of v.projected.sources ?? []) {
          if (s.serviceAccountToken) await writeToken(rt, dir, s.serviceAccountToken, mode(v.projected.defaultMode, 0o600));
          else if (s.configMap) await writeKeys(rt, dir, 'configmaps', s.configMap, dm);
          else if (s.secret) await writeKeys(rt, dir, 'secrets', { ...s.secret, secretName: s.secret.name }, dm);
          else if (s.downwardAPI) for (const it of s.downwardAPI.items ?? []) writeFile(rt, dir, it.path, fieldValue(rt, it.fieldRef?.fieldPath), mode(it.mode, dm));
          else throw new Error(`volume ${v.name}: a projected source of a kind this stand-in does not support`);
        }
      } else if (v.downwardAPI) {
        for (const it of v.downwardAPI.items ?? []) writeFile(rt, dir, it.path, fieldValue(rt, it.fieldRef?.fieldPath), mode(it.mode, mode(v.downwardAPI.defaultMode, 0o644)));
      } else {
        throw new Error(`volume ${v.name}: a kind this stand-in does not support (${Object.keys(v).filter((k) => k !== 'name').join(', ')})`);
      }
      if (group !== undefined) fs.chownSync(dir, 0, group);
    }
    return dirs;
  }

  /** Bind mounts at the container's volumeMounts, inside the pod's mount namespace, parents before children. */
  async function mountVolumes(rt: Runtime, dirs: Map<string, string>): Promise<void> {
    const mounts = [...(container(rt).volumeMounts ?? [])].sort((a: Json, b: Json) => a.mountPath.split('/').length - b.mountPath.split('/').length);
    const pid = String(rt.sandbox!.pid);
    for (const m of mounts) {
      const dir = dirs.get(m.name);
      if (!dir) throw new Error(`volumeMount ${m.name}: no such volume`);
      const source = m.subPath ? path.join(dir, m.subPath) : dir;
      if (!path.isAbsolute(m.mountPath)) throw new Error(`volumeMount ${m.name}: mountPath ${m.mountPath} is not absolute`);
      // The mount point must exist; the pod's mount namespace shares the
      // host's file systems, so it is made here, and removed when the
      // kubelet stops (other pods may be using it until then).
      for (let d = m.mountPath; !fs.existsSync(d); d = path.dirname(d)) createdMountPoints.add(d);
      fs.mkdirSync(m.mountPath, { recursive: true, mode: 0o755 });
      await sh('nsenter', ['-t', pid, '-m', '--', 'mount', '--bind', source, m.mountPath]);
      if (m.readOnly) await sh('nsenter', ['-t', pid, '-m', '--', 'mount', '-o', 'remount,bind,ro', m.mountPath]);
    }
    if (opts.cluster && (rt.pod.spec.dnsPolicy ?? 'ClusterFirst') === 'ClusterFirst') {
      // The pod's resolv.conf, as the kubelet writes it for dnsPolicy ClusterFirst.
      const d = opts.cluster.domain;
      const file = path.join(podsDir, rt.uid, 'resolv.conf');
      fs.writeFileSync(file, `search ${rt.namespace}.svc.${d} svc.${d} ${d}\nnameserver ${opts.cluster.dnsServer}\noptions ndots:5\n`, { mode: 0o644 });
      await sh('nsenter', ['-t', pid, '-m', '--', 'mount', '--bind', file, '/etc/resolv.conf']);
    }
    if (container(rt).securityContext?.readOnlyRootFilesystem) {
      // Per mount, in the pod's namespace only: the host's root stays writable.
      await sh('nsenter', ['-t', pid, '-m', '--', 'mount', '-o', 'remount,bind,ro', '/']);
    }
  }

  // ---------------------------------------------------------------- the container

  async function envOf(rt: Runtime): Promise<Record<string, string>> {
    const env: Record<string, string> = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', HOSTNAME: rt.name };
    if (opts.cluster) {
      // The `kubernetes` Service's variables, as the kubelet sets them in every pod (in-cluster clients read them).
      const { apiServiceHost: h, apiServicePort: p } = opts.cluster;
      Object.assign(env, {
        KUBERNETES_SERVICE_HOST: h, KUBERNETES_SERVICE_PORT: String(p), KUBERNETES_SERVICE_PORT_HTTPS: String(p),
        KUBERNETES_PORT: `tcp://${h}:${p}`, [`KUBERNETES_PORT_${p}_TCP`]: `tcp://${h}:${p}`,
        [`KUBERNETES_PORT_${p}_TCP_PROTO`]: 'tcp', [`KUBERNETES_PORT_${p}_TCP_PORT`]: String(p), [`KUBERNETES_PORT_${p}_TCP_ADDR`]: h,
      });
    }
    const c = container(rt);
    for (const from of c.envFrom ?? []) {
      const kind = from.configMapRef ? 'configmaps' : 'secrets';
      const ref = from.configMapRef ?? from.secretRef;
      const obj = await getObject(rt, kind, ref.name, ref.optional === true);
      if (obj) for (const [k, v] of keyData(obj, kind)) env[`${from.prefix ?? ''}${k}`] = v.toString('utf8');
    }
    for (const e of c.env ?? []) {
      if (e.value !== undefined) env[e.name] = expand(String(e.value), env);
      else if (e.valueFrom?.fieldRef) env[e.name] = fieldValue(rt, e.valueFrom.fieldRef.fieldPath);
      else if (e.valueFrom?.configMapKeyRef || e.valueFrom?.secretKeyRef) {
        const kind = e.valueFrom.configMapKeyRef ? 'configmaps' : 'secrets';
        const ref = e.valueFrom.configMapKeyRef ?? e.valueFrom.secretKeyRef;
        const obj = await getObject(rt, kind, ref.name, ref.optional === true);
        const v = obj ? keyData(obj, kind).get(ref.key) : undefined;
        if (v !== undefined) env[e.name] = v.toString('utf8');
        else if (!ref.optional) throw new Error(`env ${e.name}: key ${ref.key} not found`);
      } else if (e.valueFrom) {
        throw new Error(`env ${e.name}: a valueFrom this stand-in does not support`);
      } else {
        env[e.name] = '';
      }
    }
    return env;
  }

  /** $(VAR) references in command, args and env values, as the kubelet expands them; $$ is a literal $. */
  function expand(s: string, env: Record<string, string>): string {
    return s.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (all, name: string | undefined) => (name === undefined ? '$' : env[name] ?? all));
  }

  /** The user, groups and restrictions to run with, or the reason the container may not run (as the kubelet refuses it). */
  function identity(rt: Runtime): string[] | string {
    const pod = rt.pod.spec.securityContext ?? {};
    const c = container(rt).securityContext ?? {};
    const uid = c.runAsUser ?? pod.runAsUser;
    const gid = c.runAsGroup ?? pod.runAsGroup;
    const nonRoot = c.runAsNonRoot ?? pod.runAsNonRoot;
    // No image metadata here: an image's USER is unknown, so an unset runAsUser runs as root.
    if (nonRoot && (uid === undefined || uid === 0)) return 'container has runAsNonRoot and image will run as root';
    const groups = [pod.fsGroup, ...(pod.supplementalGroups ?? [])].filter((g) => typeof g === 'number');
    const out: string[] = [SETPRIV, '--reuid', String(uid ?? 0), '--regid', String(gid ?? 0)];
    out.push(...(groups.length ? ['--groups', [...new Set(groups)].join(',')] : ['--clear-groups']));
    // Dropping ALL empties the bounding set: no capability even for uid 0, none to regain by exec.
    if ((c.capabilities?.drop ?? []).includes('ALL')) {
      // What `add` names stays in the bounding set (NET_BIND_SERVICE for a DNS server on port 53).
      const add = ((c.capabilities?.add ?? []) as string[]).map((x) => `,+${x.toLowerCase().replace(/^cap_/, '')}`).join('');
      out.push('--bounding-set', `-all${add}`, '--inh-caps', '-all');
    }
    if (c.allowPrivilegeEscalation === false) out.push('--no-new-privs');
    out.push('--');
    return out;
  }

  async function startContainer(rt: Runtime): Promise<void> {
    const c = container(rt);
    const env = await envOf(rt);
    const entry: string[] | undefined = c.command ?? opts.images[c.image];
    if (!entry) {
      rt.waiting = { reason: 'ErrImagePull', message: `image ${c.image} is not in the stand-in kubelet's image map` };
      throw new Error(rt.waiting.message);
    }
    const who = identity(rt);
    if (typeof who === 'string') {
      rt.waiting = { reason: 'CreateContainerConfigError', message: who };
      throw new Error(who);
    }
    const argv = [...entry, ...(c.args ?? [])].map((a: string) => expand(a, env));
    const fd = fs.openSync(rt.logFile, 'a', 0o600);
    fs.writeSync(fd, `--- ${now()} start #${rt.restartCount}: ${argv.join(' ')}\n`);
    // nsenter and setpriv exec in place: the pid is the container's own process.
    // With a log endpoint, each line is stamped with the time it came (as
    // the container runtime's log files are), so that sinceTime can filter.
    const child = spawn('nsenter', ['-t', String(rt.sandbox!.pid), '-n', '-m', '--', ...who, ...argv], {
      env, cwd: c.workingDir ?? '/', stdio: opts.server ? ['ignore', 'pipe', 'pipe'] : ['ignore', fd, fd],
    });
    if (opts.server) stampLines(child, fd);
    else fs.closeSync(fd);
    rt.child = child;
    rt.startedAt = now();
    rt.waiting = null;
    rt.ready = false;
    rt.exited = new Promise((resolve) => {
      child.once('error', (err) => { log(`kubelet: ${rt.namespace}/${rt.name}: could not start: ${err.message}`); });
      child.once('exit', (code, signal) => {
        const exitCode = code ?? (signal ? 128 + (({ SIGKILL: 9, SIGTERM: 15, SIGINT: 2 } as Record<string, number>)[signal] ?? 0) : 1);
        const terminated = {
          exitCode, reason: exitCode === 0 ? 'Completed' : 'Error', startedAt: rt.startedAt, finishedAt: now(),
          containerID: `standin://${child.pid}`, ...(signal ? { signal: ({ SIGKILL: 9, SIGTERM: 15 } as Record<string, number>)[signal] } : {}),
        };
        log(`kubelet: ${rt.namespace}/${rt.name}: container exited (${signal ?? `code ${code}`})`);
        rt.probe?.stop();
        rt.probe = null;
        rt.ready = false;
        rt.child = null;
        if (rt.terminating || stopped) {
          rt.terminated = terminated;
          resolve();
          return;
        }
        const policy = rt.pod.spec.restartPolicy ?? 'Always';
        if (policy === 'Never' || (policy === 'OnFailure' && exitCode === 0)) {
          rt.terminated = terminated;
          reportStatus(rt);
          resolve();
          return;
        }
        rt.lastTerminated = terminated;
        const backoff = RESTART_BACKOFF_MS[Math.min(rt.restartCount, RESTART_BACKOFF_MS.length - 1)];
        rt.waiting = { reason: 'CrashLoopBackOff', message: `back-off ${backoff / 1000}s restarting failed container` };
        rt.startedAt = null;
        reportStatus(rt);
        resolve();
        later(rt, backoff, () => {
          if (rt.terminating || rt.done) return;
          rt.restartCount++;
          enqueue(rt, 'restart', async () => { if (!rt.terminating) { await startContainer(rt); startProbe(rt); reportStatus(rt); } });
        });
      });
    });
    log(`kubelet: ${rt.namespace}/${rt.name}: started pid ${child.pid} at ${rt.ip}`);
  }

  /** Copies the child's output to `fd` a line at a time, each line after an RFC 3339 time; a line longer than LOG_LINE_LIMIT is cut into several. */
  function stampLines(child: ChildProcess, fd: number): void {
    let open = 2;
    for (const stream of [child.stdout!, child.stderr!]) {
      let partial = '';
      const emit = (line: string) => { try { fs.writeSync(fd, `${new Date().toISOString()} ${line}\n`); } catch { /* closed */ } };
      stream.setEncoding('utf8');
      stream.on('data', (chunk: string) => {
        partial += chunk;
        let i: number;
        while ((i = partial.indexOf('\n')) >= 0) { emit(partial.slice(0, i)); partial = partial.slice(i + 1); }
        while (partial.length > LOG_LINE_LIMIT) { emit(partial.slice(0, LOG_LINE_LIMIT)); partial = partial.slice(LOG_LINE_LIMIT); }
      });
      stream.on('close', () => {
        if (partial) emit(partial);
        if (--open === 0) fs.closeSync(fd);
      });
    }
  }

  /**
   * The kubelet's /containerLogs endpoint, which the API server proxies
   * `pods/log` to: the pod's log lines (those of its current container
   * start), filtered by sinceTime/sinceSeconds, tailLines, limitBytes, with
   * or without their times. No follow: the answer ends with what is there.
   */
  function serveLogs(o: { port: number; cert: string; key: string }): Promise<https.Server> {
    const server = https.createServer({ cert: o.cert, key: o.key }, (req, res) => {
      const url = new URL(req.url ?? '/', 'https://node');
      const m = /^\/containerLogs\/([^/]+)\/([^/]+)\/([^/]+)$/.exec(url.pathname);
      const rt = m ? [...runtimes.values()].find((r) => r.namespace === m[1] && r.name === m[2] && !r.done) : undefined;
      if (!m || !rt) { res.writeHead(404).end('not found\n'); return; }
      let text = '';
      try { text = fs.readFileSync(rt.logFile, 'utf8'); } catch { /* none yet */ }
      let lines = text.split('\n').filter((l) => l && !l.startsWith('--- '));
      const q = url.searchParams;
      const since = q.get('sinceTime') ? Date.parse(q.get('sinceTime')!) : q.get('sinceSeconds') ? Date.now() - Number(q.get('sinceSeconds')) * 1000 : NaN;
      if (!Number.isNaN(since)) lines = lines.filter((l) => Date.parse(l.slice(0, l.indexOf(' '))) >= since);
      const tailLines = Number(q.get('tailLines'));
      if (q.get('tailLines') !== null && tailLines >= 0) lines = lines.slice(Math.max(0, lines.length - tailLines));
      const withTimes = q.get('timestamps') === 'true';
      let body = lines.map((l) => (withTimes ? l : l.slice(l.indexOf(' ') + 1)) + '\n').join('');
      const limit = Number(q.get('limitBytes'));
      if (limit > 0) body = Buffer.from(body).subarray(0, limit).toString('utf8');
      res.writeHead(200, { 'content-type': 'text/plain' }).end(body);
    });
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(o.port, gateway, () => resolve(server));
    });
  }

  // ---------------------------------------------------------------- readiness

  function probeOnce(rt: Runtime, p: Json, timeoutMs: number): Promise<boolean> {
    const c = container(rt);
    const portOf = (port: unknown): number => {
      if (typeof port === 'number') return port;
      const named = (c.ports ?? []).find((x: Json) => x.name === port);
      return named?.containerPort ?? NaN;
    };
    return new Promise((resolve) => {
      if (p.httpGet) {
        const g = p.httpGet;
        const headers: Record<string, string> = { 'user-agent': 'kube-probe/1.34' };
        for (const h of g.httpHeaders ?? []) headers[h.name] = h.value;
        const mod = g.scheme === 'HTTPS' ? https : http;
        const req = mod.get({
          host: g.host ?? rt.ip!, port: portOf(g.port), path: g.path ?? '/', headers, agent: false, timeout: timeoutMs,
          // The kubelet does not verify a probe's certificate.
          ...(g.scheme === 'HTTPS' ? { rejectUnauthorized: false } : {}),
        }, (res) => {
          let n = 0;
          res.on('data', (d: Buffer) => { n += d.length; if (n > PROBE_BODY_LIMIT) res.destroy(); });
          res.on('error', () => {});
          const ok = (res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 400;
          res.resume();
          resolve(ok);
        });
        req.on('timeout', () => req.destroy());
        req.on('error', () => resolve(false));
      } else if (p.tcpSocket) {
        const s = net.connect({ host: p.tcpSocket.host ?? rt.ip!, port: portOf(p.tcpSocket.port), timeout: timeoutMs });
        s.on('connect', () => { s.destroy(); resolve(true); });
        s.on('timeout', () => { s.destroy(); resolve(false); });
        s.on('error', () => resolve(false));
      } else {
        log(`kubelet: ${rt.namespace}/${rt.name}: readiness probe of a kind this stand-in does not support; counted as failed`);
        resolve(false);
      }
    });
  }

  /** The readinessProbe as the kubelet runs it: every periodSeconds; Ready after successThreshold passes in a row, not Ready after failureThreshold failures in a row. */
  function startProbe(rt: Runtime): void {
    const p = container(rt).readinessProbe;
    if (!p) {
      rt.ready = true;
      return;
    }
    const period = (p.periodSeconds ?? 10) * 1000;
    const timeout = (p.timeoutSeconds ?? 1) * 1000;
    const failureThreshold = p.failureThreshold ?? 3;
    const successThreshold = p.successThreshold ?? 1;
    let successes = 0;
    let failures = 0;
    let stoppedProbe = false;
    let timer: NodeJS.Timeout | null = null;
    const child = rt.child;
    const tick = async () => {
      timer = null;
      if (stoppedProbe || stopped || rt.child !== child) return;
      const ok = await probeOnce(rt, p, timeout);
      if (stoppedProbe || stopped || rt.child !== child) return;
      if (ok) { successes++; failures = 0; } else { failures++; successes = 0; }
      const before = rt.ready;
      if (ok && successes >= successThreshold) rt.ready = true;
      if (!ok && failures >= failureThreshold) rt.ready = false;
      if (rt.ready !== before) {
        log(`kubelet: ${rt.namespace}/${rt.name}: ${rt.ready ? 'Ready' : 'not Ready'} (readiness probe)`);
        reportStatus(rt);
      }
      timer = setTimeout(tick, period);
    };
    timer = setTimeout(tick, (p.initialDelaySeconds ?? 0) * 1000);
    rt.probe = { stop() { stoppedProbe = true; if (timer) clearTimeout(timer); } };
  }

  // ---------------------------------------------------------------- lifecycle

  async function start(rt: Runtime): Promise<void> {
    if (rt.terminating || stopped) return;
    const spec = rt.pod.spec;
    try {
      if ((spec.containers ?? []).length !== 1 || (spec.initContainers ?? []).length > 0) {
        rt.waiting = { reason: 'CreateContainerConfigError', message: 'this stand-in runs pods of exactly one container and no init containers' };
        reportStatus(rt);
        return;
      }
      if (!rt.ip) rt.ip = allocateIP();
      rt.podStartTime ??= now();
      if (!rt.sandbox) {
        const sysctls = (spec.securityContext?.sysctls ?? []) as { name: string; value: string }[];
        rt.sandbox = await createSandbox({ ip: rt.ip, prefixLength, gateway, bridge, hostVeth: `ghv${rt.ip.split('.').slice(-2).join('x')}`, sysctls });
        const dirs = await setUpVolumes(rt);
        await mountVolumes(rt, dirs);
      }
      await startContainer(rt);
      startProbe(rt);
      reportStatus(rt);
    } catch (err) {
      log(`kubelet: ${rt.namespace}/${rt.name}: cannot start yet: ${(err as Error).message}`);
      rt.waiting ??= { reason: 'ContainerCreating', message: (err as Error).message };
      reportStatus(rt);
      // A sandbox half set up is made again from the start.
      if (rt.child === null) await tearDown(rt, false);
      later(rt, START_RETRY_MS, () => { if (!rt.terminating && !rt.done && rt.child === null) enqueue(rt, 'start', () => start(rt)); });
    }
  }

  async function tearDown(rt: Runtime, releaseIP: boolean): Promise<void> {
    if (rt.sandbox) {
      await rt.sandbox.destroy();
      rt.sandbox = null;
    }
    fs.rmSync(path.join(podsDir, rt.uid), { recursive: true, force: true });
    if (releaseIP && rt.ip) { usedIPs.delete(rt.ip); }
  }

  async function kill(rt: Runtime, graceMs: number): Promise<void> {
    const child = rt.child;
    if (child && rt.exited) {
      child.kill('SIGTERM');
      const exited = await Promise.race([rt.exited.then(() => true), sleep(graceMs).then(() => false)]);
      if (!exited) {
        log(`kubelet: ${rt.namespace}/${rt.name}: still running ${graceMs / 1000} s after SIGTERM; SIGKILL`);
        child.kill('SIGKILL');
        await Promise.race([rt.exited, sleep(5_000)]);
      }
    }
  }

  /** Graceful termination, then the final delete: what the kubelet does once a pod has a deletionTimestamp. */
  async function terminate(rt: Runtime): Promise<void> {
    if (rt.done) return;
    const graceSeconds = rt.pod.metadata.deletionGracePeriodSeconds ?? rt.pod.spec.terminationGracePeriodSeconds ?? 30;
    log(`kubelet: ${rt.namespace}/${rt.name}: deleted; SIGTERM, grace ${graceSeconds} s`);
    for (const t of rt.timers) clearTimeout(t);
    rt.timers.clear();
    await kill(rt, graceSeconds * 1000);
    rt.probe?.stop();
    rt.terminated ??= { exitCode: 0, reason: 'Completed', finishedAt: now() };
    reportStatus(rt);
    await tearDown(rt, true);
    rt.done = true;
    await finalDelete(rt.namespace, rt.name, rt.uid);
  }

  async function finalDelete(namespace: string, name: string, uid: string): Promise<void> {
    const a = await api.call('DELETE', `/api/v1/namespaces/${namespace}/pods/${name}`, {
      apiVersion: 'v1', kind: 'DeleteOptions', gracePeriodSeconds: 0, preconditions: { uid },
    });
    if (a.status !== 200 && a.status !== 404 && a.status !== 409) log(`kubelet: ${namespace}/${name}: final delete: HTTP ${a.status} ${a.body?.message ?? ''}`);
    else log(`kubelet: ${namespace}/${name}: removed`);
  }

  async function bind(pod: Json): Promise<void> {
    const { namespace, name } = pod.metadata;
    const a = await api.call('POST', `/api/v1/namespaces/${namespace}/pods/${name}/binding`, {
      apiVersion: 'v1', kind: 'Binding', metadata: { name, namespace, uid: pod.metadata.uid }, target: { apiVersion: 'v1', kind: 'Node', name: nodeName },
    });
    if (a.status !== 201 && a.status !== 200 && a.status !== 409) log(`kubelet (as the scheduler): ${namespace}/${name}: binding: HTTP ${a.status} ${a.body?.message ?? ''}`);
  }

  function onPod(pod: Json): void {
    if (stopped) return;
    const uid: string = pod.metadata.uid;
    const deleting = Boolean(pod.metadata.deletionTimestamp);
    if (!pod.spec.nodeName) {
      // The scheduler's job: no scheduler runs, and this is the only node.
      const scheduler = pod.spec.schedulerName ?? 'default-scheduler';
      if (!deleting && scheduler === 'default-scheduler' && !binding.has(uid)) {
        binding.add(uid);
        void bind(pod).catch((err: Error) => { binding.delete(uid); log(`kubelet (as the scheduler): binding failed: ${err.message}`); });
      }
      return;
    }
    if (pod.spec.nodeName !== nodeName) return;
    let rt = runtimes.get(uid);
    if (!rt) {
      if (deleting) {
        // Never run here (or run before this kubelet started): only the final delete is left.
        if (!finalDeletes.has(uid)) {
          finalDeletes.add(uid);
          void finalDelete(pod.metadata.namespace, pod.metadata.name, uid).catch((err: Error) => log(`kubelet: final delete failed: ${err.message}`));
        }
        return;
      }
      if (pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed') return;
      rt = {
        uid, namespace: pod.metadata.namespace, name: pod.metadata.name, pod,
        ip: null, sandbox: null, child: null, exited: null, startedAt: null, podStartTime: null,
        restartCount: 0, lastTerminated: null, waiting: null, terminated: null, ready: false, probe: null,
        timers: new Set(),
        logFile: path.join(logsDir, `${pod.metadata.namespace}_${pod.metadata.name}_${uid.slice(0, 8)}.log`),
        terminating: false, done: false, chain: Promise.resolve(), statusDirty: false, statusRunning: false, conditionSince: new Map(),
      };
      runtimes.set(uid, rt);
      const r = rt;
      enqueue(r, 'start', () => start(r));
    } else {
      rt.pod = pod;
    }
    if (deleting && !rt.terminating) {
      rt.terminating = true;
      const r = rt;
      enqueue(r, 'termination', () => terminate(r));
    }
  }

  function onPodGone(pod: Json): void {
    const rt = runtimes.get(pod.metadata.uid);
    binding.delete(pod.metadata.uid);
    finalDeletes.delete(pod.metadata.uid);
    if (!rt) return;
    runtimes.delete(rt.uid);
    if (rt.done) return;
    // Deleted outright (grace 0, or by someone else's final delete): no grace left to give.
    rt.terminating = true;
    enqueue(rt, 'removal', async () => {
      await kill(rt, 0);
      rt.probe?.stop();
      await tearDown(rt, true);
      rt.done = true;
    });
  }

  const watch = listWatch(api, '/api/v1/pods', {
    upsert: (pod) => onPod(pod),
    deleted: (pod) => onPodGone(pod),
  }, (msg) => log(`kubelet: ${msg}`));

  const view = (rt: Runtime): RunningPod => ({
    namespace: rt.namespace, name: rt.name, uid: rt.uid, ip: rt.ip ?? '', pid: rt.child?.pid ?? null,
    ready: rt.ready && rt.child !== null, logFile: rt.logFile, restartCount: rt.restartCount,
  });

  return {
    synced: watch.synced,
    nodeName,
    pods: () => [...runtimes.values()].filter((rt) => !rt.done).map(view),
    pod(namespace, name) {
      const rt = [...runtimes.values()].find((r) => r.namespace === namespace && r.name === name && !r.done);
      return rt ? view(rt) : undefined;
    },
    async stop() {
      stopped = true;
      watch.close();
      logServer?.close();
      logServer?.closeAllConnections();
      const all = [...runtimes.values()];
      for (const rt of all) {
        rt.terminating = true;
        for (const t of rt.timers) clearTimeout(t);
        rt.probe?.stop();
        rt.child?.kill('SIGKILL');
      }
      await Promise.all(all.map(async (rt) => {
        if (rt.exited) await Promise.race([rt.exited, sleep(5_000)]);
        await tearDown(rt, true).catch(() => {});
      }));
      fs.rmSync(podsDir, { recursive: true, force: true });
      // Deepest first; only what is empty (rmdir refuses the rest).
      for (const d of [...createdMountPoints].sort((a, b) => b.length - a.length)) {
        try { fs.rmdirSync(d); } catch { /* not empty, or gone */ }
      }
    },
  };
}
