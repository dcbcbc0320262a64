// Email Scout web: live updates from /events (server-sent events) without
// a reload. The overview replaces the rows of the checks that changed, the
// open-incidents section and the counts; a check page fetches itself again
// when its check changed. Relative times ("12 s ago") are kept current.
(function () {
  "use strict";
  var status = document.getElementById("live-status");
  var checkID = document.body.getAttribute("data-check");
  function say(text) { if (status) status.textContent = text; }

  function ago(ms) {
    var s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    if (s < 172800) return Math.floor(s / 3600) + " h ago";
    return Math.floor(s / 86400) + " d ago";
  }
  function refreshTimes(root) {
    var els = (root || document).querySelectorAll("time[data-ago]");
    for (var i = 0; i < els.length; i++) {
      var t = Date.parse(els[i].getAttribute("datetime"));
      if (!isNaN(t)) els[i].textContent = ago(Date.now() - t);
    }
  }
  setInterval(refreshTimes, 10000);

  // Filters apply as soon as they change (the Apply button works without script).
  var filters = document.getElementById("filters");
  var stateFilter = document.getElementById("f-state");
  if (filters) {
    var selects = filters.querySelectorAll("select");
    for (var i = 0; i < selects.length; i++) {
      selects[i].addEventListener("change", function () { filters.submit(); });
    }
  }

  function applyOverview(u) {
    var rows = u.rows || [];
    for (var i = 0; i < rows.length; i++) {
      var old = document.getElementById("row-" + rows[i].id);
      if (!old) continue; // not on this page, or filtered out
      var wanted = stateFilter ? stateFilter.value : "";
      if (wanted && rows[i].state !== wanted) { old.remove(); continue; } // left the state filter
      var tpl = document.createElement("template");
      tpl.innerHTML = rows[i].html.trim();
      var row = tpl.content.firstElementChild;
      if (old.getAttribute("data-state") !== rows[i].state) row.classList.add("flash");
      old.replaceWith(row);
    }
    var counts = document.getElementById("counts");
    if (counts && u.counts) {
      var c = u.counts[counts.getAttribute("data-customer") || ""] || {up: 0, warning: 0, down: 0, unknown: 0};
      ["up", "warning", "down", "unknown"].forEach(function (k) {
        var el = counts.querySelector('[data-count="' + k + '"]');
        if (el) el.textContent = c[k] || 0;
      });
    }
    var inc = document.getElementById("incidents");
    if (inc && typeof u.incidents === "string") {
      inc.innerHTML = u.incidents;
      var customer = counts ? counts.getAttribute("data-customer") : "";
      if (customer) {
        var items = inc.querySelectorAll("li[data-customer]");
        for (var j = 0; j < items.length; j++) {
          if (items[j].getAttribute("data-customer") !== customer) items[j].remove();
        }
        if (!inc.querySelector("li")) inc.innerHTML = "";
      }
    }
  }

  function applyCheck(u) {
    if ((u.checks || []).indexOf(checkID) < 0) return;
    fetch(location.href, {credentials: "same-origin", headers: {"Accept": "text/html"}})
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("live"), live = document.getElementById("live");
        if (fresh && live) live.replaceWith(fresh);
      })
      .catch(function (e) { say("Live updates: " + e.message); });
  }

  if (!window.EventSource) { say("Live updates: not supported by this browser; reload to update."); return; }
  // After a lost connection the page may have missed updates: it reloads
  // once the stream is back.
  var lost = false;
  var es = new EventSource("/events");
  es.addEventListener("open", function () {
    if (lost) { location.reload(); return; }
    say("Live updates: on");
  });
  es.addEventListener("error", function () { lost = true; say("Live updates: reconnecting…"); });
  es.addEventListener("reload", function () { es.close(); location.reload(); });
  es.addEventListener("update", function (ev) {
    var u;
    try { u = JSON.parse(ev.data); } catch (e) { return; }
    if (checkID) applyCheck(u); else applyOverview(u);
    say("Live updates: on, last " + new Date().toLocaleTimeString());
  });
})();
