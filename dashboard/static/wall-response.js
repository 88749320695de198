// crowdflow wall: the emergency banner (平急转换, from the hub's emergency list) and the Response section
// (GET /api/metrics/response, alerts/metrics.py: per grid, alerts, median time to acknowledge and the share
// acknowledged within target), refreshed every 60 s.
(function () {
  "use strict";
  var W = window.CF.wall, U = W.util;
  var EVERY_MS = 60000;
  var loaded = false;

  function emergency() {
    var box = U.$("emergency");
    var modes = W.S.emergency || [];
    var key = JSON.stringify(modes);
    if (box.dataset.key === key) return false;
    box.dataset.key = key;
    box.textContent = "";
    modes.forEach(function (m) {
      var line = U.el("div", "em-line");
      line.appendChild(U.el("span", "em-title", "应急状态 EMERGENCY MODE"));
      var scope = m.scope === "district" ? "全区 district" : m.scope_name_zh + " " + m.scope_name_en;
      line.appendChild(document.createTextNode(" — " + scope + " since " + U.timeIn(m.since, W.S.tz) + " by " + m.by + ": "));
      line.appendChild(U.el("span", "em-reason", m.reason));
      line.title = m.reason;
      box.appendChild(line);
    });
    box.hidden = modes.length === 0;
    var was = document.body.classList.contains("emergency");
    document.body.classList.toggle("emergency", modes.length > 0);
    return was !== modes.length > 0; // the layout changed: the map relabels
  }

  function shareColour(share) {
    var lv = share >= 0.9 ? 0 : share >= 0.7 ? 3 : 4; // green, orange, red (colours of domain/levels.py)
    return (W.S.levels[lv] || {}).colour || "";
  }

  function duration(s) {
    if (s === null || s === undefined) return "—";
    s = Math.round(s);
    if (s >= 3600) return Math.floor(s / 3600) + " h " + Math.round((s % 3600) / 60) + " min";
    return Math.floor(s / 60) + ":" + ("0" + (s % 60)).slice(-2);
  }

  function gridName(id) {
    var grids = (W.S.site && W.S.site.grids) || [];
    for (var i = 0; i < grids.length; i++) if (grids[i].id === id) return grids[i].name_zh + " " + grids[i].name_en;
    return id ? String(id) : "—";
  }

  function targetsText(targets) {
    return Object.keys(targets || {}).map(function (name) {
      return name + " ≤" + Math.round(targets[name].ack_s / 60) + " min";
    }).join(", ");
  }

  // One row per grid (the district first): alerts, median time to acknowledge, share within target.
  function render(data) {
    var body = U.$("response-rows");
    body.textContent = "";
    var rows = (data.by_grid || []).map(function (r) { return { name: gridName(r.grid), row: r }; });
    if (data.overall) rows.unshift({ name: "全区 All", row: data.overall });
    rows.forEach(function (c) {
      var r = c.row, judged = typeof r.ack_within_target === "number";
      var tr = U.el("tr");
      var th = U.el("th", "", c.name);
      th.scope = "row";
      th.title = c.name;
      tr.appendChild(th);
      tr.appendChild(U.el("td", r.alerts ? "" : "none", String(r.alerts || 0)));
      tr.appendChild(U.el("td", typeof r.ack_median_s === "number" ? "" : "none", duration(r.ack_median_s)));
      var td = U.el("td", "share" + (judged ? "" : " none"), judged ? Math.round(r.ack_within_target * 100) + "%" : "—");
      if (judged) td.style.color = shareColour(r.ack_within_target);
      tr.appendChild(td);
      body.appendChild(tr);
    });
    var targets = targetsText(data.targets);
    U.$("response-target").title = targets ? "acknowledged within " + targets : "";
    U.setText(U.$("response-note"), "今日 today" + (targets ? " · " + targets : ""));
    var was = U.$("response").hidden;
    U.$("response").hidden = false;
    if (was) W.relayout();
  }

  // Today in the site's timezone, by the data's own clock so a replayed day reads its own metrics.
  function todayStart() {
    var ref = W.S.dataTs || Date.now() / 1000;
    return U.dateIn(ref, W.S.tz) + "T00:00:00";
  }

  function refresh() {
    if (!W.S.site) return;
    loaded = true;
    var url = "/api/metrics/response?since=" + encodeURIComponent(todayStart());
    fetch(url, { cache: "no-store", headers: W.auth.readHeaders() })
      .then(function (r) {
        // No alert manager behind this wall (503, 404), or a display token that may not read the desk's figures
        // (an officer's, 403): no section.
        if (r.status === 503 || r.status === 404 || r.status === 403) {
          if (!U.$("response").hidden) { U.$("response").hidden = true; W.relayout(); }
          return null;
        }
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      })
      .then(function (data) { if (data) render(data); })
      .catch(function (e) {
        U.setText(U.$("response-note"), "refresh failed (" + e.message + "), showing the last figures");
      });
  }

  function init() { setInterval(refresh, EVERY_MS); }

  W.response = {
    init: init, emergency: emergency, refresh: refresh,
    firstLoad: function () { if (!loaded) refresh(); }, // the section needs the site's grid names
  };
})();
