// The admin page in a real headless browser (Debian's chromium driven by
// playwright-core): the Gateway and its routes shown, the explain form
// answered, and tenant-chosen names rendered as text, never run. Skips,
// saying why, when chromium or playwright-core is absent.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { request } from 'undici';
import path from 'node:path';
import { startAdminServer } from '../../src/admin/server.ts';
import { freePort, startGatehouse } from '../e2e/helpers.ts';
import { writeExplainConfig } from './fixtures.ts';

const CHROMIUM = process.env.GATEHOUSE_CHROMIUM ?? '/usr/bin/chromium';
// Flags that work on CI machines and here: as root no sandbox, and no background connections (a closed network refuses them).
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/**
 * The part of playwright-core this test uses, declared here so that the
 * typecheck does not depend on the package being installed.
 */
interface Locator {
  waitFor(o?: { timeout?: number }): Promise<void>;
  innerText(): Promise<string>;
  fill(value: string): Promise<void>;
  click(): Promise<void>;
  count(): Promise<number>;
  nth(i: number): Locator;
}
interface Page {
  goto(url: string, o?: { timeout?: number }): Promise<unknown>;
  on(event: 'pageerror', f: (e: Error) => void): void;
  on(event: 'console', f: (m: { type(): string; text(): string }) => void): void;
  locator(selector: string): Locator;
  getByRole(role: string, o: { name: string }): Locator;
  waitForTimeout(ms: number): Promise<void>;
  evaluate<T>(f: () => T): Promise<T>;
  close(): Promise<void>;
}
interface Browser { newPage(): Promise<Page>; close(): Promise<void> }
interface Playwright {
  chromium: { launch(o: { executablePath: string; headless: boolean; args: string[]; timeout: number }): Promise<Browser> };
}

async function loadPlaywright(): Promise<Playwright | string> {
  if (!fs.existsSync(CHROMIUM)) return `${CHROMIUM} is missing (apt-get install -y chromium, or set GATEHOUSE_CHROMIUM)`;
  try {
    // A variable, so that the typecheck does not look for the package.
    const name = 'playwright-core';
    return await import(name) as Playwright;
  } catch {
    // A copy installed outside the project (npm install --prefix DIR playwright-core): point at it.
    const where = process.env.GATEHOUSE_PLAYWRIGHT_CORE;
    if (where === undefined) return 'playwright-core is not installed (npm ci installs it; or set GATEHOUSE_PLAYWRIGHT_CORE)';
    return await import(path.resolve(where, 'index.mjs')) as Playwright;
  }
}

const pw = await loadPlaywright();
const skip = typeof pw === 'string' ? `browser test skipped: ${pw}` : false;
if (skip) process.stderr.write(`${skip}\n`);

let browser: Browser;
before(async () => {
  if (typeof pw === 'string') return;
  // playwright gives each launch a new empty profile directory of its own, and removes it on close.
  browser = await pw.chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 30_000 });
});
after(async () => {
  await browser?.close();
});

test('the page shows the Gateway and its routes, and the explain form answers', { skip, timeout: 60_000 }, async () => {
  const httpPort = await freePort();
  const dir = writeExplainConfig({ httpPort, httpsPort: await freePort() });
  const gw = await startGatehouse(dir, '127.62.0.0/24');
  const page = await browser.newPage();
  const problems: string[] = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
  try {
    await page.goto(`http://${gw.admin}/`, { timeout: 10_000 });
    await page.getByRole('heading', { name: 'Gateway default/gw' }).waitFor({ timeout: 10_000 });
    const routes = await page.locator('section.gateway table').nth(2).innerText();
    assert.match(routes, /default\/nova\b/);
    assert.match(routes, /other\/intruder[\s\S]*NotAllowedByListeners/);
    // Requests per route and listener; a parent that refused the route shows none.
    assert.match(routes, /default\/nova\tnova\.example\thttp\t0\t/);
    assert.match(routes, /other\/intruder\t\(any\)\t\(all\)\t-\t/);
    const listeners = await page.locator('section.gateway table').nth(1).innerText();
    assert.match(listeners, /https\s+\d+\s+HTTPS\s+\*\.example/);

    await page.locator('#explain-request').fill(`GET http://nova.example:${httpPort}/v2.1/servers -H "X-Foo: baz"`);
    await page.getByRole('button', { name: 'Explain' }).click();
    const outcome = page.locator('#explain-result .outcome');
    await outcome.waitFor({ timeout: 10_000 });
    assert.equal(await outcome.innerText(), 'ROUTED: routed');
    assert.equal(await page.locator('#explain-result .route').innerText(), 'rule default/nova/foo-baz/0 of route default/nova');
    assert.match(await page.locator('#explain-result').innerText(), /skipped default\/nova-old\/0\/0: also matches, but default\/nova\/foo-baz\/0 comes first: it has more header matches/);

    // Live rates: requests sent between two refreshes (every 5 s) show as a rate on the next.
    const gwAddress = '127.62.0.1';
    for (let i = 0; i < 10; i++) {
      // undici's request, not fetch: fetch may not set Host.
      const r = await request(`http://${gwAddress}:${httpPort}/v2.1/flavors`, { headers: { host: 'nova.example' } });
      await r.body.dump();
    }
    const deadline = Date.now() + 12_000;
    let row = '';
    while (Date.now() < deadline) {
      row = (await page.locator('section.gateway table').nth(2).innerText()).split('\n').find((l) => l.startsWith('default/nova\tnova.example\thttp\t')) ?? '';
      if (/\t10 \(\d+\.\d\/s\)\t/.test(row)) break;
      await page.waitForTimeout(250);
    }
    const rate = /\t10 \((\d+\.\d)\/s\)\t/.exec(row);
    assert.ok(rate !== null, `no rate in ${JSON.stringify(row)}`);
    assert.ok(Number(rate[1]) > 0, row);
    assert.deepEqual(problems, []);
  } finally {
    await page.close();
    await gw.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('names chosen by tenants render as text: no script runs, no element is made', { skip, timeout: 60_000 }, async () => {
  const evil = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">';
  const condition = { type: 'Accepted', status: 'False', reason: evil, message: evil };
  const admin = await startAdminServer({
    address: '127.0.0.1:0', resources: () => [], errors: () => [], config: () => null, ready: () => true,
    overview: () => ({ gateways: [{ name: evil, addresses: [], conditions: [condition],
      listeners: [{ name: evil, port: 80, protocol: 'HTTP', hostname: evil, attachedRoutes: 0, conditions: [condition] }],
      routes: [{ name: evil, hostnames: [evil], sectionName: evil, conditions: [condition], requests: null }] }] }),
    explain: () => ({ routed: false, outcome: evil, route: null, sockets: [{ name: evil, verdict: 'skipped', reason: evil }],
      listeners: [], virtualHosts: [], routes: [], unattached: [{ route: evil, parentRef: {}, conditions: [condition] }] }),
  });
  const page = await browser.newPage();
  try {
    await page.goto(`http://127.0.0.1:${admin.port}/`);
    await page.locator('section.gateway h2').waitFor({ timeout: 10_000 });
    assert.equal(await page.locator('section.gateway h2').innerText(), `Gateway ${evil}`);
    await page.locator('#explain-request').fill('GET http://x/');
    await page.getByRole('button', { name: 'Explain' }).click();
    await page.locator('#explain-result .outcome').waitFor({ timeout: 10_000 });
    assert.equal(await page.locator('#explain-result .outcome').innerText(), `NOT ROUTED: ${evil}`);
    // Given an image time to fail and its handler to run, were there one.
    await page.waitForTimeout(300);
    assert.equal(await page.evaluate(() => (globalThis as { pwned?: number }).pwned), undefined);
    assert.equal(await page.locator('img').count(), 0);
    assert.equal(await page.locator('body script').count(), 0);
  } finally {
    await page.close();
    await admin.close();
  }
});
