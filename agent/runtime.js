/*
 * cobrowse in-page runtime: runs first in every proxied page (served as the start of agent.js).
 *
 * Server-side rewriting covers markup, stylesheets and headers. This keeps URLs that page scripts build
 * inside the proxy (fetch, XHR, WebSocket, element setters, innerHTML, …), and shows scripts the target
 * site's own URLs when they read them back (document.URL, a.href, getAttribute, window.origin, …).
 *
 * The URL scheme mirrors src/url_codec.rs: `<target host>.<session>-<h|s>[6|f][-port].<public host>`.
 * Every hook falls back to the page's own value if anything goes wrong, and counts it: it never throws.
 */
(function () {
  'use strict';
  var global = typeof window !== 'undefined' ? window : self;
  var inPage = typeof document !== 'undefined';
  // In a page the agent <script> carries the session; in a worker the proxy prepends a config line.
  var script = inPage ? document.currentScript : null;
  var config = inPage
    ? script && { session: script.getAttribute('data-cobrowse-session'), public: script.src }
    : global.__cobrowseConfig;
  if (!config || !config.session || global.__cobrowseRuntime) {
    return;
  }
  var SESSION = config.session;
  var PUBLIC = new URL(config.public);
  var PUBLIC_HOST = PUBLIC.hostname;
  var PUBLIC_PORT = PUBLIC.port ? ':' + PUBLIC.port : '';
  var PUBLIC_SECURE = PUBLIC.protocol === 'https:';
  var stats = { unmapped: 0, hooked: 0 };
  Object.defineProperty(global, '__cobrowseRuntime', { value: stats });

  function miss() {
    stats.unmapped += 1;
  }

  // ---- URL codec ----------------------------------------------------------------------------------------

  function isProxyHost(hostname) {
    return hostname === PUBLIC_HOST || hostname.slice(-(PUBLIC_HOST.length + 1)) === '.' + PUBLIC_HOST;
  }

  function expandV6(bracketed) {
    var text = bracketed.slice(1, -1);
    var halves = text.split('::');
    var head = halves[0] ? halves[0].split(':') : [];
    var tail = halves.length > 1 && halves[1] ? halves[1].split(':') : [];
    var zeros = [];
    for (var i = head.length + tail.length; i < 8; i++) zeros.push('0');
    return head.concat(zeros, tail).map(function (g) { return parseInt(g, 16).toString(16); }).join('-');
  }

  /** The proxy host (with port) for a target URL. */
  function proxyAuthority(u) {
    var secure = u.protocol === 'https:' || u.protocol === 'wss:';
    var host = u.hostname;
    var kind = secure ? 's' : 'h';
    if (host.charAt(0) === '[') {
      host = expandV6(host);
      kind += '6';
    } else if (host.slice(-1) === '.') {
      host = host.slice(0, -1);
      kind += 'f';
    }
    var port = u.port ? '-' + u.port : '';
    return host + '.' + SESSION + '-' + kind + port + '.' + PUBLIC_HOST + PUBLIC_PORT;
  }

  /** The target origin a proxy hostname stands for, or null. */
  function targetOrigin(hostname) {
    if (!isProxyHost(hostname) || hostname === PUBLIC_HOST) return null;
    var inner = hostname.slice(0, -(PUBLIC_HOST.length + 1));
    var dot = inner.lastIndexOf('.');
    if (dot < 0) return null;
    var tag = inner.slice(dot + 1).split('-');
    var labels = inner.slice(0, dot);
    var kind = tag[1] || '';
    var secure = kind.charAt(0) === 's';
    var host = kind.indexOf('6') > 0 ? '[' + labels.split('-').join(':') + ']' : labels;
    if (kind.indexOf('f') > 0) host += '.';
    return (secure ? 'https://' : 'http://') + host + (tag[2] ? ':' + tag[2] : '');
  }

  /** Mirrors url_codec::needs_resolving: only references naming a network scheme or an authority. */
  function needsResolving(s) {
    var r = s.replace(/^[\u0000-\u0020]+|[\u0000-\u0020]+$/g, '');
    if (/[\t\n\r]/.test(r)) return true;
    if (/^[\/\\][\/\\]/.test(r)) return true;
    return /^(https?|wss?|ftp|file):/i.test(r);
  }

  var nativeBaseURI = inPage ? Object.getOwnPropertyDescriptor(Node.prototype, 'baseURI').get : null;

  /** The base URL in target terms: what the site's own relative URLs resolve against. */
  function targetBase() {
    return toTarget(inPage ? nativeBaseURI.call(document) : global.location.href);
  }

  /** A URL as the page wrote it → the URL the browser must use. Non-network URLs pass untouched. */
  function toProxy(value) {
    if (value === null || value === undefined) return value;
    var s = String(value);
    if (!needsResolving(s)) return s;
    try {
      var u = new URL(s, targetBase());
      if (!/^(https?|wss?):$/.test(u.protocol) || isProxyHost(u.hostname)) return s;
      var ws = u.protocol === 'ws:' || u.protocol === 'wss:';
      var scheme = ws ? (PUBLIC_SECURE ? 'wss:' : 'ws:') : PUBLIC.protocol;
      return scheme + '//' + proxyAuthority(u) + u.pathname + u.search + u.hash;
    } catch (e) {
      miss();
      return s;
    }
  }

  /** A proxy URL → the target URL it stands for; anything else unchanged. */
  function toTarget(value) {
    if (typeof value !== 'string' || value.indexOf(PUBLIC_HOST) < 0) return value;
    try {
      var u = new URL(value);
      var origin = targetOrigin(u.hostname);
      if (!origin) return value;
      var scheme = u.protocol === 'ws:' || u.protocol === 'wss:'
        ? (origin.charAt(4) === 's' ? 'wss:' : 'ws:') + origin.slice(origin.indexOf('//'))
        : origin;
      return scheme + u.pathname + u.search + u.hash;
    } catch (e) {
      miss();
      return value;
    }
  }

  function mapSrcset(value, f) {
    return String(value).split(',').map(function (candidate) {
      var m = /^(\s*)(\S+)(.*)$/.exec(candidate);
      return m ? m[1] + f(m[2]) + m[3] : candidate;
    }).join(',');
  }

  function mapCss(value) {
    var s = String(value);
    if (s.indexOf('//') < 0 && s.indexOf('\\') < 0 && !/(https?|wss?):/i.test(s)) return s;
    return s
      .replace(/url\(\s*(['"]?)([^'")]*)\1\s*\)/gi, function (all, q, url) {
        var mapped = toProxy(url);
        return mapped === url ? all : 'url(' + q + mapped + q + ')';
      })
      .replace(/@import\s+(['"])([^'"]*)\1/gi, function (all, q, url) {
        return '@import ' + q + toProxy(url) + q;
      });
  }

  // ---- hook helpers -------------------------------------------------------------------------------------

  function guard(f, fallback) {
    return function () {
      try {
        return f.apply(this, arguments);
      } catch (e) {
        miss();
        return fallback.apply(this, arguments);
      }
    };
  }

  /** Wraps an accessor on `proto`: setter maps in, getter maps out. */
  function wrapAccessor(proto, name, mapIn, mapOut) {
    var d = proto && Object.getOwnPropertyDescriptor(proto, name);
    if (!d || !d.configurable || !d.get) return;
    Object.defineProperty(proto, name, {
      configurable: true,
      enumerable: d.enumerable,
      get: mapOut ? guard(function () { return mapOut.call(this, d.get.call(this)); }, d.get) : d.get,
      set: d.set && mapIn ? guard(function (v) { d.set.call(this, mapIn.call(this, v)); }, d.set) : d.set,
    });
    stats.hooked += 1;
  }

  /** Wraps a method: `mapArgs` rewrites the argument list in place. */
  function wrapMethod(obj, name, mapArgs) {
    var original = obj && obj[name];
    if (typeof original !== 'function') return;
    obj[name] = guard(function () {
      var args = Array.prototype.slice.call(arguments);
      mapArgs.call(this, args);
      return original.apply(this, args);
    }, original);
    stats.hooked += 1;
  }

  /** Wraps a constructor so its first argument (a URL) is mapped. */
  function wrapConstructor(name) {
    var Original = global[name];
    if (typeof Original !== 'function') return;
    global[name] = new Proxy(Original, {
      construct: function (target, args, newTarget) {
        if (args.length > 0) {
          try { args[0] = toProxy(args[0] instanceof URL ? args[0].href : args[0]); } catch (e) { miss(); }
        }
        return Reflect.construct(target, args, newTarget === global[name] ? target : newTarget);
      },
    });
    stats.hooked += 1;
  }

  // ---- network APIs -------------------------------------------------------------------------------------

  var nativeFetch = global.fetch;
  if (typeof nativeFetch === 'function') {
    global.fetch = guard(function (input, init) {
      if (input instanceof Request) {
        var mapped = toProxy(input.url);
        if (mapped !== input.url) input = new Request(mapped, input);
      } else if (input instanceof URL) {
        input = toProxy(input.href);
      } else {
        input = toProxy(input);
      }
      return nativeFetch.call(this, input, init);
    }, nativeFetch);
  }
  wrapConstructor('Request');
  if (global.XMLHttpRequest) wrapMethod(XMLHttpRequest.prototype, 'open', function (a) { if (a.length > 1) a[1] = toProxy(a[1] instanceof URL ? a[1].href : a[1]); });
  ['WebSocket', 'EventSource', 'Worker', 'SharedWorker'].forEach(wrapConstructor);
  if (typeof importScripts === 'function') {
    wrapMethod(global, 'importScripts', function (a) { for (var i = 0; i < a.length; i++) a[i] = toProxy(a[i]); });
  }
  defineScriptHelpers();
  if (!inPage) {
    finish();
    return;
  }
  wrapMethod(Navigator.prototype, 'sendBeacon', function (a) { a[0] = toProxy(a[0]); });
  wrapMethod(window, 'open', function (a) { if (a.length > 0 && a[0] !== undefined) a[0] = toProxy(a[0]); });
  wrapMethod(History.prototype, 'pushState', function (a) { if (a.length > 2 && a[2] != null) a[2] = toProxy(a[2]); });
  wrapMethod(History.prototype, 'replaceState', function (a) { if (a.length > 2 && a[2] != null) a[2] = toProxy(a[2]); });
  wrapMethod(window, 'postMessage', function (a) {
    if (typeof a[1] === 'string' && a[1] !== '*' && a[1] !== '/') a[1] = new URL(toProxy(a[1])).origin;
  });

  // A site's service worker would run outside the runtime and cache proxy URLs as its own: refuse the
  // registration the way browsers refuse one they cannot allow, so the site carries on with the network.
  // (The proxy also refuses the script fetch itself: `Service-Worker: script`.)
  if (navigator.serviceWorker && ServiceWorkerContainer.prototype.register) {
    ServiceWorkerContainer.prototype.register = function () {
      return Promise.reject(new DOMException('Service workers are not available while co-browsing', 'SecurityError'));
    };
    stats.hooked += 1;
  }

  // ---- elements -----------------------------------------------------------------------------------------

  var URL_PROPERTIES = [
    ['HTMLAnchorElement', 'href'], ['HTMLAreaElement', 'href'], ['HTMLLinkElement', 'href'],
    ['HTMLBaseElement', 'href'], ['HTMLImageElement', 'src'], ['HTMLImageElement', 'lowsrc'],
    ['HTMLScriptElement', 'src'], ['HTMLIFrameElement', 'src'], ['HTMLFrameElement', 'src'],
    ['HTMLEmbedElement', 'src'], ['HTMLSourceElement', 'src'], ['HTMLTrackElement', 'src'],
    ['HTMLMediaElement', 'src'], ['HTMLVideoElement', 'poster'], ['HTMLInputElement', 'src'],
    ['HTMLInputElement', 'formAction'], ['HTMLButtonElement', 'formAction'], ['HTMLFormElement', 'action'],
    ['HTMLObjectElement', 'data'], ['HTMLQuoteElement', 'cite'], ['HTMLModElement', 'cite'],
  ];
  URL_PROPERTIES.forEach(function (p) {
    var C = window[p[0]];
    if (C) wrapAccessor(C.prototype, p[1], toProxy, toTarget);
  });
  [['HTMLImageElement', 'srcset'], ['HTMLSourceElement', 'srcset'], ['HTMLLinkElement', 'imageSrcset']].forEach(function (p) {
    var C = window[p[0]];
    if (C) {
      wrapAccessor(C.prototype, p[1], function (v) { return mapSrcset(v, toProxy); }, function (v) { return mapSrcset(v, toTarget); });
    }
  });
  wrapAccessor(HTMLImageElement.prototype, 'currentSrc', null, toTarget);
  wrapAccessor(HTMLMediaElement.prototype, 'currentSrc', null, toTarget);
  // a.origin, a.host, … read the proxy host unless mapped.
  ['HTMLAnchorElement', 'HTMLAreaElement'].forEach(function (name) {
    var proto = window[name] && window[name].prototype;
    ['origin', 'protocol', 'host', 'hostname', 'port'].forEach(function (part) {
      var d = proto && Object.getOwnPropertyDescriptor(proto, part);
      if (!d || !d.get) return;
      wrapAccessor(proto, part, null, function () {
        var href = toTarget(Object.getOwnPropertyDescriptor(proto, 'href').get.call(this));
        try { return new URL(href)[part]; } catch (e) { return ''; }
      });
    });
  });

  var URL_ATTRIBUTES = {
    href: 1, src: 1, action: 1, formaction: 1, poster: 1, cite: 1, background: 1, longdesc: 1,
    manifest: 1, icon: 1, lowsrc: 1, 'xlink:href': 1, codebase: 1,
  };
  var SRCSET_ATTRIBUTES = { srcset: 1, imagesrcset: 1 };

  function attributeMapper(element, name, outward) {
    var n = String(name).toLowerCase();
    var f = outward ? toTarget : toProxy;
    if (URL_ATTRIBUTES[n] || (n === 'data' && element.tagName === 'OBJECT')) return f;
    if (SRCSET_ATTRIBUTES[n]) return function (v) { return mapSrcset(v, f); };
    if (n === 'style' && !outward) return mapCss;
    return null;
  }

  wrapMethod(Element.prototype, 'setAttribute', function (a) {
    var f = attributeMapper(this, a[0], false);
    if (f && a.length > 1) a[1] = f(a[1]);
  });
  wrapMethod(Element.prototype, 'setAttributeNS', function (a) {
    var f = attributeMapper(this, a[1], false);
    if (f && a.length > 2) a[2] = f(a[2]);
  });
  var nativeGetAttribute = Element.prototype.getAttribute;
  Element.prototype.getAttribute = guard(function (name) {
    var value = nativeGetAttribute.call(this, name);
    var f = value === null ? null : attributeMapper(this, name, true);
    return f ? f(value) : value;
  }, nativeGetAttribute);

  // ---- markup inserted by script -------------------------------------------------------------------------

  var innerHTML = Object.getOwnPropertyDescriptor(Element.prototype, 'innerHTML');
  var inert = document.implementation.createHTMLDocument('');

  function rewriteElement(el) {
    var changed = false;
    for (var i = 0; i < el.attributes.length; i++) {
      var attr = el.attributes[i];
      var f = attributeMapper(el, attr.name, false);
      if (!f) continue;
      var mapped = f(attr.value);
      if (mapped !== attr.value) {
        attr.value = mapped;
        changed = true;
      }
    }
    return changed;
  }

  /** Markup from script is parsed in an inert template (nothing loads there), rewritten, re-serialised. */
  function mapMarkup(html) {
    var s = String(html);
    if (s.indexOf('//') < 0 && s.indexOf('\\') < 0 && !/(https?|wss?):/i.test(s)) return s;
    var t = inert.createElement('template');
    innerHTML.set.call(t, s);
    var changed = false;
    var all = t.content.querySelectorAll('*');
    for (var i = 0; i < all.length; i++) changed = rewriteElement(all[i]) || changed;
    var styles = t.content.querySelectorAll('style');
    for (var j = 0; j < styles.length; j++) {
      var css = mapCss(styles[j].textContent);
      if (css !== styles[j].textContent) {
        styles[j].textContent = css;
        changed = true;
      }
    }
    return changed ? innerHTML.get.call(t) : s;
  }

  wrapAccessor(Element.prototype, 'innerHTML', mapMarkup, null);
  wrapAccessor(Element.prototype, 'outerHTML', mapMarkup, null);
  wrapAccessor(ShadowRoot.prototype, 'innerHTML', mapMarkup, null);
  wrapMethod(Element.prototype, 'insertAdjacentHTML', function (a) { a[1] = mapMarkup(a[1]); });
  wrapMethod(Document.prototype, 'write', function (a) { for (var i = 0; i < a.length; i++) a[i] = mapMarkup(a[i]); });
  wrapMethod(Document.prototype, 'writeln', function (a) { for (var i = 0; i < a.length; i++) a[i] = mapMarkup(a[i]); });
  wrapMethod(Range.prototype, 'createContextualFragment', function (a) { a[0] = mapMarkup(a[0]); });

  // ---- styles set by script -----------------------------------------------------------------------------

  wrapMethod(CSSStyleDeclaration.prototype, 'setProperty', function (a) { if (a.length > 1) a[1] = mapCss(a[1]); });
  wrapAccessor(CSSStyleDeclaration.prototype, 'cssText', mapCss, null);
  // Chrome defines `style.backgroundImage` & co. as own data properties of each declaration, out of reach
  // of a prototype hook; so `element.style` hands out one cached Proxy per declaration instead.
  var URL_STYLE_PROPERTIES = {
    background: 1, backgroundImage: 1, borderImage: 1, borderImageSource: 1, listStyle: 1,
    listStyleImage: 1, content: 1, cursor: 1, mask: 1, maskImage: 1, webkitMaskImage: 1,
    shapeOutside: 1, filter: 1,
  };
  var styleProxies = new WeakMap();
  var styleHandler = {
    get: function (target, key) {
      var value = Reflect.get(target, key, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
    set: function (target, key, value) {
      return Reflect.set(target, key, URL_STYLE_PROPERTIES[key] ? mapCss(value) : value, target);
    },
  };
  [HTMLElement, SVGElement, MathMLElement].forEach(function (C) {
    var proto = C && C.prototype;
    var d = proto && Object.getOwnPropertyDescriptor(proto, 'style');
    if (!d || !d.configurable) return;
    Object.defineProperty(proto, 'style', {
      configurable: true,
      enumerable: d.enumerable,
      get: guard(function () {
        var real = d.get.call(this);
        var proxy = styleProxies.get(real);
        if (!proxy) {
          proxy = new Proxy(real, styleHandler);
          styleProxies.set(real, proxy);
        }
        return proxy;
      }, d.get),
      set: guard(function (v) { d.set.call(this, mapCss(v)); }, d.set),
    });
    stats.hooked += 1;
  });
  wrapMethod(CSSStyleSheet.prototype, 'insertRule', function (a) { a[0] = mapCss(a[0]); });
  wrapMethod(CSSStyleSheet.prototype, 'replace', function (a) { a[0] = mapCss(a[0]); });
  wrapMethod(CSSStyleSheet.prototype, 'replaceSync', function (a) { a[0] = mapCss(a[0]); });
  var textContent = Object.getOwnPropertyDescriptor(Node.prototype, 'textContent');
  Object.defineProperty(Node.prototype, 'textContent', {
    configurable: true,
    enumerable: textContent.enumerable,
    get: textContent.get,
    set: guard(function (v) {
      textContent.set.call(this, this instanceof HTMLStyleElement ? mapCss(v) : v);
    }, textContent.set),
  });

  // ---- the page's view of itself ------------------------------------------------------------------------

  var here = toTarget(location.href);
  var hereUrl = new URL(here);
  wrapAccessor(Document.prototype, 'URL', null, toTarget);
  wrapAccessor(Document.prototype, 'documentURI', null, toTarget);
  wrapAccessor(Document.prototype, 'referrer', null, toTarget);
  wrapAccessor(Node.prototype, 'baseURI', null, toTarget);
  wrapAccessor(Document.prototype, 'domain', function (v) {
    // Relaxing document.domain is obsolete (origin-keyed agent clusters); keep it a harmless no-op.
    return v === hereUrl.hostname ? location.hostname : v;
  }, function (v) {
    return v === location.hostname ? hereUrl.hostname : v;
  });
  var originDescriptor = Object.getOwnPropertyDescriptor(window, 'origin');
  if (originDescriptor && originDescriptor.configurable) {
    Object.defineProperty(window, 'origin', {
      configurable: true,
      enumerable: originDescriptor.enumerable,
      get: function () { return hereUrl.origin; },
      set: originDescriptor.set,
    });
  }
  wrapAccessor(MessageEvent.prototype, 'origin', null, function (v) {
    var t = toTarget(v + '/');
    return t === v + '/' ? v : t.slice(0, -1);
  });

  // ---- cookies written by script ------------------------------------------------------------------------

  // `domain=shop.test` must become the proxy-side domain, as the server does for Set-Cookie; a domain
  // that does not cover this host, or a bare top-level name, is refused as a browser would.
  wrapAccessor(Document.prototype, 'cookie', function (v) {
    var s = String(v);
    var host = hereUrl.hostname.replace(/\.$/, '');
    var tail = location.hostname.slice(host.length);
    return s.replace(/(;\s*domain\s*=\s*)\.?([^;]*)/i, function (all, prefix, domain) {
      var d = domain.trim().toLowerCase();
      var covers = d === host || host.slice(-(d.length + 1)) === '.' + d;
      if (!covers || d.indexOf('.') < 0) return prefix + 'invalid.cobrowse';
      return prefix + d + tail;
    });
  }, null);

  finish();

  // ---- helpers for rewritten scripts (src/rewrite/js.rs) -------------------------------------------------

  /** A Location as the site sees it: target URLs out, proxy URLs in. One wrapper per Location. */
  var wrappers = new WeakMap();
  function wrapLocation(loc) {
    if (!loc || typeof loc !== 'object') return loc;
    var w = wrappers.get(loc);
    if (w) return w;
    var view = function () { return new URL(toTarget(loc.href)); };
    var navigateWith = function (part, value) {
      var u = view();
      u[part] = value;
      loc.href = toProxy(u.href);
    };
    w = {
      get href() { return view().href; },
      set href(v) { loc.href = toProxy(v); },
      get origin() { return view().origin; },
      get protocol() { return view().protocol; },
      set protocol(v) { navigateWith('protocol', v); },
      get host() { return view().host; },
      set host(v) { navigateWith('host', v); },
      get hostname() { return view().hostname; },
      set hostname(v) { navigateWith('hostname', v); },
      get port() { return view().port; },
      set port(v) { navigateWith('port', v); },
      // Paths, queries and fragments are the same on the proxy host.
      get pathname() { return loc.pathname; },
      set pathname(v) { loc.pathname = v; },
      get search() { return loc.search; },
      set search(v) { loc.search = v; },
      get hash() { return loc.hash; },
      set hash(v) { loc.hash = v; },
      get ancestorOrigins() { return loc.ancestorOrigins; },
      assign: function (u) { loc.assign(toProxy(u)); },
      replace: function (u) { loc.replace(toProxy(u)); },
      reload: function () { loc.reload(); },
      toString: function () { return view().href; },
      valueOf: function () { return this; },
    };
    wrappers.set(loc, w);
    return w;
  }

  function isWindowOrDocument(x) {
    try {
      return x !== null && typeof x === 'object' &&
        (x === x.window || (typeof Document !== 'undefined' && x instanceof Document) || x === global);
    } catch (e) {
      return false;
    }
  }

  function defineScriptHelpers() {
    var helpers = {
      __cbLocationOf: function (x) { return isWindowOrDocument(x) ? wrapLocation(x.location) : x.location; },
      __cbSetLocation: function (x, v) {
        if (isWindowOrDocument(x)) x.location.href = toProxy(v);
        else x.location = v;
        return v;
      },
      __cbUrl: function (u) { return typeof u === 'string' || u instanceof URL ? toProxy(String(u)) : u; },
      __cbOrigin: function (o) {
        if (typeof o !== 'string' || o === '*' || o === '/') return o;
        try { return new URL(toProxy(o)).origin; } catch (e) { miss(); return o; }
      },
    };
    Object.keys(helpers).forEach(function (name) {
      Object.defineProperty(global, name, { value: helpers[name], configurable: false, enumerable: false });
    });
    Object.defineProperty(global, '__cbLocation', {
      configurable: false,
      enumerable: false,
      get: function () { return wrapLocation(global.location); },
      set: function (v) { global.location.href = toProxy(v); },
    });
  }

  function finish() {
    stats.toProxy = toProxy;
    stats.toTarget = toTarget;
  }
})();
