// crowdflow wall: one WebSocket (stream.js: a snapshot then deltas, resumed after a drop, one resync at a time).
// Deltas are merged into the state as they come and drawn at most a few times a second, touching only
// what changed. Plain JS, no build step, no external assets; colours and labels come from the server
// (domain/levels.py) and a level is always shown as text too. Loaded after stream.js and the wall-*.js modules.
(function () {
  "use strict";
  var W = window.CF.wall, U = W.util;

  var DELTA_STALE_MS = 15000; // no delta for this long: the service stopped sending (it sends one per tick)
  var DATA_STUCK_MS = 60000; // no new sensor data at the service for this long: sensors or ingest stopped
  var SOCKET_DEAD_MS = 40000; // not even a ping (every 15 s when idle): the socket is dead, start over
  var MIN_FRAME_MS = 250; // at most 4 renders a second, however fast deltas come
  var MAX_RESOLVED = 50; // resolved alerts kept by the page (the hub keeps as many)

  var S = (W.S = {
    site: null, siteKey: "", tz: undefined, levels: {}, zoneIndex: {},
    zones: {}, district: null, alerts: {}, emergency: [],
    lastDeltaAt: 0, // the page's time of the last snapshot or applied delta: the service is sending
    chips: {},
  });
  var dirty = fresh();
  var scheduled = false, lastFrame = 0;
  var stream = (W.stream = window.CF.openStream({
    onSnapshot: applySnapshot, onDelta: applyDelta, onPing: refreshConn, onState: streamState, deadMs: SOCKET_DEAD_MS,
    token: W.auth.readToken, // the display token, else the signed-in person's (wall-auth.js)
  }));

  function streamState(state, why) {
    if (state === "unauthorized") W.auth.refused(why);
    refreshConn();
  }
  // The stream's resume point (epoch, seq) and data time (dataTs, shown; the modules read it) as fields of S,
  // and its counters with the renders in W.stats: for tests, and a look.
  function mirror(into, from, keys) {
    keys.forEach(function (k) { Object.defineProperty(into, k, { enumerable: true, get: function () { return from[k]; } }); });
  }
  mirror(S, stream, ["epoch", "seq", "dataTs"]);
  var stats = (W.stats = { renders: 0 });
  mirror(stats, stream.stats, ["snapshots", "deltas", "resyncs", "connects"]);

  function fresh() { return { build: false, zones: {}, alerts: false, emergency: false }; }

  // ---- shared accessors for the modules ------------------------------------------------------------

  W.siteZone = function (id) {
    return S.zoneIndex[id] || { id: id, name_zh: id, name_en: "", capacity: null, thresholds: [] };
  };

  W.zoneLabel = function (z) {
    if (!z || z.occupancy === null) return "无数据 no data";
    return z.healthy === false ? z.level_label + " · 传感器异常" : z.level_label;
  };

  // An alert from a POST answer: shown at once (the hub's delta follows), unless a newer one is here.
  W.applyAlert = function (raw) {
    var a = W.feed.normalize(raw), old = S.alerts[a.id];
    if (old && W.feed.alertTime(old) > W.feed.alertTime(a)) return;
    S.alerts[a.id] = a;
    pruneResolved();
    dirty.alerts = true;
    schedule();
  };

  W.relayout = function () { if (S.site) W.map.layout(); };

  // ---- state ---------------------------------------------------------------------------------------

  // stream.js has taken the seq, epoch and data time (ts, last_data_age_s) from it already.
  function applySnapshot(m) {
    var key = JSON.stringify(m.site);
    if (key !== S.siteKey) {
      S.siteKey = key;
      S.site = m.site;
      S.tz = m.site.timezone;
      S.levels = {};
      m.site.levels.forEach(function (lv) { S.levels[lv.level] = lv; });
      S.zoneIndex = {};
      m.site.zones.forEach(function (z) { S.zoneIndex[z.id] = z; });
      dirty.build = true;
    }
    S.zones = {};
    m.zones.forEach(function (z) { S.zones[z.id] = z; dirty.zones[z.id] = true; });
    S.alerts = {};
    m.alerts.forEach(function (a) { a = W.feed.normalize(a); S.alerts[a.id] = a; });
    S.district = m.district;
    S.emergency = m.emergency || [];
    // The snapshot is the service's state as of now, so its sender is alive (no delta is due yet); how fresh
    // its data is, last_data_age_s says (stream.js).
    S.lastDeltaAt = Date.now();
    dirty.alerts = dirty.emergency = true;
    schedule();
    refreshConn();
  }

  // The next delta in order (stream.js drops repeats, and resyncs on a gap).
  function applyDelta(m) {
    S.lastDeltaAt = Date.now();
    (m.zones || []).forEach(function (z) { S.zones[z.id] = z; dirty.zones[z.id] = true; });
    if (m.district) S.district = m.district;
    if (m.emergency) { S.emergency = m.emergency; dirty.emergency = true; } // null when unchanged
    if (m.alerts && m.alerts.length) {
      m.alerts.forEach(function (a) { a = W.feed.normalize(a); S.alerts[a.id] = a; });
      pruneResolved();
      dirty.alerts = true;
    }
    schedule();
    refreshConn();
  }

  function pruneResolved() {
    var closed = Object.keys(S.alerts).map(function (id) { return S.alerts[id]; }).filter(function (a) { return !a.open; });
    if (closed.length <= MAX_RESOLVED) return;
    closed.sort(function (a, b) { return W.feed.alertTime(a) - W.feed.alertTime(b); });
    closed.slice(0, closed.length - MAX_RESOLVED).forEach(function (a) { delete S.alerts[a.id]; });
  }

  // ---- rendering: coalesced, at most every MIN_FRAME_MS, in an animation frame ---------------------

  function schedule() {
    if (scheduled) return;
    scheduled = true;
    var wait = Math.max(0, lastFrame + MIN_FRAME_MS - Date.now());
    setTimeout(function () {
      var done = false;
      var go = function () { if (!done) { done = true; render(); } };
      requestAnimationFrame(go);
      setTimeout(go, 1000); // a hidden page gets no animation frames: still keep it current
    }, wait);
  }

  function render() {
    scheduled = false;
    lastFrame = Date.now();
    stats.renders++;
    if (!S.site) return;
    var d = dirty;
    dirty = fresh();
    if (d.build) build();
    var relayout = d.emergency && W.response.emergency();
    Object.keys(d.zones).forEach(function (id) {
      var z = S.zones[id];
      W.map.update(z);
      W.strip.update(z);
      W.health.update(z);
      W.detail.update(z);
    });
    if (d.alerts) { W.feed.render(); W.detail.alerts(); }
    renderHeadline();
    showClock();
    if (relayout || d.build) W.relayout();
  }

  function build() {
    U.setText(U.$("site-name"), S.site.name_zh);
    U.setText(U.$("site-en"), S.site.name_en);
    buildLevelChips();
    W.strip.build();
    W.map.build();
    W.health.reset();
    var open = W.detail.openId();
    if (open && !S.zoneIndex[open]) W.detail.close();
    else if (open) W.map.select(open);
    W.response.firstLoad();
  }

  function buildLevelChips() {
    var box = U.$("level-counts");
    box.textContent = "";
    S.chips = {};
    // Most severe first; unknown last so a zone without data is never counted as calm.
    [4, 3, 2, 1, 0, "unknown"].forEach(function (key) {
      var lv = key === "unknown" ? { label: "无数据", colour: U.NO_DATA } : S.levels[key];
      if (!lv) return;
      var chip = U.el("div", "level-chip");
      chip.dataset.level = String(key);
      var n = U.el("span", "n num", "0");
      chip.appendChild(n);
      chip.appendChild(U.el("span", "l", lv.label));
      chip.appendChild(U.el("span", "zh", key === "unknown" ? "unknown" : U.LEVEL_ZH[key]));
      U.paintBadge(chip, lv.colour);
      box.appendChild(chip);
      S.chips[key] = { chip: chip, n: n };
    });
  }

  // A headline number shrinks to fit its box rather than being cut off (1,234,567 on a narrow panel).
  function setBig(e, text) {
    if (e.textContent === text) return;
    e.textContent = text;
    e.style.fontSize = "";
    if (e.scrollWidth > e.clientWidth && e.clientWidth > 0) {
      var base = parseFloat(getComputedStyle(e).fontSize);
      e.style.fontSize = Math.floor(base * e.clientWidth / e.scrollWidth) + "px";
    }
  }

  function renderHeadline() {
    var d = S.district;
    setBig(U.$("people-now"), d ? U.people(d.people_now) : "—");
    setBig(U.$("arrivals"), d ? U.people(d.arrivals_today) : "—");
    renderArrivalsRatio(d);
    var counts = { 0: 0, 1: 0, 2: 0, 3: 0, 4: 0, unknown: 0 };
    Object.keys(S.zones).forEach(function (id) {
      var z = S.zones[id];
      if (z.occupancy === null || (z.healthy === false && z.level === 0)) counts.unknown++;
      else counts[z.level] = (counts[z.level] || 0) + 1;
    });
    Object.keys(S.chips).forEach(function (key) {
      var c = S.chips[key];
      U.setText(c.n, String(counts[key] || 0));
      c.chip.classList.toggle("zero", !counts[key]);
    });
    var open = 0, worst = 0;
    Object.keys(S.alerts).forEach(function (id) {
      var a = S.alerts[id];
      if (a.open) { open++; worst = Math.max(worst, a.level); }
    });
    var oa = U.$("open-alerts");
    setBig(oa, String(open));
    U.setStyle(oa, "color", open && S.levels[worst] ? S.levels[worst].colour : "");
  }

  // "112% of profile so far · 56% of the 1.47M peak day": the first is coloured, since well above the
  // profile is the early sign of a crowd building.
  function renderArrivalsRatio(d) {
    var box = U.$("arrivals-pct");
    var key = d ? [d.arrivals_vs_profile_pct, d.arrivals_vs_peak_day_pct, d.peak_day_visits].join("|") : "";
    if (box.dataset.key === key) return;
    box.dataset.key = key;
    box.textContent = "";
    if (!d) { box.textContent = "—"; return; }
    var vp = d.arrivals_vs_profile_pct;
    if (vp !== null) {
      var b = U.el("b", "", Math.round(vp) + "%");
      b.style.color = vp >= 130 ? S.levels[3].colour : vp >= 110 ? S.levels[2].colour : "";
      box.appendChild(b);
      box.appendChild(document.createTextNode(" 预期 of profile"));
    }
    if (d.arrivals_vs_peak_day_pct !== null) {
      var peak = (d.peak_day_visits / 1e6).toFixed(2) + "M";
      box.appendChild(U.el("br"));
      box.appendChild(U.el("b", "", Math.round(d.arrivals_vs_peak_day_pct) + "%"));
      box.appendChild(document.createTextNode(" 峰值日 of " + peak + " peak"));
    }
    box.title = "arrivals today vs the capacity profile so far, and vs the peak day";
  }

  // ---- connection state, data-stale banner and the data clock -----------------------------------------

  function connState() {
    var now = Date.now();
    if (!stream.connected) {
      return stream.everConnected
        ? { state: "reconnecting", title: "连接中断 RECONNECTING…", detail: "last message " + U.ageText(now - stream.lastMsgAt) + " ago" +
            (S.dataTs === null ? "" : " · data as of " + U.timeIn(S.dataTs, S.tz, true)) }
        : { state: "reconnecting", title: "连接中 CONNECTING…", detail: "no connection to the service yet" };
    }
    if (!S.site) return { state: "reconnecting", title: "连接中 CONNECTING…", detail: "waiting for the first snapshot" };
    if (now - S.lastDeltaAt > DELTA_STALE_MS) {
      return { state: "stale", title: "数据停滞 DATA STALE", detail: "no update from the service for " + U.ageText(now - S.lastDeltaAt) +
        (S.dataTs === null ? "" : " · data as of " + U.timeIn(S.dataTs, S.tz, true)) };
    }
    if (S.dataTs === null) return { state: "stale", title: "数据停滞 DATA STALE", detail: "no sensor data yet" };
    if (now - stream.dataAt > DATA_STUCK_MS) {
      return { state: "stale", title: "数据停滞 DATA STALE",
        detail: "data time stuck at " + U.timeIn(S.dataTs, S.tz, true) + ": no new sensor data for " + U.ageText(now - stream.dataAt) +
          " (sensors or ingest stopped)" };
    }
    return { state: "live", title: "", detail: "" };
  }

  var CONN_TEXT = { live: "实时 live", stale: "数据停滞 stale", reconnecting: "重连中 reconnecting" };

  function refreshConn() {
    var c = connState(), conn = U.$("conn");
    U.setAttr(conn, "data-state", c.state);
    U.setText(conn, CONN_TEXT[c.state]);
    conn.title = c.detail;
    U.$("banner").hidden = !c.title;
    document.body.classList.toggle("stale", c.state !== "live");
    U.setText(U.$("banner-title"), c.title);
    U.setText(U.$("banner-detail"), c.detail);
  }

  // The DATA time (the newest delta's "ts") in the site's timezone: a replay shows its own evening.
  function showClock() {
    U.setText(U.$("clock"), S.dataTs === null ? "--:--:--" : U.timeIn(S.dataTs, S.tz, true));
    U.setText(U.$("clock-date"), S.dataTs === null ? "" : U.dateIn(S.dataTs, S.tz) + " " + (S.tz || ""));
  }

  function tick() {
    showClock();
    refreshConn();
    W.feed.ages();
  }

  document.addEventListener("keydown", function (ev) {
    if (ev.key !== "Escape") return;
    if (!U.$("signin").hidden) U.$("signin-cancel").click();
    else W.detail.close();
  });
  window.addEventListener("resize", W.relayout);
  W.auth.init();
  W.detail.init();
  W.health.init();
  W.response.init();
  W.auth.follow(); // starts the stream when the wall has a token to read with
  setInterval(tick, 1000);
  tick();
})();
