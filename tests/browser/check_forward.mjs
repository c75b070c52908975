// Loads an HTTPS fixture page in headless Chromium twice — directly, then through the forward proxy with
// the proxy's CA trusted by its SPKI hash (and no other certificate errors ignored) — and prints one JSON
// object: each run's page checks, agent, console errors and failed responses.
//
// Usage: node check_forward.mjs <origin port> <proxy port> <CA SPKI sha256 base64> <URL>
// Driven by tests/browser.rs, which starts the fixture origin and the proxy and asserts on the output.

import { chromium } from 'playwright-core';

const [originPort, proxyPort, spki, url] = process.argv.slice(2);
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const baseArgs = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

async function run(name, args, ignoreHTTPSErrors) {
  const browser = await chromium.launch({ executablePath, headless: true, args: [...baseArgs, ...args] });
  try {
    const context = await browser.newContext({ ignoreHTTPSErrors });
    const consoleErrors = [];
    const failedResponses = [];
    const requests = [];
    context.on('request', (r) => requests.push(r.url()));
    context.on('response', (r) => { if (r.status() >= 400) failedResponses.push(`${r.status()} ${r.url()}`); });
    const page = await context.newPage();
    page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
    page.on('pageerror', (e) => consoleErrors.push(`pageerror: ${e.message}`));
    await page.goto(url, { waitUntil: 'load', timeout: 20000 });
    await page.waitForFunction(() => window.__checksDone === true, null, { timeout: 20000 });
    const checks = await page.evaluate(() => window.__checks);
    const why = await page.evaluate(() => window.__checkWhy || {});
    const agent = await page.evaluate(() => (window.__cobrowse
      ? { mode: window.__cobrowse.mode, origin: window.__cobrowse.origin } : null));
    const agentTags = await page.evaluate(() => document.querySelectorAll('script[data-cobrowse-mode]').length);
    return { name, checks, why, agent, agentTags, consoleErrors, failedResponses, requests, finalUrl: page.url() };
  } finally {
    await browser.close();
  }
}

const result = {};
try {
  result.direct = await run('direct', [`--host-resolver-rules=MAP *.test 127.0.0.1:${originPort}`], true);
  // Through the proxy: every name is unresolvable for the browser itself, so any request that did not
  // go through the proxy fails; certificates must verify against the proxy's CA.
  result.forward = await run('forward', [
    `--proxy-server=http://127.0.0.1:${proxyPort}`,
    `--ignore-certificate-errors-spki-list=${spki}`,
    '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
  ], false);
} catch (e) {
  result.error = String(e && e.stack || e);
}
process.stdout.write(JSON.stringify(result) + '\n');
