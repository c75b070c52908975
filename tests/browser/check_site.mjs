// Loads the fixture shop in headless Chromium twice — directly, then through the proxy — and prints one JSON
// object: each run's page checks, console errors, and (proxied run) every URL the browser requested.
//
// Usage: node check_site.mjs <origin port> <direct URL> <visitor URL>
// Driven by tests/browser.rs, which starts the fixture origin and the proxy and asserts on the output.

import { chromium } from 'playwright-core';

const [originPort, directUrl, visitorUrl] = process.argv.slice(2);
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const baseArgs = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

async function run(name, url, resolverRules) {
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    args: [...baseArgs, `--host-resolver-rules=${resolverRules}`],
  });
  try {
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    const requests = [];
    const consoleErrors = [];
    const failedResponses = [];
    context.on('request', (r) => requests.push(r.url()));
    context.on('response', (r) => { if (r.status() >= 400) failedResponses.push(`${r.status()} ${r.url()}`); });
    context.on('page', (page) => watch(page, consoleErrors));
    const page = await context.newPage();
    watch(page, consoleErrors);
    await page.goto(url, { waitUntil: 'load', timeout: 20000 });
    await page.waitForFunction(() => window.__checksDone === true, null, { timeout: 20000 });
    const checks = await page.evaluate(() => window.__checks);
    const why = await page.evaluate(() => window.__checkWhy || {});
    const agent = await page.evaluate(() => (window.__cobrowse ? window.__cobrowse.session : null));
    const runtime = await page.evaluate(() => (window.__cobrowseRuntime
      ? { unmapped: window.__cobrowseRuntime.unmapped, hooked: window.__cobrowseRuntime.hooked } : null));
    const frames = page.frames().map((f) => f.url());
    const timing = await page.evaluate(() => {
      const n = performance.getEntriesByType('navigation')[0];
      return n ? { domContentLoaded: Math.round(n.domContentLoadedEventEnd), load: Math.round(n.loadEventEnd) } : null;
    });
    return { name, checks, why, agent, runtime, timing, requests, consoleErrors, failedResponses, frames, finalUrl: page.url() };
  } finally {
    await browser.close();
  }
}

function watch(page, sink) {
  page.on('console', (m) => { if (m.type() === 'error') sink.push(m.text()); });
  page.on('pageerror', (e) => sink.push(`pageerror: ${e.message}`));
}

const result = {};
try {
  // Direct: every *.test host is the fixture origin.
  result.direct = await run('direct', directUrl, `MAP *.test 127.0.0.1:${originPort}`);
  // Proxied: nothing but the proxy's own *.localhost hosts can be reached, so any escaping request fails.
  result.proxied = await run('proxied', visitorUrl, 'MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE *.localhost');
} catch (e) {
  result.error = String(e && e.stack || e);
}
process.stdout.write(JSON.stringify(result) + '\n');
