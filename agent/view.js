/*
 * The agent's live view: joins the relay with the agent credential from this page's link, rebuilds the
 * visitor's page from snapshots and changes inside a sandboxed frame (no `allow-scripts`, and the page's
 * CSP allows no script but this one), and turns the agent's mouse into tools: point, highlight, scroll,
 * click (once the visitor allows it). Wire format: docs/RELAY.md.
 *
 * What the visitor sends is treated as untrusted markup: event-handler attributes, script-bearing URLs,
 * frame sources, <base> and <meta http-equiv> are dropped before anything reaches the mirror.
 */
(function () {
  'use strict';
  var SVG = 'http://www.w3.org/2000/svg';
  var MATHML = 'http://www.w3.org/1998/Math/MathML';
  var MASK = '\u2022\u2022\u2022\u2022\u2022\u2022';
  var token = new URLSearchParams(location.search).get('t') || '';
  var $ = function (id) { return document.getElementById(id); };
  var mirror = $('mirror');
  var screen = $('screen');
  var stage = $('stage');
  var overlay = $('overlay');
  var statusEl = $('status');
  var resultEl = $('result');
  var visitorPointer = $('visitor-pointer');
  var region = $('region');
  var clickButton = document.querySelector('[data-tool="click"]');

  var presence = null;
  var visitorSeen = false;
  var live = false;
  var ended = false;
  var frames = {};
  var viewport = { w: 1280, h: 800 };
  var scale = 1;
  var tool = 'pointer';
  var ws = null;
  var retry = 500;
  var ready = false;
  var backlog = [];

  // ---- the mirror frame -------------------------------------------------------------------------------------
  mirror.addEventListener('load', function () {
    ready = true;
    var queued = backlog;
    backlog = [];
    queued.forEach(onMessage);
  }, { once: true });
  mirror.srcdoc = '<!doctype html><html><head></head><body></body></html>';

  function newFrame(doc) {
    return { doc: doc, nodes: new Map(), ids: new WeakMap(), masked: new WeakSet(), scrolls: [] };
  }

  var URL_ATTRIBUTES = { href: 1, src: 1, action: 1, formaction: 1, 'xlink:href': 1, poster: 1, data: 1, background: 1 };
  var FRAME_LIKE = { iframe: 1, frame: 1, embed: 1, object: 1, portal: 1, fencedframe: 1 };

  function safeAttribute(tag, name, value) {
    var n = name.toLowerCase();
    if (n.slice(0, 2) === 'on' || n === 'srcdoc' || n === 'autofocus' || n === 'autoplay') return false;
    if (FRAME_LIKE[tag] && (n === 'src' || n === 'data')) return false;
    if (tag === 'meta' && n === 'http-equiv') return false;
    if (tag === 'base' || tag === 'script') return false;
    if (URL_ATTRIBUTES[n] && /^\s*(javascript|vbscript|data:text\/html)/i.test(String(value))) return false;
    return true;
  }

  function build(frame, rec) {
    var doc = frame.doc;
    var node;
    if (rec.x !== undefined) node = doc.createTextNode(String(rec.x));
    else if (rec.o) node = doc.createComment('');
    else if (rec.e) node = buildElement(frame, rec);
    else return null;
    frame.nodes.set(rec.i, node);
    frame.ids.set(node, rec.i);
    return node;
  }

  function createElement(doc, rec) {
    try {
      if (rec.n === 's') return doc.createElementNS(SVG, rec.e);
      if (rec.n === 'm') return doc.createElementNS(MATHML, rec.e);
      return doc.createElement(rec.e);
    } catch (e) {
      return doc.createElement('span');
    }
  }

  function buildElement(frame, rec) {
    var el = createElement(frame.doc, rec);
    var tag = rec.e.toLowerCase();
    var attrs = rec.a || {};
    Object.keys(attrs).forEach(function (name) {
      if (!safeAttribute(tag, name, attrs[name])) return;
      try { el.setAttribute(name, attrs[name]); } catch (e) { /* an invalid name: skipped */ }
    });
    if (tag === 'script') el.setAttribute('type', 'text/x-cobrowse-inert');
    if (rec.m) {
      frame.masked.add(el);
      el.setAttribute('data-cobrowse-masked', '');
      if (tag !== 'input' && tag !== 'textarea' && tag !== 'select') el.textContent = MASK;
    }
    if (rec.css !== undefined) el.textContent = rec.css;
    (rec.c || []).forEach(function (child) {
      var node = build(frame, child);
      if (node) el.appendChild(node);
    });
    if (rec.sh) {
      try {
        var root = el.attachShadow({ mode: 'open' });
        frame.nodes.set(rec.sh.i, root);
        (rec.sh.c || []).forEach(function (child) {
          var node = build(frame, child);
          if (node) root.appendChild(node);
        });
      } catch (e) { /* this element cannot host a shadow root here */ }
    }
    formState(el, rec);
    if (rec.sx || rec.sy) frame.scrolls.push([el, rec.sx || 0, rec.sy || 0]);
    return el;
  }

  function formState(el, rec) {
    try {
      if (rec.v !== undefined) el.value = rec.v;
      if (rec.k !== undefined) el.checked = !!rec.k;
      if (rec.s !== undefined) el.selectedIndex = rec.s;
    } catch (e) { /* not a form control */ }
  }

  function ensureBase(doc, base) {
    var head = doc.head || doc.documentElement.insertBefore(doc.createElement('head'), doc.documentElement.firstChild);
    var ours = doc.createElement('base');
    ours.setAttribute('data-cobrowse-base', '');
    try { ours.href = new URL(base).href; } catch (e) { return; }
    head.insertBefore(ours, head.firstChild);
  }

  /** Replaces a frame document's content with a snapshot. */
  function fill(frame, msg) {
    var doc = frame.doc;
    frame.scrolls = [];
    frame.nodes.set(msg.doc.i, doc);
    frame.ids.set(doc, msg.doc.i);
    var htmlRec = (msg.doc.c || []).filter(function (c) { return c.e && c.e.toLowerCase() === 'html'; })[0];
    if (!htmlRec) return;
    var html = build(frame, htmlRec);
    if (doc.documentElement) doc.replaceChild(html, doc.documentElement);
    else doc.appendChild(html);
    ensureBase(doc, msg.base);
    frame.scrolls.forEach(function (s) { s[0].scrollLeft = s[1]; s[0].scrollTop = s[2]; });
    scrollDocument(doc, msg.sx || 0, msg.sy || 0);
  }

  function scrollDocument(doc, x, y) {
    var root = doc.scrollingElement || doc.documentElement;
    if (root) { root.scrollLeft = x; root.scrollTop = y; }
  }

  function onSnapshot(msg) {
    frames = {};
    frames[''] = newFrame(mirror.contentDocument);
    fill(frames[''], msg);
    viewport = { w: msg.vw || viewport.w, h: msg.vh || viewport.h };
    layout();
    live = true;
    showState();
  }

  function onFrameSnapshot(msg) {
    var path = String(msg.f || '');
    var cut = path.lastIndexOf('/');
    var parent = frames[path.slice(0, cut)];
    var holder = parent && parent.nodes.get(+path.slice(cut + 1));
    var doc = holder && holder.contentDocument;
    if (!doc) return;
    frames[path] = newFrame(doc);
    fill(frames[path], msg);
  }

  // ---- changes ------------------------------------------------------------------------------------------------
  function onMutations(msg) {
    var frame = frames[msg.f || ''];
    if (!frame) return;
    var missing = false;
    (msg.kids || []).forEach(function (k) { missing = applyKids(frame, k[0], k[1]) || missing; });
    (msg.attr || []).forEach(function (a) {
      var el = frame.nodes.get(a[0]);
      if (!el || el.nodeType !== 1 || !safeAttribute(el.localName, a[1], a[2])) return;
      try {
        if (a[2] === null) el.removeAttribute(a[1]);
        else el.setAttribute(a[1], a[2]);
      } catch (e) { /* invalid name */ }
    });
    (msg.text || []).forEach(function (t) {
      var node = frame.nodes.get(t[0]);
      if (node && node.nodeType === 3) node.data = t[1];
    });
    (msg.css || []).forEach(function (c) {
      var style = frame.nodes.get(c[0]);
      if (style && style.nodeType === 1) style.textContent = c[1];
    });
    if (missing) send({ t: 'resync' });
  }

  /** Sets a parent's children to exactly the listed ones: known ones moved into place, new ones built. */
  function applyKids(frame, parentId, list) {
    var parent = frame.nodes.get(parentId);
    if (!parent || parent === frame.doc) return !parent;
    frame.scrolls = [];
    var wanted = [];
    for (var i = 0; i < list.length; i++) {
      var node = list[i].r ? frame.nodes.get(list[i].r) : build(frame, list[i]);
      if (!node) return true;
      wanted.push(node);
    }
    var ours = parent.localName === 'head' ? parent.querySelector('base[data-cobrowse-base]') : null;
    Array.prototype.slice.call(parent.childNodes).forEach(function (c) {
      if (c !== ours && wanted.indexOf(c) < 0) parent.removeChild(c);
    });
    var ref = ours ? ours.nextSibling : parent.firstChild;
    wanted.forEach(function (node) {
      if (node === ref) ref = ref.nextSibling;
      else parent.insertBefore(node, ref);
    });
    return false;
  }

  function onValue(msg) {
    var frame = frames[msg.f || ''];
    var el = frame && frame.nodes.get(msg.id);
    if (el) formState(el, msg);
  }

  function onScroll(msg) {
    var frame = frames[msg.f || ''];
    var node = frame && frame.nodes.get(msg.id);
    if (!node) return;
    if (node === frame.doc) scrollDocument(node, msg.x, msg.y);
    else if (node.nodeType === 1) { node.scrollLeft = msg.x; node.scrollTop = msg.y; }
  }

  /** Where a frame's viewport sits in the top frame's viewport. */
  function frameOffset(path) {
    var x = 0;
    var y = 0;
    var parts = String(path || '').split('/').slice(1);
    var at = '';
    for (var i = 0; i < parts.length; i++) {
      var frame = frames[at];
      var holder = frame && frame.nodes.get(+parts[i]);
      if (!holder) break;
      var r = holder.getBoundingClientRect();
      x += r.left + holder.clientLeft;
      y += r.top + holder.clientTop;
      at += '/' + parts[i];
    }
    return { x: x, y: y };
  }

  function onVisitorPointer(msg) {
    var o = frameOffset(msg.f);
    visitorPointer.style.left = o.x + (+msg.x || 0) + 'px';
    visitorPointer.style.top = o.y + (+msg.y || 0) + 'px';
    visitorPointer.style.display = 'block';
  }

  function onResult(msg) {
    if (msg.what !== 'click') return;
    resultEl.textContent = msg.ok ? 'Clicked.' : 'Click refused: ' + (msg.reason || 'refused') + '.';
    resultEl.setAttribute('data-ok', msg.ok ? 'true' : 'false');
  }

  // ---- state ----------------------------------------------------------------------------------------------------
  function showState() {
    var state;
    var text;
    if (ended) { state = 'ended'; text = 'Session ended'; }
    else if (!presence) { state = 'connecting'; text = 'Connecting…'; }
    else if (!presence.visitor) {
      state = visitorSeen ? 'left' : 'waiting';
      text = visitorSeen ? 'Visitor left' : 'Waiting for the visitor';
    } else if (presence.consent === 'pending') { state = 'consent'; text = 'Waiting for the visitor\u2019s consent'; }
    else if (presence.consent === 'declined') { state = 'declined'; text = 'The visitor declined'; }
    else if (!live) { state = 'syncing'; text = 'Loading the visitor\u2019s page…'; }
    else { state = 'live'; text = 'Live'; }
    statusEl.textContent = text;
    statusEl.setAttribute('data-state', state);
    var canClick = !!(presence && presence.control && presence.consent === 'granted');
    clickButton.disabled = !canClick;
    clickButton.title = canClick ? 'Click on the visitor\u2019s page' : 'Needs the visitor\u2019s permission';
    if (!canClick && tool === 'click') selectTool('pointer');
    $('agents').textContent = presence ? presence.agents + (presence.agents === 1 ? ' agent' : ' agents') : '';
  }

  function onPresence(p) {
    presence = p;
    if (p.visitor) visitorSeen = true;
    else { live = false; visitorPointer.style.display = 'none'; }
    if (p.consent !== 'granted') live = false;
    showState();
  }

  function onMessage(raw) {
    if (!ready) { backlog.push(raw); return; }
    var msg;
    try { msg = JSON.parse(raw); } catch (e) { return; }
    switch (msg.t) {
      case 'hello': onPresence(msg.presence); break;
      case 'presence': onPresence(msg); break;
      case 'snap': onSnapshot(msg); break;
      case 'fsnap': onFrameSnapshot(msg); break;
      case 'mut': onMutations(msg); break;
      case 'val': onValue(msg); break;
      case 'scroll': onScroll(msg); break;
      case 'vp': viewport = { w: msg.w || viewport.w, h: msg.h || viewport.h }; layout(); break;
      case 'ptr': onVisitorPointer(msg); break;
      case 'result': onResult(msg); break;
      case 'refused': resultEl.textContent = 'Refused: ' + msg.reason + '.'; resultEl.setAttribute('data-ok', 'false'); break;
      case 'ended': ended = true; showState(); break;
      default: break;
    }
  }

  // ---- the relay -------------------------------------------------------------------------------------------------
  function send(msg) {
    if (ws && ws.readyState === 1) ws.send(JSON.stringify(msg));
  }

  function connect() {
    var url = location.origin.replace(/^http/, 'ws') + '/__cobrowse/relay?t=' + encodeURIComponent(token);
    ws = new WebSocket(url);
    ws.onmessage = function (e) { onMessage(e.data); };
    ws.onopen = function () { retry = 500; };
    ws.onclose = function (e) {
      ws = null;
      if (e.code === 4010 || e.code === 4011) { ended = true; showState(); return; }
      if (e.code === 4013) { statusEl.textContent = 'Too many agents are watching this session'; return; }
      if (ended) return;
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 10000);
    };
  }

  // ---- layout and tools --------------------------------------------------------------------------------------------
  function layout() {
    var s = Math.min(stage.clientWidth / viewport.w, stage.clientHeight / viewport.h, 1);
    scale = s > 0 ? s : 1;
    screen.style.width = viewport.w + 'px';
    screen.style.height = viewport.h + 'px';
    screen.style.transform = 'scale(' + scale + ')';
  }
  window.addEventListener('resize', layout);

  /** A mouse event's position in the visitor's viewport. */
  function at(event) {
    var r = screen.getBoundingClientRect();
    return { x: (event.clientX - r.left) / scale, y: (event.clientY - r.top) / scale };
  }

  /** The mirrored element under a point, with its frame path and id (as the visitor knows them). */
  function pick(x, y) {
    var path = '';
    var frame = frames[''];
    if (!frame) return null;
    var el = frame.doc.elementFromPoint(x, y);
    while (el && (el.localName === 'iframe' || el.localName === 'frame')) {
      var next = path + '/' + frame.ids.get(el);
      if (!frames[next]) break;
      var r = el.getBoundingClientRect();
      x -= r.left + el.clientLeft;
      y -= r.top + el.clientTop;
      path = next;
      frame = frames[next];
      el = frame.doc.elementFromPoint(x, y);
    }
    while (el && !frame.ids.has(el)) el = el.parentNode;
    if (!el || el === frame.doc) return null;
    var masked = false;
    for (var n = el; n; n = n.parentNode || n.host) if (frame.masked.has(n)) masked = true;
    return { f: path, id: frame.ids.get(el), masked: masked };
  }

  function selectTool(name) {
    tool = name;
    document.querySelectorAll('[data-tool]').forEach(function (b) {
      b.setAttribute('aria-pressed', b.getAttribute('data-tool') === name ? 'true' : 'false');
    });
  }
  document.querySelectorAll('[data-tool]').forEach(function (b) {
    b.addEventListener('click', function () { selectTool(b.getAttribute('data-tool')); });
  });
  $('end').addEventListener('click', function () { send({ t: 'end' }); });

  var lastPointer = 0;
  overlay.addEventListener('mousemove', function (e) {
    var p = at(e);
    if (dragFrom) showRegion(dragFrom, p);
    var now = Date.now();
    if (tool !== 'pointer' || now - lastPointer < 40) return;
    lastPointer = now;
    send({ t: 'ptr', x: Math.round(p.x), y: Math.round(p.y) });
  });

  var dragFrom = null;
  overlay.addEventListener('mousedown', function (e) {
    if (tool === 'highlight') dragFrom = at(e);
  });
  overlay.addEventListener('mouseup', function (e) {
    var p = at(e);
    if (tool === 'highlight' && dragFrom) {
      var from = dragFrom;
      dragFrom = null;
      if (Math.abs(p.x - from.x) + Math.abs(p.y - from.y) > 8) {
        send({ t: 'hl', f: '', rect: rectOf(from, p) });
        return;
      }
      region.style.display = 'none';
      var hit = pick(p.x, p.y);
      if (hit) send({ t: 'hl', f: hit.f, id: hit.id });
    } else if (tool === 'click') {
      var target = pick(p.x, p.y);
      if (!target) return;
      resultEl.textContent = target.masked ? 'That element is masked; the visitor\u2019s page will refuse.' : '';
      send({ t: 'click', f: target.f, id: target.id });
    }
  });

  function rectOf(a, b) {
    return {
      x: Math.round(Math.min(a.x, b.x)), y: Math.round(Math.min(a.y, b.y)),
      w: Math.round(Math.abs(a.x - b.x)), h: Math.round(Math.abs(a.y - b.y)),
    };
  }

  function showRegion(a, b) {
    var r = rectOf(a, b);
    region.style.left = r.x + 'px';
    region.style.top = r.y + 'px';
    region.style.width = r.w + 'px';
    region.style.height = r.h + 'px';
    region.style.display = 'block';
  }

  var wheel = { dx: 0, dy: 0, timer: 0, f: '' };
  overlay.addEventListener('wheel', function (e) {
    e.preventDefault();
    wheel.dx += e.deltaX;
    wheel.dy += e.deltaY;
    var p = at(e);
    var hit = pick(p.x, p.y);
    wheel.f = hit ? hit.f : '';
    if (wheel.timer) return;
    wheel.timer = setTimeout(function () {
      send({ t: 'scroll', f: wheel.f, dx: Math.round(wheel.dx), dy: Math.round(wheel.dy) });
      wheel.dx = 0;
      wheel.dy = 0;
      wheel.timer = 0;
    }, 50);
  }, { passive: false });

  layout();
  showState();
  connect();
})();
