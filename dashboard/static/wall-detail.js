// crowdflow wall: one zone's detail (#zone-detail), opened from the map, the side list or the strip.
// Figures, forecast, sensor issues, its open alerts, and the charts (charts.js: CF.zoneCharts) fed from
// /api/zones/{id}/history once, then from the live deltas. Closed with the button or Esc.
(function () {
  "use strict";
  var W = window.CF.wall, U = W.util;
  var HISTORY_MIN = 180;
  var MAX_EARLY = 60; // live views held while the history loads
  var cur = null; // {id, charts, early: [], loaded}
  var opened = 0; // bumps on each open: a late history answer for a closed detail is dropped

  function field(id, text) { U.setText(U.$(id), text); }

  function open(id) {
    var S = W.S;
    if (!S.site) return;
    if (cur && cur.id === id) return;
    close();
    var zone = W.siteZone(id), box = U.$("zone-detail");
    var n = ++opened;
    cur = { id: id, charts: null, early: [], loaded: false };
    box.dataset.zone = id;
    box.hidden = false;
    field("zd-name", zone.name_zh);
    field("zd-name-en", zone.name_en);
    W.map.select(id);
    var holder = U.$("zd-charts");
    holder.textContent = "";
    if (window.CF.zoneCharts) {
      cur.charts = window.CF.zoneCharts(holder, {
        zone: zone, levels: S.site.levels, windowMinutes: HISTORY_MIN, timezone: S.site.timezone,
      });
    } else {
      holder.appendChild(U.el("div", "zd-note", "图表不可用 charts unavailable (charts.js not loaded)"));
    }
    update(S.zones[id]);
    alerts();
    field("zd-history", "加载历史 loading history…");
    fetch("/api/zones/" + encodeURIComponent(id) + "/history?minutes=" + HISTORY_MIN,
      { cache: "no-store", headers: W.auth.readHeaders() })
      .then(function (r) {
        if (!r.ok) return r.json().then(function (b) { throw new Error((b && b.detail) || "HTTP " + r.status); },
          function () { throw new Error("HTTP " + r.status); });
        return r.json();
      })
      .then(function (h) {
        if (n !== opened || !cur) return;
        if (cur.charts) {
          cur.charts.setHistory(h.points || []);
          cur.early.forEach(function (v) { cur.charts.push(v); });
        }
        cur.early = [];
        cur.loaded = true;
        field("zd-history", "最近 last " + HISTORY_MIN + " min · " + (h.points || []).length + " points");
      })
      .catch(function (e) {
        if (n !== opened || !cur) return;
        cur.loaded = true; // live points still draw
        field("zd-history", "历史不可用 history unavailable: " + e.message);
      });
    U.$("zd-close").focus();
  }

  function close() {
    var box = U.$("zone-detail");
    if (cur && cur.charts) { try { cur.charts.destroy(); } catch (e) { /* already gone */ } }
    cur = null;
    box.hidden = true;
    box.removeAttribute("data-zone");
    U.$("zd-charts").textContent = "";
    if (W.map) W.map.select(null);
  }

  function update(z) {
    if (!cur || !z || z.id !== cur.id) return;
    var box = U.$("zone-detail");
    U.setAttr(box, "data-level", z.level);
    var lv = U.$("zd-level");
    U.setText(lv, W.zoneLabel(z) + " " + (U.LEVEL_ZH[z.level] || ""));
    U.paintBadge(lv, z.colour);
    box.style.setProperty("--lvl", z.colour);
    field("zd-occ", U.people(z.occupancy) + " / " + U.people(z.capacity) + "  (" + U.pct(z.share) + ")");
    field("zd-density", z.density === null ? "—" : z.density.toFixed(2) + " /m²");
    field("zd-flow", (z.inflow_per_min === null ? "—" : Math.round(z.inflow_per_min)) + " in · " +
      (z.outflow_per_min === null ? "—" : Math.round(z.outflow_per_min)) + " out /min" +
      (typeof z.expected_inflow_per_min === "number" ? " (normal in " + Math.round(z.expected_inflow_per_min) + ")" : ""));
    field("zd-forecast", z.forecast || "—");
    var issues = U.$("zd-issues");
    var list = z.sensor_issues ? Object.keys(z.sensor_issues).map(function (s) { return s + ": " + z.sensor_issues[s]; }) : [];
    if (!list.length && z.healthy === false) list = [z.occupancy === null ? "无数据 no data yet" : "传感器异常 sensor fault"];
    U.setText(issues, list.length ? list.join(" · ") : "正常 all sensors reporting");
    issues.classList.toggle("bad", list.length > 0);
    if (cur.charts && z.ts !== null) {
      if (cur.loaded) cur.charts.push(z);
      else if (cur.early.push(z) > MAX_EARLY) cur.early.shift();
    }
  }

  function alerts() {
    if (!cur) return;
    var S = W.S, ul = U.$("zd-alerts");
    var mine = Object.keys(S.alerts).map(function (k) { return S.alerts[k]; })
      .filter(function (a) { return a.zone === cur.id && a.open; }).sort(W.feed.order);
    ul.textContent = "";
    if (!mine.length) { ul.appendChild(U.el("li", "none", "无预警 no open alerts")); return; }
    mine.forEach(function (a) {
      var li = U.el("li");
      li.dataset.alert = a.id;
      var b = U.el("span", "alert-badge", a.level_label);
      U.paintBadge(b, a.colour);
      li.appendChild(b);
      li.appendChild(document.createTextNode(" " + (U.CAUSES[a.cause] || a.cause) + " · " + (U.STATES[a.state] || a.state) +
        (a.message ? " · " + a.message : "")));
      ul.appendChild(li);
    });
  }

  function init() {
    U.$("zd-close").addEventListener("click", close);
    U.$("zone-detail").addEventListener("click", function (ev) { if (ev.target === ev.currentTarget) close(); });
  }

  W.detail = {
    init: init, open: open, close: close, update: update, alerts: alerts,
    openId: function () { return cur ? cur.id : null; },
  };
})();
