// Co-browsing end to end in headless Chromium, with two browser contexts: the visitor on the proxied page
// and the agent on the agent view. Prints one JSON object of observations; tests/browser.rs asserts on it.
//
// Usage: node check_cobrowse.mjs <visitor URL> <agent URL>
//
// Every wait here is bounded, and what a step saw is reported rather than judged: a step that times out
// reports false (or null), and the Rust side fails with the step's name.

import { chromium } from 'playwright-core';

const [visitorUrl, agentUrl] = process.argv.slice(2);
const WAIT = 15000;
const out = { steps: {} };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync',
    '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE *.localhost'],
});

/** Frames the visitor's page sent to the relay, in order. */
const sent = [];
const errors = [];

/** Runs a bounded wait; reports whether it was met. */
async function step(name, fn) {
  try {
    const value = await fn();
    // A met wait hands back a JSHandle of the predicate's value: report it as met, not as an object.
    out.steps[name] = value && typeof value.jsonValue === 'function' ? true : (value ?? true);
  } catch (e) {
    out.steps[name] = false;
    errors.push(`${name}: ${String(e && e.message || e).split('\n')[0]}`);
  }
}

/** Clicks a button in the visitor's prompt. It lives in a closed shadow root that page scripts (and
 * selector engines) cannot reach, so find it through the DevTools DOM and click it with the real mouse. */
async function clickPrompt(page, label) {
  const cdp = await page.context().newCDPSession(page);
  const deadline = Date.now() + WAIT;
  while (Date.now() < deadline) {
    const { root } = await cdp.send('DOM.getDocument', { depth: -1, pierce: true });
    const button = findButton(root, label);
    if (button) {
      const { model } = await cdp.send('DOM.getBoxModel', { backendNodeId: button.backendNodeId });
      const q = model.content;
      await page.mouse.click((q[0] + q[4]) / 2, (q[1] + q[5]) / 2);
      await cdp.detach();
      return true;
    }
    await page.waitForTimeout(100);
  }
  await cdp.detach();
  throw new Error(`no prompt button "${label}"`);
}

function findButton(node, label) {
  if (node.nodeName === 'BUTTON' && (node.children || []).some((c) => c.nodeValue === label)) return node;
  for (const child of [...(node.children || []), ...(node.shadowRoots || [])]) {
    const hit = findButton(child, label);
    if (hit) return hit;
  }
  return null;
}

/** Waits until a predicate over the agent's mirror holds. Each predicate finds the mirror itself: it runs
 * in the agent page, where nothing from this file is in scope. */
function mirrorWait(agent, predicate, arg) {
  return agent.waitForFunction(predicate, arg, { timeout: WAIT });
}

function mirrorText(text) {
  const doc = document.getElementById('mirror').contentDocument;
  return !!(doc && doc.body && doc.body.innerText.includes(text));
}

/** The centre of a mirrored element, in the agent page's coordinates. */
function mirrorPoint(agent, selector) {
  return agent.evaluate((sel) => {
    const frame = document.getElementById('mirror');
    const el = frame.contentDocument.querySelector(sel);
    if (!el) return null;
    const r = el.getBoundingClientRect();
    const f = frame.getBoundingClientRect();
    const scale = f.width / frame.offsetWidth;
    return { x: f.left + (r.left + r.width / 2) * scale, y: f.top + (r.top + r.height / 2) * scale };
  }, selector);
}

async function agentClick(agent, selector) {
  const p = await mirrorPoint(agent, selector);
  if (!p) throw new Error(`${selector} is not in the mirror`);
  await agent.mouse.click(p.x, p.y);
}

try {
  const agentContext = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  const visitorContext = await browser.newContext({ viewport: { width: 1000, height: 700 } });
  const agent = await agentContext.newPage();
  const visitor = await visitorContext.newPage();
  visitor.on('websocket', (ws) => {
    if (!ws.url().includes('/__cobrowse/relay')) return;
    ws.on('framesent', (f) => sent.push(String(f.payload)));
  });
  agent.on('pageerror', (e) => errors.push(`agent pageerror: ${e.message}`));
  visitor.on('pageerror', (e) => errors.push(`visitor pageerror: ${e.message}`));
  const state = () => agent.evaluate(() => document.getElementById('status').getAttribute('data-state'));

  await agent.goto(agentUrl, { waitUntil: 'load', timeout: WAIT });
  await step('agentWaitsForVisitor', () =>
    agent.waitForFunction(() => document.getElementById('status').dataset.state === 'waiting', null, { timeout: WAIT }));

  await visitor.goto(visitorUrl, { waitUntil: 'load', timeout: WAIT });
  await step('agentWaitsForConsent', () =>
    agent.waitForFunction(() => document.getElementById('status').dataset.state === 'consent', null, { timeout: WAIT }));
  // Give a misbehaving agent every chance to leak before consent: the visitor types, scrolls and moves.
  await visitor.locator('#name').pressSequentially('typed before consent');
  await visitor.mouse.move(200, 200);
  await visitor.mouse.wheel(0, 200);
  await visitor.waitForTimeout(1000);
  out.framesBeforeConsent = sent.slice();
  out.mirrorBeforeConsent = await agent.evaluate(() => document.getElementById('mirror').contentDocument.body.innerText);
  await visitor.mouse.wheel(0, -200);

  await step('consentGiven', () => clickPrompt(visitor, 'Share this page'));
  await step('agentSeesPage', () => mirrorWait(agent, mirrorText, 'Welcome to the fixture shop'));
  out.agentState = await state();
  // For diagnosis: which of the visitor's frames run the agent.
  out.visitorFrames = await Promise.all(visitor.frames().map(async (f) => ({
    url: f.url().replace(/\?.*$/, ''),
    agent: await f.evaluate(() => !!window.__cobrowse).catch(() => null),
  })));
  await step('agentSeesCrossOriginFrame', () => mirrorWait(agent, () => {
    const doc = document.getElementById('mirror').contentDocument;
    const f = doc.querySelector('#other-frame');
    const inner = f && f.contentDocument;
    return !!(inner && inner.body && inner.body.innerText.includes('FRAME-TEXT-OTHER-ORIGIN'));
  }));
  await step('agentSeesShadowDom', () => mirrorWait(agent, () => {
    const doc = document.getElementById('mirror').contentDocument;
    const host = doc.querySelector('#shadow-host');
    return !!(host && host.shadowRoot && host.shadowRoot.textContent.includes('Inside the shadow root'));
  }));
  await step('agentSeesCssomRule', () => mirrorWait(agent, () => {
    const doc = document.getElementById('mirror').contentDocument;
    const t = doc.querySelector('#title');
    return !!t && doc.defaultView.getComputedStyle(t).color === 'rgb(0, 128, 0)';
  }));
  out.maskedInMirror = await agent.evaluate(() => {
    const doc = document.getElementById('mirror').contentDocument;
    const card = doc.querySelector('#card, [data-cobrowse-masked].card');
    const pw = doc.querySelector('input[type=password]');
    return { card: card ? card.textContent : null, password: pw ? pw.value : null };
  });

  await visitor.locator('#name').fill('');
  await visitor.locator('#name').pressSequentially('Hello agent');
  await step('agentSeesTyping', () => mirrorWait(agent, () => {
    const doc = document.getElementById('mirror').contentDocument;
    const i = doc.querySelector('#name');
    return !!i && i.value === 'Hello agent';
  }));
  await visitor.evaluate(() => { document.getElementById('name').value = 'Set by page script'; });
  await step('agentSeesScriptSetValue', () => mirrorWait(agent, () => {
    const doc = document.getElementById('mirror').contentDocument;
    const i = doc.querySelector('#name');
    return !!i && i.value === 'Set by page script';
  }));
  await visitor.evaluate(() => { document.getElementById('password').value = 'SCRIPT-SET-PW-8'; });
  await visitor.locator('#password').fill('');
  await visitor.locator('#password').pressSequentially('hunter2-TYPED-PW');
  await visitor.evaluate(() => {
    const li = document.createElement('li');
    li.textContent = 'Added by page script';
    document.getElementById('list').appendChild(li);
    document.getElementById('card').firstChild.data = 'Card number SECRET-CARD-5555 ';
  });
  await step('agentSeesMutation', () => mirrorWait(agent, mirrorText, 'Added by page script'));

  await visitor.mouse.move(300, 300);
  await visitor.mouse.wheel(0, 900);
  await step('agentFollowsScroll', () => mirrorWait(agent, () => {
    const doc = document.getElementById('mirror').contentDocument;
    return (doc.scrollingElement || doc.documentElement).scrollTop > 500;
  }));
  await visitor.evaluate(() => window.scrollTo(0, 0));
  await step('agentScrollsBack', () => mirrorWait(agent, () => {
    const doc = document.getElementById('mirror').contentDocument;
    return (doc.scrollingElement || doc.documentElement).scrollTop < 10;
  }));
  await step('agentSeesVisitorPointer', () =>
    agent.waitForFunction(() => document.getElementById('visitor-pointer').style.display === 'block', null, { timeout: WAIT }));

  // Highlight: the agent clicks the title with the highlight tool; the visitor's page shows it.
  await agent.click('[data-tool="highlight"]');
  await agentClick(agent, '#title');
  await step('visitorSeesHighlight', () =>
    visitor.waitForFunction(() => !!document.querySelector('cobrowse-ui[data-highlight]'), null, { timeout: WAIT }));

  // Click: refused without control, then granted from the prompt.
  out.clickToolBeforeControl = await agent.evaluate(() => document.querySelector('[data-tool="click"]').disabled);
  await step('controlGranted', () => clickPrompt(visitor, 'Allow the agent to click'));
  await step('clickToolEnabled', () =>
    agent.waitForFunction(() => !document.querySelector('[data-tool="click"]').disabled, null, { timeout: WAIT }));
  await agent.click('[data-tool="click"]');
  await step('agentClickReachesVisitor', async () => {
    await agentClick(agent, '#buy');
    await visitor.waitForFunction(() => window.__clicks === 1, null, { timeout: WAIT });
  });
  await step('agentSeesClickEffect', () => mirrorWait(agent, mirrorText, 'Bought 1'));
  await step('maskedClickRefused', async () => {
    await agentClick(agent, 'button[data-cobrowse-masked]');
    await agent.waitForFunction(() => document.getElementById('result').dataset.ok === 'false', null, { timeout: WAIT });
    return agent.evaluate(() => document.getElementById('result').textContent);
  });
  out.maskedClicked = await visitor.evaluate(() => window.__maskedClicked === true);

  // Navigation: another page of the site, then another proxied origin. The session follows.
  await visitor.click('#next');
  await step('agentFollowsNavigation', () => mirrorWait(agent, mirrorText, 'Second page of the shop'));
  await visitor.click('#away');
  await step('agentFollowsOtherOrigin', () => mirrorWait(agent, mirrorText, 'A page on another site'));
  out.finalState = await state();

  await step('visitorLeaves', async () => {
    await visitor.close();
    await agent.waitForFunction(() => document.getElementById('status').dataset.state === 'left', null, { timeout: WAIT });
  });
} catch (e) {
  out.error = String(e && e.stack || e);
} finally {
  await browser.close();
}
out.framesSent = sent;
out.errors = errors;
process.stdout.write(JSON.stringify(out) + '\n');
