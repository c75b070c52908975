// Visits a list of URLs in one headless Chromium context (so cookies persist between them) and prints, for
// each, what the page showed: the fixture's /_fx/echo pages print the Cookie header the origin received.
//
// Usage: node check_cookies.mjs '<JSON array of {url, setConsoleCookie?}>'
import { chromium } from 'playwright-core';

const steps = JSON.parse(process.argv[2]);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync',
    '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE *.localhost'],
});
const out = [];
try {
  const page = await (await browser.newContext()).newPage();
  for (const step of steps) {
    await page.goto(step.url, { waitUntil: 'load', timeout: 15000 });
    if (step.script) {
      out.push(await page.evaluate(step.script));
    } else {
      out.push(await page.evaluate(() => document.body.innerText));
    }
  }
} catch (e) {
  out.push({ error: String(e) });
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(out) + '\n');
