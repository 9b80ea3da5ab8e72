// Table-driven tests of translate(): each file in cases/ is a YAML list of
// cases, objects in, expected status and IR out. See cases/README.md.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import type { KubeObject } from '../../src/api/types.ts';
import { buildSnapshot } from '../../src/api/build-snapshot.ts';
import { translate, type TranslateResult } from '../../src/translate/index.ts';
import { parsePool, type ProvisionedGateway } from '../../src/translate/addresses.ts';
import type { ParametersJudge } from '../../src/translate/gatewayclass.ts';
import type { EndpointPolicyOptions } from '../../src/net/endpoint-policy.ts';
import type { IR, RouteEntry } from '../../src/ir/types.ts';

import { effectiveBackendPolicy, effectiveClientPolicy } from '../../src/translate/policy-attachment.ts';

const DIR = path.join(import.meta.dirname, 'cases');
const BASE: KubeObject[] = YAML.parseAllDocuments(fs.readFileSync(path.join(DIR, 'base.yaml'), 'utf8')).map((d) => d.toJSON());

interface ConditionsExpect { [type: string]: string /* "True/Reason", "False", or "False/Reason ~ text in the message" */ }
interface StatusExpect {
  ref: string; // "Kind namespace/name" or "GatewayClass name"
  conditions?: ConditionsExpect;
  addresses?: string[];
  listeners?: Record<string, { attachedRoutes?: number; supportedKinds?: string[]; conditions?: ConditionsExpect }>;
  parents?: { parentRef: Record<string, unknown>; conditions: ConditionsExpect }[];
  /** A policy's status.ancestors: all of them, in order; `none` for a policy with no status at all. */
  ancestors?: { ancestorRef: Record<string, unknown>; conditions: ConditionsExpect }[];
  supportedFeatures?: string[];
}
interface Case extends Partial<Step> {
  name: string;
  noBase?: boolean;
  pool?: string | null;
  /** The endpoint policy; translate's default when absent. */
  endpoints?: EndpointPolicyOptions;
  /** Kubernetes mode: Gateway `namespace/name` -> its provisioned Service and proxies. */
  provisioned?: Record<string, ProvisionedGateway>;
  /** Kubernetes mode: parametersRef values to refuse (`kind/name` -> why); any other is usable. */
  parameters?: Record<string, string>;
  /** Translations in turn, each given the last good certificates of the one before; instead of objects and expect. */
  steps?: Step[];
}
interface Step {
  objects: KubeObject[];
  expect: {
    status?: StatusExpect[];
    /** "address:port listener-hostname vhost" -> entry names in precedence order. */
    hosts?: Record<string, string[]>;
    /** entry name -> "cluster*weight" per backend, cluster "-" when invalid. */
    backends?: Record<string, string[]>;
    /** cluster name -> "address:port" endpoints. */
    clusters?: Record<string, string[]>;
    /** cluster name -> its protocol (`http1`, `h2c`). */
    clusterProtocols?: Record<string, string>;
    /** cluster name -> its IR policy (BackendTrafficPolicy), compared whole; null for none. */
    clusterPolicies?: Record<string, unknown>;
    /** "socket-key entry-name" -> "cluster*weight" per backend: an entry as one socket has it (entries of several Gateways share names). */
    socketBackends?: Record<string, string[]>;
    /** "Kind namespace/name" of objects translate must give no status (not ours). */
    noStatus?: string[];
    /** socket keys of the IR, in order. */
    sockets?: string[];
    /** socket key -> its Gateway listeners in IR order. */
    listenerOrder?: Record<string, string[]>;
    /** entry name -> its filters as IR JSON. */
    filters?: Record<string, unknown[]>;
    /** entry name -> fields of its IR RouteEntry, each compared whole (`retry: null` for none). */
    entries?: Record<string, Record<string, unknown>>;
    /** socket key -> the subject CN of each certificate it serves, in order. */
    certificates?: Record<string, string[]>;
    /** socket key -> its IR client settings (ClientTrafficPolicy), compared whole; null for none. */
    client?: Record<string, unknown>;
    /** "kind key" -> `namespace/name` of the effective policy, or null: `client ns/gw/listener`, `backend route=ns/r rule=x service=ns/s gateway=ns/g`. */
    effective?: Record<string, string | null>;
  };
}

let generation = 0;
function prepare(objects: KubeObject[]): KubeObject[] {
  // Creation order is the order written: each object is a second older than the next.
  return objects.map((o, i) => ({
    ...o,
    metadata: {
      namespace: ['Namespace', 'GatewayClass'].includes(o.kind) ? undefined : 'default',
      generation: ++generation % 7 + 1,
      creationTimestamp: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString(),
      ...o.metadata,
    },
  }));
}

function checkConditions(where: string, actual: { type: string; status: string; reason: string; observedGeneration?: number }[] | undefined, expected: ConditionsExpect, gen: number | undefined) {
  for (const [type, want] of Object.entries(expected)) {
    const c = (actual ?? []).find((x) => x.type === type);
    assert.ok(c, `${where}: no ${type} condition in ${JSON.stringify(actual)}`);
    const [head, text] = want.split(' ~ ');
    const [status, reason] = head.split('/');
    assert.equal(c.status, status, `${where}: ${type} status (reason ${c.reason})`);
    if (reason) assert.equal(c.reason, reason, `${where}: ${type} reason`);
    if (text) assert.ok((c as { message?: string }).message?.includes(text), `${where}: ${type} message ${JSON.stringify((c as { message?: string }).message)} should include ${JSON.stringify(text)}`);
    assert.equal(c.observedGeneration, gen, `${where}: ${type} observedGeneration`);
  }
}

function entries(ir: IR): Map<string, RouteEntry> {
  const out = new Map<string, RouteEntry>();
  for (const s of ir.listeners) for (const gl of s.gatewayListeners) for (const vh of gl.virtualHosts) for (const r of vh.routes) out.set(r.name, r);
  return out;
}

for (const file of fs.readdirSync(DIR).filter((f) => f.endsWith('.yaml') && f !== 'base.yaml').sort()) {
  const cases: Case[] = YAML.parse(fs.readFileSync(path.join(DIR, file), 'utf8'));
  for (const c of cases) {
    test(`${file}: ${c.name}`, () => {
      let previous: TranslateResult | undefined;
      for (const [i, step] of (c.steps ?? [c as Step]).entries()) {
        const objects = prepare([...(c.noBase ? [] : BASE), ...step.objects]);
        const result = translate(buildSnapshot(objects), {
          controllerName: 'gatehouse.dev/gateway-controller',
          addressing: { pool: c.pool === null ? null : parsePool(c.pool ?? '10.9.0.0/24'), hostAddress: '192.0.2.10', previous: {}, provisioned: c.provisioned },
          parameters: c.parameters === undefined ? undefined : parametersJudge(c.parameters),
          endpoints: c.endpoints,
          lastGoodCertificates: previous?.lastGoodCertificates,
        });
        try {
          checkStep(objects, step.expect, result);
        } catch (e) {
          if (c.steps) (e as Error).message = `step ${i}: ${(e as Error).message}`;
          throw e;
        }
        previous = result;
      }
    });
  }
}

/** A judge that refuses the references listed, by `kind/name`, and takes every other. */
function parametersJudge(refused: Record<string, string>): ParametersJudge {
  const judge = (ref: { kind: string; name: string } | undefined) => (ref === undefined ? null : refused[`${ref.kind}/${ref.name}`] ?? null);
  return { gatewayClass: (gc) => judge(gc.spec.parametersRef), gateway: (gw) => judge(gw.spec.infrastructure?.parametersRef) };
}

function checkStep(objects: KubeObject[], expect: Step['expect'], result: TranslateResult): void {
  const byRef = new Map(objects.map((o) => [o.kind === 'GatewayClass' ? `GatewayClass ${o.metadata.name}` : `${o.kind} ${o.metadata.namespace}/${o.metadata.name}`, o]));
  for (const s of expect.status ?? []) {
    const obj = byRef.get(s.ref);
    assert.ok(obj, `no object ${s.ref} in the case`);
    const [kind, nsName] = s.ref.split(' ');
    const [ns, name] = kind === 'GatewayClass' ? ['', nsName] : nsName.split('/');
    const st = result.statuses.get(`${kind}|${ns}|${name}`) as any;
    assert.ok(st, `${s.ref}: no status`);
    const gen = obj.metadata.generation;
    if (s.conditions) checkConditions(s.ref, st.conditions, s.conditions, gen);
    if (s.addresses) assert.deepEqual(st.addresses.map((a: { value: string }) => a.value), s.addresses, `${s.ref}: addresses`);
    if (s.supportedFeatures) for (const f of s.supportedFeatures) assert.ok(st.supportedFeatures.some((x: { name: string }) => x.name === f), `${s.ref}: feature ${f}`);
    for (const [lname, le] of Object.entries(s.listeners ?? {})) {
      const ls = st.listeners.find((l: { name: string }) => l.name === lname);
      assert.ok(ls, `${s.ref}: no listener status ${lname}`);
      if (le.attachedRoutes !== undefined) assert.equal(ls.attachedRoutes, le.attachedRoutes, `${s.ref} listener ${lname}: attachedRoutes`);
      if (le.supportedKinds) assert.deepEqual(ls.supportedKinds.map((k: { kind: string }) => k.kind), le.supportedKinds, `${s.ref} listener ${lname}: supportedKinds`);
      if (le.conditions) checkConditions(`${s.ref} listener ${lname}`, ls.conditions, le.conditions, gen);
    }
    if (s.ancestors) {
      assert.equal(st.ancestors.length, s.ancestors.length, `${s.ref}: number of ancestors in ${JSON.stringify(st.ancestors)}`);
      s.ancestors.forEach((a, i) => {
        assert.deepEqual(st.ancestors[i].ancestorRef, a.ancestorRef, `${s.ref}: ancestor ${i} ancestorRef`);
        assert.equal(st.ancestors[i].controllerName, 'gatehouse.dev/gateway-controller');
        checkConditions(`${s.ref} ancestor ${i}`, st.ancestors[i].conditions, a.conditions, gen);
      });
    }
    if (s.parents) {
      assert.equal(st.parents.length, s.parents.length, `${s.ref}: number of parents in ${JSON.stringify(st.parents)}`);
      s.parents.forEach((p, i) => {
        assert.deepEqual(st.parents[i].parentRef, p.parentRef, `${s.ref}: parent ${i} parentRef`);
        assert.equal(st.parents[i].controllerName, 'gatehouse.dev/gateway-controller');
        checkConditions(`${s.ref} parent ${i}`, st.parents[i].conditions, p.conditions, gen);
      });
    }
  }
  for (const ref of expect.noStatus ?? []) {
    const [kind, nsName] = ref.split(' ');
    const [ns, name] = nsName.split('/');
    assert.equal(result.statuses.get(`${kind}|${ns}|${name}`), undefined, `${ref}: no status expected`);
  }
  const ir = result.ir;
  assert.deepEqual(JSON.parse(JSON.stringify(ir)), ir, 'IR must survive JSON');
  if (expect.sockets) assert.deepEqual(ir.listeners.map((s) => `${s.protocol} ${s.key}`), expect.sockets);
  if (expect.hosts) {
    const got: Record<string, string[]> = {};
    for (const s of ir.listeners) for (const gl of s.gatewayListeners) for (const vh of gl.virtualHosts) {
      got[`${s.key} ${gl.hostname ?? '-'} ${vh.hostname}`] = vh.routes.map((r) => r.name);
    }
    assert.deepEqual(got, expect.hosts);
  }
  for (const [key, want] of Object.entries(expect.listenerOrder ?? {})) {
    const sock = ir.listeners.find((s) => s.key === key);
    assert.ok(sock, `no socket ${key}`);
    assert.deepEqual(sock.gatewayListeners.map((g) => g.name), want, `${key}: listener order`);
  }
  const all = entries(ir);
  for (const [name, want] of Object.entries(expect.backends ?? {})) {
    const e = all.get(name);
    assert.ok(e, `no route entry ${name}; have ${[...all.keys()].join(', ')}`);
    assert.deepEqual(e.backends.map((b) => `${b.cluster ?? '-'}*${b.weight}`), want, `${name}: backends`);
  }
  for (const [name, want] of Object.entries(expect.filters ?? {})) {
    const e = all.get(name);
    assert.ok(e, `no route entry ${name}`);
    assert.deepEqual(e.filters, want, `${name}: filters`);
  }
  for (const [name, fields] of Object.entries(expect.entries ?? {})) {
    const e = all.get(name) as unknown as Record<string, unknown> | undefined;
    assert.ok(e, `no route entry ${name}`);
    for (const [field, want] of Object.entries(fields)) assert.deepEqual(e[field] ?? null, want, `${name}: ${field}`);
  }
  for (const [name, want] of Object.entries(expect.clusters ?? {})) {
    assert.ok(ir.clusters[name], `no cluster ${name}; have ${Object.keys(ir.clusters).join(', ')}`);
    assert.deepEqual(ir.clusters[name].endpoints.map((e) => `${e.address}:${e.port}`), want, `${name}: endpoints`);
  }
  for (const [name, want] of Object.entries(expect.clusterProtocols ?? {})) {
    assert.ok(ir.clusters[name], `no cluster ${name}; have ${Object.keys(ir.clusters).join(', ')}`);
    assert.equal(ir.clusters[name].protocol, want, `${name}: protocol`);
  }
  for (const [name, want] of Object.entries(expect.clusterPolicies ?? {})) {
    assert.ok(ir.clusters[name], `no cluster ${name}; have ${Object.keys(ir.clusters).join(', ')}`);
    assert.deepEqual(ir.clusters[name].policy ?? null, want, `${name}: policy`);
  }
  for (const [key, want] of Object.entries(expect.socketBackends ?? {})) {
    const space = key.indexOf(' ');
    const sock = ir.listeners.find((s) => s.key === key.slice(0, space));
    assert.ok(sock, `no socket ${key.slice(0, space)}`);
    const found = sock.gatewayListeners.flatMap((gl) => gl.virtualHosts.flatMap((vh) => vh.routes)).find((r) => r.name === key.slice(space + 1));
    assert.ok(found, `no route entry ${key}`);
    assert.deepEqual(found.backends.map((b) => `${b.cluster ?? '-'}*${b.weight}`), want, `${key}: backends`);
  }
  for (const [key, want] of Object.entries(expect.client ?? {})) {
    const sock = ir.listeners.find((s) => s.key === key);
    assert.ok(sock, `no socket ${key}`);
    assert.deepEqual(sock.client ?? null, want, `${key}: client settings`);
  }
  for (const [query, want] of Object.entries(expect.effective ?? {})) {
    const [kind, ...parts] = query.split(' ');
    let got: KubeObject | null;
    if (kind === 'client') {
      const [ns, gw, listener] = parts[0].split('/');
      got = effectiveClientPolicy(result.policies.client, `${ns}/${gw}`, listener);
    } else {
      const target = Object.fromEntries(parts.map((p) => p.split('=')));
      got = effectiveBackendPolicy(result.policies.backend, target);
    }
    assert.equal(got === null ? null : `${got.metadata.namespace}/${got.metadata.name}`, want, `effective ${query}`);
  }
  for (const [key, want] of Object.entries(expect.certificates ?? {})) {
    const sock = ir.listeners.find((s) => s.key === key);
    assert.ok(sock?.tls, `no HTTPS socket ${key}`);
    const cns = sock.tls.certificates.map((t) => /CN=([^\n]*)/.exec(new X509Certificate(t.certChain).subject)?.[1] ?? '');
    assert.deepEqual(cns, want, `${key}: certificates`);
  }
}
