/*
 * cobrowse agent, visitor side: runs after the in-page runtime in every proxied page and frame.
 *
 * Top frame: connects to the relay with the visitor credential from its <script> tag, shows the consent
 * prompt (in a closed shadow root), and only after consent sends a snapshot of the page followed by its
 * changes. Child frames (same- or cross-origin) send nothing themselves: they attach to their parent
 * frame's agent over a MessageChannel and start only when the top frame tells them to.
 *
 * Masking happens here, before anything leaves the page: elements matching `.no-cobrowse` (or a
 * configured selector), password and hidden inputs are sent as empty boxes with a fixed-length mask,
 * with no children, no text and no attributes but `class` and `type`. Wire format: docs/RELAY.md.
 *
 * Without a session attribute (the forward proxy injects it so, for now) the agent stays idle.
 */
(function () {
  'use strict';
  var script = document.currentScript;
  var session = script && script.getAttribute('data-cobrowse-session');
  var mode = (script && script.getAttribute('data-cobrowse-mode')) || 'session';
  if ((!session && mode !== 'forward') || Object.prototype.hasOwnProperty.call(window, '__cobrowse')) {
    return;
  }
  var token = script.getAttribute('data-cobrowse-token');
  // Page scripts run after us; they do not get to read the credential off the element.
  script.removeAttribute('data-cobrowse-token');
  var ORIGIN = new URL(script.src).origin;
  Object.defineProperty(window, '__cobrowse', {
    value: Object.freeze({ session: session || null, mode: mode, origin: ORIGIN }),
    enumerable: false,
  });
  // The forward proxy injects the agent with no session yet: it marks itself present and stays idle.
  if (!session || !token) return;

  // ---- natives, taken before any page script can replace them ------------------------------------------
  var stringify = JSON.stringify;
  var parse = JSON.parse;
  var NativeWebSocket = window.WebSocket;
  var NativeMutationObserver = window.MutationObserver;
  var NativeMessageChannel = window.MessageChannel;
  var attachShadow = Element.prototype.attachShadow;
  var matches = Element.prototype.matches;
  var setTimeoutN = window.setTimeout.bind(window);
  var clearTimeoutN = window.clearTimeout.bind(window);
  var cbUrl = typeof window.__cbUrl === 'function' ? window.__cbUrl : null;

  var MASK = '\u2022\u2022\u2022\u2022\u2022\u2022';
  var BUILTIN_MASK = '.no-cobrowse, input[type=password i], input[type=hidden i]';
  var maskSelector = BUILTIN_MASK;
  var isTop;
  try { isTop = window.top === window; } catch (e) { isTop = false; }

  // ---- node ids -------------------------------------------------------------------------------------------
  var ids = new WeakMap();
  var byId = new Map();
  var nextId = 1;
  var hasWeakRef = typeof WeakRef === 'function';
  function idOf(node) {
    var id = ids.get(node);
    if (!id) {
      id = nextId++;
      ids.set(node, id);
      byId.set(id, hasWeakRef ? new WeakRef(node) : node);
    }
    return id;
  }
  function nodeById(id) {
    var ref = byId.get(id);
    return ref && hasWeakRef ? ref.deref() : ref;
  }
  /** Forget a node's id, so it is sent whole next time (its masking changed). */
  function forget(node) {
    var id = ids.get(node);
    if (id) { ids.delete(node); byId.delete(id); }
  }

  // ---- masking ----------------------------------------------------------------------------------------------
  function isMaskedElement(el) {
    try { return matches.call(el, maskSelector); } catch (e) { return true; }
  }
  /** Whether a node is a masked element or inside one (crossing shadow roots up to their hosts). */
  function inMasked(node) {
    for (var n = node; n; n = n.parentNode || n.host) {
      if (n.nodeType === 1 && isMaskedElement(n)) return true;
    }
    return false;
  }
  function maskedValue(v) {
    return v ? MASK : '';
  }

  // ---- serialising -------------------------------------------------------------------------------------------
  var uiHost = null;
  var maskedState = new WeakMap();
  var shadowRoots = new WeakMap();
  var SKIP_CHILDREN = { SCRIPT: 1, NOSCRIPT: 1, TEMPLATE: 1, STYLE: 1, TEXTAREA: 1 };
  var DROP_ATTRIBUTES = { srcdoc: 1, nonce: 1, integrity: 1 };

  function attributes(el, masked) {
    var out = {};
    var list = el.attributes;
    for (var i = 0; i < list.length; i++) {
      var name = list[i].name;
      if (masked && name !== 'class' && name !== 'type') continue;
      if (name.slice(0, 2).toLowerCase() === 'on' || DROP_ATTRIBUTES[name]) continue;
      if (el.tagName === 'SCRIPT') continue;
      if (name === 'value' && el.tagName === 'INPUT') continue; // sent as the live value instead
      out[name] = list[i].value;
    }
    return out;
  }

  function cssOf(style) {
    try {
      var rules = style.sheet && style.sheet.cssRules;
      if (rules && rules.length) {
        var text = [];
        for (var i = 0; i < rules.length; i++) text.push(rules[i].cssText);
        return text.join('\n');
      }
    } catch (e) { /* cross-origin or detached */ }
    return style.textContent || '';
  }

  function formState(el, rec, masked) {
    var tag = el.tagName;
    if (tag === 'INPUT') {
      var type = (el.type || '').toLowerCase();
      if (type === 'checkbox' || type === 'radio') rec.k = masked ? false : !!el.checked;
      else if (type !== 'file') rec.v = masked ? maskedValue(el.value) : el.value;
    } else if (tag === 'TEXTAREA') {
      rec.v = masked ? maskedValue(el.value) : el.value;
    } else if (tag === 'SELECT' && !masked) {
      rec.s = el.selectedIndex;
    }
  }

  function serialize(node) {
    if (node === uiHost) return null;
    switch (node.nodeType) {
      case 3: return { i: idOf(node), x: node.data };
      case 8: return { i: idOf(node), o: 1 };
      case 1: return serializeElement(node);
      default: return null;
    }
  }

  function serializeElement(el) {
    var masked = isMaskedElement(el);
    maskedState.set(el, masked);
    var rec = { i: idOf(el), e: el.localName };
    if (el.namespaceURI === 'http://www.w3.org/2000/svg') rec.n = 's';
    else if (el.namespaceURI === 'http://www.w3.org/1998/Math/MathML') rec.n = 'm';
    rec.a = attributes(el, masked);
    formState(el, rec, masked);
    if (masked) {
      rec.m = 1;
      return rec;
    }
    if (el.tagName === 'STYLE') rec.css = cssOf(el);
    if (!SKIP_CHILDREN[el.tagName]) rec.c = children(el);
    var root = el.shadowRoot || shadowRoots.get(el);
    if (root) {
      observeRoot(root);
      rec.sh = { i: idOf(root), c: children(root) };
    }
    if (el.scrollTop || el.scrollLeft) { rec.sx = el.scrollLeft; rec.sy = el.scrollTop; }
    return rec;
  }

  function children(parent) {
    var out = [];
    for (var c = parent.firstChild; c; c = c.nextSibling) {
      var rec = serialize(c);
      if (rec) out.push(rec);
    }
    return out;
  }

  /** A child list for a changed parent: children the other side knows by reference, new ones whole. */
  function childRefs(parent, known) {
    var out = [];
    for (var c = parent.firstChild; c; c = c.nextSibling) {
      if (c === uiHost) continue;
      if (c.nodeType !== 1 && c.nodeType !== 3 && c.nodeType !== 8) continue;
      var id = ids.get(c);
      if (id && known(c)) out.push({ r: id });
      else {
        var rec = serialize(c);
        if (rec) out.push(rec);
      }
    }
    return out;
  }

  function baseUrl() {
    try { return cbUrl ? cbUrl(document.baseURI) : document.baseURI; } catch (e) { return location.href; }
  }

  function snapshotMessage(path) {
    var doc = { i: idOf(document), c: children(document) };
    var msg = {
      t: path ? 'fsnap' : 'snap',
      f: path,
      base: baseUrl(),
      doc: doc,
      vw: window.innerWidth,
      vh: window.innerHeight,
      sx: window.scrollX,
      sy: window.scrollY,
    };
    if (document.compatMode === 'BackCompat') msg.quirks = true;
    return msg;
  }

  // ---- sharing state ---------------------------------------------------------------------------------------
  var sharing = false;
  var path = '';
  var upstream = null; // function(messageObject): to the relay (top) or the parent frame (child)

  var maxMessage = 8 << 20;
  var encoder = new TextEncoder();

  /** Sends while sharing. Nothing above the relay's limit goes out (it would cost the connection): a
   * change that big is replaced by a new snapshot, and a snapshot that big by a notice. */
  function send(msg) {
    if (!sharing || !upstream) return;
    var text = stringify(msg);
    if (text.length * 3 > maxMessage && encoder.encode(text).length > maxMessage) {
      if (msg.t === 'snap' || msg.t === 'fsnap') text = stringify(tooLarge(msg));
      else return send(snapshotMessage(path));
    }
    upstream(text);
  }

  function tooLarge(msg) {
    var body = { i: 0, e: 'body', a: {}, c: [{ i: 0, x: 'This page is too large to mirror.' }] };
    msg.doc = { i: msg.doc.i, c: [{ i: 0, e: 'html', a: {}, c: [body] }] };
    return msg;
  }

  function startSharing(framePath) {
    path = framePath || '';
    sharing = true;
    // A page still being parsed is snapshotted once it is whole, not node by node.
    whenParsed(function () {
      if (!sharing) return;
      observe();
      showMaskOutline(true);
      send(snapshotMessage(path));
      startChildren();
    });
  }

  function whenParsed(fn) {
    if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', fn, { once: true });
    else fn();
  }

  function stopSharing() {
    sharing = false;
    if (observer) observer.disconnect();
    observed = new WeakSet();
    pending = null;
    showMaskOutline(false);
    hideOverlays();
    childFrames.forEach(function (port) { port.postMessage({ stop: true }); });
  }

  // ---- changes ---------------------------------------------------------------------------------------------
  var observer = null;
  var observed = new WeakSet();
  var pending = null;
  var flushTimer = 0;
  var FLUSH_MS = 40;

  function observeRoot(root) {
    if (!observer || observed.has(root)) return;
    observed.add(root);
    observer.observe(root, {
      childList: true, attributes: true, characterData: true, subtree: true,
    });
  }

  function observe() {
    if (!observer) observer = new NativeMutationObserver(onMutations);
    observed = new WeakSet();
    observeRoot(document);
  }

  function queue() {
    if (!pending) pending = { kids: new Set(), attrs: new Map(), text: new Set(), css: new Set() };
    if (!flushTimer) flushTimer = setTimeoutN(flush, FLUSH_MS);
    return pending;
  }

  function onMutations(records) {
    if (!sharing) return;
    var p = queue();
    for (var i = 0; i < records.length; i++) {
      var r = records[i];
      var target = r.target;
      if (target === uiHost || (uiHost && uiHost.contains(target))) continue;
      if (r.type === 'childList') {
        if (target.nodeName === 'STYLE') p.css.add(target);
        else p.kids.add(target);
      } else if (r.type === 'attributes') {
        var names = p.attrs.get(target) || new Set();
        names.add(r.attributeName);
        p.attrs.set(target, names);
      } else if (r.type === 'characterData') {
        if (target.parentNode && target.parentNode.nodeName === 'STYLE') p.css.add(target.parentNode);
        else p.text.add(target);
      }
    }
  }

  /** Known to the other side: has an id, and was sent (not re-serialised because its masking flipped). */
  function known(node) {
    return ids.has(node);
  }

  function flush() {
    flushTimer = 0;
    var p = pending;
    pending = null;
    if (!p || !sharing) return;
    var msg = { t: 'mut', f: path, kids: [], attr: [], text: [], css: [] };
    // Masking may have changed with a class: such an element is sent again, whole, under a new id.
    p.attrs.forEach(function (names, el) {
      if (el.nodeType === 1 && maskedState.has(el) && maskedState.get(el) !== isMaskedElement(el)) {
        forget(el);
        if (el.parentNode) p.kids.add(el.parentNode);
      }
    });
    p.kids.forEach(function (parent) {
      if (!ids.has(parent) || !parent.isConnected || inMasked(parent.host || parent)) return;
      if (parent.nodeType === 1 && SKIP_CHILDREN[parent.tagName]) return;
      msg.kids.push([ids.get(parent), childRefs(parent, known)]);
    });
    p.attrs.forEach(function (names, el) {
      var id = ids.get(el);
      if (!id || !el.isConnected) return;
      var masked = inMasked(el);
      names.forEach(function (name) {
        if (masked && !(isMaskedElement(el) && (name === 'class' || name === 'type'))) return;
        if (name.slice(0, 2).toLowerCase() === 'on' || DROP_ATTRIBUTES[name]) return;
        if (el.tagName === 'SCRIPT' || (name === 'value' && el.tagName === 'INPUT')) return;
        var attr = el.attributes.getNamedItem(name);
        msg.attr.push([id, name, attr ? attr.value : null]);
      });
    });
    p.text.forEach(function (node) {
      var id = ids.get(node);
      if (id && node.isConnected && !inMasked(node.parentNode)) msg.text.push([id, node.data]);
    });
    p.css.forEach(function (style) { queueCss(msg, style); });
    if (msg.kids.length || msg.attr.length || msg.text.length || msg.css.length) send(msg);
  }

  function queueCss(msg, style) {
    var id = ids.get(style);
    if (id && style.isConnected && !inMasked(style)) msg.css.push([id, cssOf(style)]);
  }

  // Stylesheets changed through the CSSOM (CSS-in-JS inserts rules into an empty <style>).
  ['insertRule', 'deleteRule', 'replaceSync', 'replace'].forEach(function (name) {
    var proto = CSSStyleSheet.prototype;
    var original = proto[name];
    if (typeof original !== 'function') return;
    proto[name] = function () {
      var result = original.apply(this, arguments);
      try {
        var owner = this.ownerNode;
        if (sharing && owner && owner.nodeName === 'STYLE') queue().css.add(owner);
      } catch (e) { /* never break the page */ }
      return result;
    };
  });

  // Shadow roots: open ones are reachable anyway; closed ones only through this hook.
  Element.prototype.attachShadow = function () {
    var root = attachShadow.apply(this, arguments);
    try {
      shadowRoots.set(this, root);
      if (sharing && ids.has(this)) {
        forget(this);
        if (this.parentNode) queue().kids.add(this.parentNode);
      }
    } catch (e) { /* never break the page */ }
    return root;
  };

  // ---- form values, scroll, viewport, pointer ----------------------------------------------------------------
  function onValue(event) {
    if (!sharing) return;
    var el = event.composedPath ? event.composedPath()[0] || event.target : event.target;
    var id = el && ids.get(el);
    if (!id) return;
    var masked = inMasked(el);
    var rec = {};
    formState(el, rec, masked);
    send({ t: 'val', f: path, id: id, v: rec.v, k: rec.k, s: rec.s });
  }
  document.addEventListener('input', onValue, true);
  document.addEventListener('change', onValue, true);

  // Values set by page scripts fire no event; their setters say so instead.
  var valueChanges = new Set();
  var valueTimer = 0;
  function valueChanged(el) {
    if (!sharing || !ids.has(el)) return;
    valueChanges.add(el);
    if (!valueTimer) valueTimer = setTimeoutN(flushValues, FLUSH_MS);
  }
  function flushValues() {
    valueTimer = 0;
    valueChanges.forEach(function (el) { onValue({ target: el }); });
    valueChanges.clear();
  }
  [[HTMLInputElement, 'value'], [HTMLInputElement, 'checked'], [HTMLTextAreaElement, 'value'],
    [HTMLSelectElement, 'value'], [HTMLSelectElement, 'selectedIndex']].forEach(function (p) {
    var d = Object.getOwnPropertyDescriptor(p[0].prototype, p[1]);
    if (!d || !d.set || !d.configurable) return;
    Object.defineProperty(p[0].prototype, p[1], {
      configurable: true,
      enumerable: d.enumerable,
      get: d.get,
      set: function (v) {
        d.set.call(this, v);
        try { valueChanged(this); } catch (e) { /* never break the page */ }
      },
    });
  });

  var scrolls = new Map();
  var scrollTimer = 0;
  function onScroll(event) {
    if (!sharing) return;
    var target = event.target === document ? document : event.target;
    if (!ids.has(target)) return;
    scrolls.set(target, true);
    if (!scrollTimer) scrollTimer = setTimeoutN(flushScrolls, 50);
  }
  function flushScrolls() {
    scrollTimer = 0;
    scrolls.forEach(function (_, target) {
      var doc = target === document;
      send({
        t: 'scroll', f: path, id: ids.get(target),
        x: doc ? window.scrollX : target.scrollLeft,
        y: doc ? window.scrollY : target.scrollTop,
      });
    });
    scrolls.clear();
  }
  document.addEventListener('scroll', onScroll, { capture: true, passive: true });

  window.addEventListener('resize', function () {
    send({ t: 'vp', f: path, w: window.innerWidth, h: window.innerHeight });
  }, { passive: true });

  var pointerAt = null;
  var pointerTimer = 0;
  document.addEventListener('mousemove', function (event) {
    if (!sharing) return;
    pointerAt = [event.clientX, event.clientY];
    if (!pointerTimer) {
      pointerTimer = setTimeoutN(function () {
        pointerTimer = 0;
        send({ t: 'ptr', f: path, x: pointerAt[0], y: pointerAt[1] });
      }, 50);
    }
  }, { capture: true, passive: true });

  // ---- agent tools, carried out here -------------------------------------------------------------------------
  function onTool(m, from) {
    if (!m || typeof m.t !== 'string') return;
    var target = typeof m.f === 'string' ? m.f : '';
    if (target !== path) return forwardTool(m, from);
    switch (m.t) {
      case 'ptr': return showAgentPointer(m.x, m.y);
      case 'hl': return highlight(m);
      case 'hl_clear': return hideOverlays();
      case 'scroll': return scrollBy(m);
      case 'click': return click(m, from);
      case 'resync': return send(snapshotMessage(path));
      default: return undefined;
    }
  }

  function scrollBy(m) {
    var el = m.id ? nodeById(m.id) : null;
    var dx = +m.dx || 0;
    var dy = +m.dy || 0;
    if (!el || el === document) window.scrollBy(dx, dy);
    else if (el.nodeType === 1) el.scrollBy(dx, dy);
  }

  function click(m, from) {
    var el = nodeById(m.id);
    var result = { t: 'result', f: path, what: 'click', to: from, id: m.id, ok: false };
    if (!control) result.reason = 'control not granted';
    else if (!el || el.nodeType !== 1 || !el.isConnected) result.reason = 'no such element';
    else if (inMasked(el)) result.reason = 'masked';
    else {
      if (typeof el.focus === 'function') el.focus();
      el.click();
      flashAt(el);
      result.ok = true;
    }
    send(result);
  }

  // ---- frames ---------------------------------------------------------------------------------------------
  var childFrames = new Map(); // iframe element → MessagePort
  var control = false;

  function frameElementFor(source) {
    var frames = document.querySelectorAll('iframe, frame');
    for (var i = 0; i < frames.length; i++) {
      if (frames[i].contentWindow === source) return frames[i];
    }
    return null;
  }

  function childPath(frame) {
    return path + '/' + idOf(frame);
  }

  /** Frames inside a masked element are never started: their content is masked as a whole. */
  function startChildren() {
    childFrames.forEach(function (port, frame) {
      if (!inMasked(frame)) port.postMessage({ start: childPath(frame), control: control });
    });
  }

  function forwardTool(m, from) {
    childFrames.forEach(function (port, frame) {
      var p = childPath(frame);
      if (m.f === p || m.f.indexOf(p + '/') === 0) port.postMessage({ tool: m, from: from, control: control });
    });
  }

  window.addEventListener('message', function (event) {
    var data = event.data;
    if (!data || data.__cobrowse !== 'frame-hello' || data.session !== session) return;
    event.stopImmediatePropagation();
    var frame = frameElementFor(event.source);
    if (!frame) return;
    var channel = new NativeMessageChannel();
    var port = channel.port1;
    childFrames.set(frame, port);
    port.onmessage = function (e) {
      // A child's own messages, already masked there: pass them up while sharing.
      if (sharing && typeof e.data === 'string' && upstream) upstream(e.data);
    };
    event.source.postMessage({ __cobrowse: 'frame-welcome', session: session }, '*', [channel.port2]);
    if (sharing && !inMasked(frame)) port.postMessage({ start: childPath(frame), control: control });
  }, true);

  function attachToParent() {
    var onWelcome = function (event) {
      var data = event.data;
      if (!data || data.__cobrowse !== 'frame-welcome' || data.session !== session || !event.ports[0]) return;
      // Only the parent window may attach us. Not a secret: the parent page's own scripts share that
      // window and could answer too; but what a child sends is already masked, and nothing is sent at
      // all until the top frame, which holds consent, says so.
      if (event.source !== window.parent) return;
      event.stopImmediatePropagation();
      window.removeEventListener('message', onWelcome, true);
      var port = event.ports[0];
      upstream = function (msg) { port.postMessage(typeof msg === 'string' ? msg : stringify(msg)); };
      port.onmessage = function (e) {
        var d = e.data || {};
        if (typeof d.control === 'boolean') control = d.control;
        if (d.start) startSharing(d.start);
        else if (d.stop) stopSharing();
        else if (d.tool) onTool(d.tool, d.from);
      };
    };
    window.addEventListener('message', onWelcome, true);
    window.parent.postMessage({ __cobrowse: 'frame-hello', session: session }, '*');
  }

  // ---- the visitor's own UI: prompt, agent pointer, highlights (closed shadow root) ---------------------------
  var ui = null;
  var CSS = [
    ':host { all: initial; }',
    '.bar { position: fixed; z-index: 2147483647; right: 16px; bottom: 16px; max-width: 360px;',
    '  font: 14px/1.4 system-ui, sans-serif; color: #111; background: #fff; border: 1px solid #ccc;',
    '  border-radius: 10px; box-shadow: 0 4px 20px rgba(0,0,0,.2); padding: 12px 14px; }',
    '.bar:empty { display: none; }',
    '.bar p { margin: 0 0 8px; } .bar button { font: inherit; margin: 2px 6px 2px 0; padding: 4px 10px;',
    '  border-radius: 6px; border: 1px solid #888; background: #f4f4f4; cursor: pointer; }',
    '.bar button.primary { background: #1a56db; color: #fff; border-color: #1a56db; }',
    '.pointer { position: fixed; z-index: 2147483647; width: 14px; height: 14px; margin: -7px 0 0 -7px;',
    '  border-radius: 50%; background: rgba(234, 88, 12, .85); border: 2px solid #fff; pointer-events: none;',
    '  display: none; }',
    '.hl { position: fixed; z-index: 2147483646; border: 3px solid #f59e0b; background: rgba(245,158,11,.15);',
    '  border-radius: 4px; pointer-events: none; display: none; }',
    '.flash { position: fixed; z-index: 2147483646; border: 2px solid #16a34a; border-radius: 50%;',
    '  width: 30px; height: 30px; margin: -15px 0 0 -15px; pointer-events: none; display: none; }',
  ].join('\n');

  function makeUi() {
    if (ui) return ui;
    uiHost = document.createElement('cobrowse-ui');
    var root = attachShadow.call(uiHost, { mode: 'closed' });
    var sheet = new CSSStyleSheet();
    sheet.replaceSync(CSS);
    root.adoptedStyleSheets = [sheet];
    var bar = document.createElement('div');
    bar.className = 'bar';
    var pointer = document.createElement('div');
    pointer.className = 'pointer';
    var hl = document.createElement('div');
    hl.className = 'hl';
    var flash = document.createElement('div');
    flash.className = 'flash';
    root.append(bar, pointer, hl, flash);
    ui = { root: root, bar: bar, pointer: pointer, hl: hl, flash: flash };
    mountUi();
    return ui;
  }

  /** The prompt goes in once the page is parsed, after <body>, so it never shifts the page's own markup. */
  function mountUi() {
    if (document.readyState === 'loading') return;
    if (uiHost && !uiHost.isConnected && document.documentElement) document.documentElement.appendChild(uiHost);
  }

  function button(label, primary, onClick) {
    var b = document.createElement('button');
    b.textContent = label;
    if (primary) b.className = 'primary';
    // Only the visitor's own clicks count: a page script cannot consent for them.
    b.addEventListener('click', function (e) { if (e.isTrusted) onClick(); });
    return b;
  }

  function render(state) {
    var u = makeUi();
    u.bar.textContent = '';
    var p = document.createElement('p');
    u.bar.appendChild(p);
    if (state === 'pending') {
      p.textContent = 'A support agent would like to see this page with you. Outlined fields are never shared.';
      u.bar.append(button('Share this page', true, function () { answer(true); }),
        button('Not now', false, function () { answer(false); }));
    } else if (state === 'declined') {
      p.textContent = 'Not sharing.';
      u.bar.append(button('Share with the agent', false, function () { answer(true); }));
    } else if (state === 'granted') {
      p.textContent = agentsWatching
        ? 'Sharing this page with ' + agentsWatching + (agentsWatching === 1 ? ' agent.' : ' agents.')
        : 'Sharing this page; no agent is watching yet.';
      u.bar.append(
        control
          ? button('Take back control', false, function () { setControl(false); })
          : button('Allow the agent to click', false, function () { setControl(true); }),
        button('Stop sharing', false, function () { answer(false); }),
        button('End session', false, function () { relaySend({ t: 'end' }); }));
    } else {
      p.textContent = 'Co-browsing has ended.';
    }
  }

  function showAgentPointer(x, y) {
    var u = makeUi();
    u.pointer.style.left = (+x || 0) + 'px';
    u.pointer.style.top = (+y || 0) + 'px';
    u.pointer.style.display = 'block';
  }

  var hlTimer = 0;
  function highlight(m) {
    var rect = null;
    if (m.id) {
      var el = nodeById(m.id);
      if (el && el.nodeType === 1 && el.isConnected) rect = el.getBoundingClientRect();
    } else if (m.rect) {
      rect = { left: +m.rect.x || 0, top: +m.rect.y || 0, width: +m.rect.w || 0, height: +m.rect.h || 0 };
    }
    if (!rect) return;
    var u = makeUi();
    u.hl.style.left = rect.left - 3 + 'px';
    u.hl.style.top = rect.top - 3 + 'px';
    u.hl.style.width = rect.width + 'px';
    u.hl.style.height = rect.height + 'px';
    u.hl.style.display = 'block';
    if (hlTimer) clearTimeoutN(hlTimer);
    hlTimer = setTimeoutN(function () { u.hl.style.display = 'none'; }, 4000);
    // Visible to tests and assistive tech alike: what is highlighted now.
    uiHost.setAttribute('data-highlight', m.id ? String(m.id) : 'rect');
  }

  function flashAt(el) {
    var u = makeUi();
    var r = el.getBoundingClientRect();
    u.flash.style.left = r.left + r.width / 2 + 'px';
    u.flash.style.top = r.top + r.height / 2 + 'px';
    u.flash.style.display = 'block';
    setTimeoutN(function () { u.flash.style.display = 'none'; }, 600);
  }

  function hideOverlays() {
    if (!ui) return;
    ui.pointer.style.display = 'none';
    ui.hl.style.display = 'none';
    if (uiHost) uiHost.removeAttribute('data-highlight');
  }

  var outline = null;
  function showMaskOutline(on) {
    try {
      if (!outline) {
        outline = new CSSStyleSheet();
        outline.replaceSync(maskSelector + ' { outline: 1px dashed rgba(220, 38, 38, .55) !important; outline-offset: 1px; }');
      }
      var sheets = Array.prototype.filter.call(document.adoptedStyleSheets, function (s) { return s !== outline; });
      document.adoptedStyleSheets = on ? sheets.concat([outline]) : sheets;
    } catch (e) { /* an old engine: no outline */ }
  }

  // ---- the relay (top frame) ------------------------------------------------------------------------------
  var ws = null;
  var consent = 'pending';
  var agentsWatching = 0;
  var ended = false;
  var retry = 500;

  function relaySend(msg) {
    if (ws && ws.readyState === 1) ws.send(typeof msg === 'string' ? msg : stringify(msg));
  }

  function answer(granted) {
    relaySend({ t: 'consent', granted: granted });
    consent = granted ? 'granted' : 'declined';
    if (!granted) control = false;
    if (granted && !sharing) startSharing('');
    else if (!granted && sharing) stopSharing();
    render(consent);
  }

  function setControl(granted) {
    control = granted;
    relaySend({ t: 'control', granted: granted });
    childFrames.forEach(function (port) { port.postMessage({ control: control }); });
    render(consent);
  }

  function onRelay(event) {
    var msg;
    try { msg = parse(event.data); } catch (e) { return; }
    switch (msg.t) {
      case 'hello':
        setMask(msg.mask);
        if (msg.max > 0) maxMessage = msg.max;
        onPresence(msg.presence);
        break;
      case 'presence': onPresence(msg); break;
      case 'need_snap': if (sharing) { send(snapshotMessage('')); startChildren(); } break;
      case 'tool': onTool(msg.m, msg.from); break;
      case 'ended': end(); break;
      default: break;
    }
  }

  function setMask(extra) {
    var selectors = [BUILTIN_MASK];
    (extra || []).forEach(function (s) {
      try { document.querySelector(s); selectors.push(s); } catch (e) { /* not a selector: ignored */ }
    });
    maskSelector = selectors.join(', ');
    outline = null;
  }

  function onPresence(p) {
    if (!p) return;
    agentsWatching = p.agents || 0;
    control = !!p.control;
    consent = p.consent;
    if (consent === 'granted' && !sharing) startSharing('');
    else if (consent !== 'granted' && sharing) stopSharing();
    render(consent);
  }

  function end() {
    ended = true;
    if (sharing) stopSharing();
    render('ended');
  }

  function connect() {
    var url = ORIGIN.replace(/^http/, 'ws') + '/__cobrowse/relay?t=' + encodeURIComponent(token);
    ws = new NativeWebSocket(url);
    ws.onmessage = onRelay;
    ws.onopen = function () { retry = 500; };
    ws.onclose = function (e) {
      ws = null;
      if (sharing) stopSharing();
      // Ended, revoked, replaced by a newer page, or refused: no reconnecting.
      if (ended || e.code === 4010 || e.code === 4011 || e.code === 4009 || e.code === 4002) {
        if (e.code === 4010 || e.code === 4011) end();
        return;
      }
      setTimeoutN(connect, retry);
      retry = Math.min(retry * 2, 10000);
    };
  }

  if (isTop) {
    upstream = relaySend;
    makeUi();
    connect();
    whenParsed(function () {
      mountUi();
      // The page may rebuild <html>'s children; keep the prompt mounted.
      new NativeMutationObserver(mountUi).observe(document.documentElement, { childList: true });
    });
  } else {
    attachToParent();
  }
})();
