// relayq UI: live refresh without a page reload. Every few seconds the
// part of the page marked #live is fetched again (the server renders only
// that part when it sees X-Relayq-Live) and swapped in. Nothing else: the
// pages work without this script, by reloading.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var state = document.getElementById("live-state");
  if (!live) return;
  var every = parseInt(live.getAttribute("data-refresh"), 10) || 2000;
  function show(text, bad) {
    if (!state) return;
    state.textContent = text;
    state.className = "live-state" + (bad ? " bad" : "");
  }
  function tick() {
    if (document.hidden) return later();
    fetch(location.href, { headers: { "X-Relayq-Live": "1" }, credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (r.status === 401) {
          location.href = "/ui/login?next=" + encodeURIComponent(location.pathname + location.search);
          return null;
        }
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.text();
      })
      .then(function (html) {
        if (html === null) return;
        if (html !== live.innerHTML) live.innerHTML = html; // server-rendered, escaped markup
        show("live · " + new Date().toLocaleTimeString(), false);
      })
      .catch(function (e) { show("stale: " + e.message, true); })
      .then(later);
  }
  function later() { setTimeout(tick, every); }
  later();
})();
