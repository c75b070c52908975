/*
 * cobrowse agent, injected as the first script of every proxied HTML page.
 * For now it only identifies the session (or, in the forward proxy, that it is present with no session
 * yet); the in-page runtime and the relay client build on it.
 */
(function () {
  'use strict';
  var script = document.currentScript;
  var session = script && script.getAttribute('data-cobrowse-session');
  var mode = (script && script.getAttribute('data-cobrowse-mode')) || 'session';
  if ((!session && mode !== 'forward') || Object.prototype.hasOwnProperty.call(window, '__cobrowse')) {
    return;
  }
  Object.defineProperty(window, '__cobrowse', {
    value: Object.freeze({ session: session || null, mode: mode, origin: new URL(script.src).origin }),
    enumerable: false,
  });
})();
