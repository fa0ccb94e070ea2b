// Drives the registry dashboard in headless Chromium. Usage: node test.mjs <msakit-registry binary>
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const binary = process.argv[2];
const TOKEN = 'dashboard-token';
let passed = 0;
let failed = 0;

function freePort() {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function startRegistry(extraArgs) {
  const port = await freePort();
  const args = typeof extraArgs === 'function' ? extraArgs(port) : extraArgs;
  const child = spawn(binary, ['--listen', `127.0.0.1:${port}`, ...args], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, RUST_LOG: 'warn' },
  });
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 200; i++) {
    try {
      if ((await fetch(`${base}/health`)).ok) return { child, base };
    } catch (_) { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('registry did not start');
}

async function check(name, body) {
  try {
    await body();
    passed++;
    console.log(`ok   ${name}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}: ${e.stack || e}`);
  }
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});

await check('a registered instance appears live, and the page drains it', async () => {
  const { child, base } = await startRegistry([]);
  try {
    const page = await browser.newPage();
    await page.goto(base + '/');
    await page.waitForSelector('#empty', { timeout: 10000 });
    await page.waitForFunction(() => document.getElementById('live').textContent === 'live');
    const registered = await fetch(`${base}/v1/services/orders/instances/orders-1`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ host: '10.0.0.7', port: 8080, zone: 'eu-1', metadata: { version: '1.4' } }),
    });
    if (!registered.ok) throw new Error(`register: ${registered.status}`);
    // No reload: the row arrives over the watch stream.
    const row = page.locator('tr[data-instance="orders-1"]');
    await row.waitFor({ timeout: 5000 });
    for (const text of ['10.0.0.7:8080', 'eu-1', 'version=1.4', 'UP']) {
      if (!(await row.textContent()).includes(text)) throw new Error(`row lacks ${text}: ${await row.textContent()}`);
    }
    await row.getByRole('button', { name: 'Take out of service' }).click();
    await page.waitForFunction(() =>
      document.querySelector('tr[data-instance="orders-1"] .status')?.textContent === 'OUT_OF_SERVICE', null, { timeout: 5000 });
    const instance = await (await fetch(`${base}/v1/services/orders/instances/orders-1`)).json();
    if (instance.status !== 'OUT_OF_SERVICE') throw new Error(`API says ${instance.status}`);
    mkdirSync(join(here, 'out'), { recursive: true });
    await page.screenshot({ path: join(here, 'out', 'dashboard.png'), fullPage: true });
  } finally {
    child.kill('SIGTERM');
  }
});

await check('with auth on, draining needs the token', async () => {
  const { child, base } = await startRegistry(['--tokens', TOKEN]);
  try {
    const registered = await fetch(`${base}/v1/services/pay/instances/pay-1`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
      body: JSON.stringify({ host: '10.0.0.8', port: 9000 }),
    });
    if (!registered.ok) throw new Error(`register: ${registered.status}`);
    const page = await browser.newPage();
    await page.goto(base + '/');
    const row = page.locator('tr[data-instance="pay-1"]');
    await row.waitFor({ timeout: 5000 });
    await row.getByRole('button', { name: 'Take out of service' }).click();
    await page.waitForFunction(() => document.getElementById('error').textContent.includes('token'), null, { timeout: 5000 });
    await page.fill('#token', TOKEN);
    await page.dispatchEvent('#token', 'change');
    await row.getByRole('button', { name: 'Take out of service' }).click();
    await page.waitForFunction(() =>
      document.querySelector('tr[data-instance="pay-1"] .status')?.textContent === 'OUT_OF_SERVICE', null, { timeout: 5000 });
  } finally {
    child.kill('SIGTERM');
  }
});

await check('a cluster node shows its role, term, leader and applied index', async () => {
  const dir = join(here, 'out', `cluster-${process.pid}`);
  mkdirSync(dir, { recursive: true });
  const { child, base } = await startRegistry((port) =>
    ['--node-id', '1', '--peers', `1=127.0.0.1:${port}`, '--data-dir', dir]);
  try {
    const page = await browser.newPage();
    await page.goto(base + '/');
    await page.waitForFunction(() => document.getElementById('cluster').textContent.includes('Leader'),
      null, { timeout: 10000 });
    const line = await page.textContent('#cluster');
    for (const text of ['cluster node 1', 'term ', 'leader 1', 'applied index', 'voters 1']) {
      if (!line.includes(text)) throw new Error(`cluster line lacks ${text}: ${line}`);
    }
  } finally {
    child.kill('SIGTERM');
  }
});

await browser.close();
console.log(`dashboard: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
