// Pieces of the hostile config tests: temp config directories, the objects
// of one good application (GatewayClass, Gateway, Service pointing at a
// real local backend, HTTPRoute), writers that rewrite a file in place, a
// watchdog that frees a reader blocked on a FIFO, and a check that a
// secret's text appears nowhere in an error.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { GATEWAY_CLASS, serviceYAML } from '../e2e/helpers.ts';

export function tempDir(t: { after(fn: () => void): void }, prefix = 'gatehouse-hostile-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Writes a file the way editors and kubectl-like tools do: a temp file renamed into place. */
export function writeRenamed(dir: string, name: string, text: string): void {
  const tmp = path.join(dir, `.${name}.tmp`);
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, path.join(dir, name));
}

/** A Namespace object: the smallest valid config file. */
export function namespaceYAML(name: string): string {
  return `apiVersion: v1\nkind: Namespace\nmetadata: {name: ${name}}\n`;
}

/**
 * One application that serves: our GatewayClass, Gateway `default/gw` with
 * an HTTP listener on `port`, Service `app` whose endpoint is the backend
 * on 127.0.0.1:`backendPort`, and HTTPRoute `app` sending `paths` to it.
 */
export function appYAML(port: number, backendPort: number, paths: string[] = ['/']): string {
  return `${GATEWAY_CLASS}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: gatehouse
  listeners: [{name: http, port: ${port}, protocol: HTTP}]
---
${serviceYAML('default', 'app', 80, backendPort)}---
${routeYAML('app', paths)}`;
}

/** HTTPRoute `default/name`, one rule per path, each to Service app:80. */
export function routeYAML(name: string, paths: string[]): string {
  return `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: ${name}, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
${paths.map((p) => `  - matches: [{path: {type: PathPrefix, value: ${p}}}]\n    backendRefs: [{name: app, port: 80}]\n`).join('')}`;
}

/**
 * Frees a reader blocked opening `fifo` (as a loader that does not refuse
 * FIFOs is), after `afterMs`: a thread of its own opens the write end
 * without blocking, which only succeeds once a reader waits, and closes it
 * at once, so the reader sees end of file. Without a blocked reader it
 * does nothing until stopped. A blocked main thread cannot run a timer, so
 * a test of a fixed loader fails in time instead of hanging the suite.
 */
export function fifoWatchdog(fifo: string, afterMs: number): { stop(): Promise<void> } {
  const worker = new Worker(`
    const fs = require('node:fs');
    const { workerData } = require('node:worker_threads');
    setTimeout(function poke() {
      try {
        fs.closeSync(fs.openSync(workerData.fifo, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK));
      } catch {
        setTimeout(poke, 50);
      }
    }, workerData.afterMs);
  `, { eval: true, workerData: { fifo, afterMs } });
  worker.unref();
  return { async stop() { await worker.terminate(); } };
}

/**
 * Every run of `minLength` characters of `secret` that appears in `text`
 * (none, for an error that quotes nothing of it).
 */
export function leakedPieces(text: string, secret: string, minLength = 8): string[] {
  const found: string[] = [];
  for (let i = 0; i + minLength <= secret.length; i++) {
    const piece = secret.slice(i, i + minLength);
    if (text.includes(piece)) found.push(piece);
  }
  return found;
}
