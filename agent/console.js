/* The console: creates a session through the API and shows its two links. */
(function () {
  'use strict';
  var form = document.getElementById('create');
  var out = document.getElementById('result');
  function link(label, href) {
    var p = document.createElement('p');
    var a = document.createElement('a');
    a.href = href;
    a.textContent = href;
    p.append(label + ': ', a);
    return p;
  }
  form.addEventListener('submit', function (event) {
    event.preventDefault();
    out.textContent = 'Creating…';
    fetch('/api/sessions', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ url: form.url.value }),
    })
      .then(function (r) { return r.json().then(function (body) { return { ok: r.ok, body: body }; }); })
      .then(function (r) {
        out.textContent = '';
        if (!r.ok) { out.textContent = r.body.error || 'Failed'; return; }
        out.append(link('Visitor link (send it to the visitor)', r.body.visitor_url),
          link('Agent link (open it yourself: the live view)', r.body.agent_url));
      })
      .catch(function (e) { out.textContent = String(e); });
  });
})();
