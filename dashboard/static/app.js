// crowdflow wall: one WebSocket, a snapshot then deltas. Plain JS, no build step, no external assets.
// Colours and labels come from the server (domain/levels.py); a level is always shown as text too.
(function () {
  "use strict";

  var STALE_AFTER_MS = 20000; // no message at all for this long: the socket is presumed dead
  var DATA_STALE_S = 60; // the service is up but has had no sensor data for this long
  var BACKOFF_MIN_MS = 500;
  var BACKOFF_MAX_MS = 15000;
  var MAX_ALERT_ROWS = 12;
  var RESPONSE_EVERY_MS = 60000;

  var S = {
    site: null,
    levels: {}, // level int -> {label, colour, name}
    zones: {}, // id -> latest zone view
    district: null,
    alerts: {}, // id -> latest alert view
    emergency: [], // scopes in emergency mode (dashboard/hub.py), empty in normal service
    responseLoaded: false,
    seq: -1,
    lastMsgAt: 0,
    dataAgeS: null,
    ws: null,
    connected: false,
    backoff: BACKOFF_MIN_MS,
    reconnectTimer: null,
    els: { tiles: {}, segs: {} },
    tz: undefined,
  };

  var $ = function (id) { return document.getElementById(id); };
  var fmtInt = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function setText(e, text) { if (e.textContent !== text) e.textContent = text; }

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

  // Dark text on light level colours (yellow, orange), white on dark ones: readable at a distance.
  function inkFor(hex) {
    var h = (hex || "#757575").replace("#", "");
    var r = parseInt(h.substr(0, 2), 16), g = parseInt(h.substr(2, 2), 16), b = parseInt(h.substr(4, 2), 16);
    return (0.299 * r + 0.587 * g + 0.114 * b) > 150 ? "#111" : "#fff";
  }

  function paintBadge(e, colour) {
    e.style.background = colour;
    e.style.color = inkFor(colour);
  }

  function people(n) { return n === null || n === undefined ? "—" : fmtInt.format(Math.round(n)); }
  function pct(share) { return share === null || share === undefined ? "—" : Math.round(share * 100) + "%"; }

  // ---- connection ------------------------------------------------------------------------------

  function connect() {
    S.reconnectTimer = null;
    var proto = location.protocol === "https:" ? "wss:" : "ws:";
    var ws;
    try {
      ws = new WebSocket(proto + "//" + location.host + "/ws");
    } catch (e) {
      scheduleReconnect();
      return;
    }
    S.ws = ws;
    setConn("connecting…", false);
    ws.onmessage = function (ev) {
      if (ws !== S.ws) return;
      var msg;
      try { msg = JSON.parse(ev.data); } catch (e) { return; }
      S.lastMsgAt = Date.now();
      handle(msg);
    };
    ws.onclose = function () {
      if (ws !== S.ws) return;
      S.ws = null;
      S.connected = false;
      setConn("disconnected", false);
      scheduleReconnect();
      refreshBanner();
    };
    ws.onerror = function () { try { ws.close(); } catch (e) { /* already closing */ } };
  }

  function scheduleReconnect() {
    if (S.reconnectTimer) return;
    var delay = S.backoff * (0.75 + Math.random() * 0.5); // jitter: walls do not reconnect in lockstep
    S.backoff = Math.min(S.backoff * 2, BACKOFF_MAX_MS);
    S.reconnectTimer = setTimeout(connect, delay);
  }

  function dropSocket() {
    var ws = S.ws;
    S.ws = null;
    S.connected = false;
    if (ws) { try { ws.close(); } catch (e) { /* ignore */ } }
    scheduleReconnect();
  }

  function setConn(text, live) {
    var c = $("conn");
    setText(c, text);
    c.className = "conn " + (live ? "live" : "down");
  }

  function handle(msg) {
    if (msg.type === "snapshot") {
      S.backoff = BACKOFF_MIN_MS; // a good connection resets the backoff
      S.connected = true;
      setConn("live", true);
      applySnapshot(msg);
    } else if (msg.type === "delta") {
      if (msg.seq !== S.seq + 1) { // a gap: our picture is incomplete, ask for a fresh one
        if (S.ws) S.ws.send(JSON.stringify({ type: "resync" }));
        return;
      }
      applyDelta(msg);
    } else if (msg.type === "ping") {
      S.dataAgeS = msg.last_data_age_s;
    }
    refreshBanner();
  }

  // ---- state -----------------------------------------------------------------------------------

  function applySnapshot(m) {
    S.site = m.site;
    S.tz = m.site.timezone;
    S.levels = {};
    m.site.levels.forEach(function (lv) { S.levels[lv.level] = lv; });
    S.zones = {};
    m.zones.forEach(function (z) { S.zones[z.id] = z; });
    S.alerts = {};
    m.alerts.forEach(function (a) { S.alerts[a.id] = a; });
    S.district = m.district;
    S.emergency = m.emergency || [];
    S.seq = m.seq;
    S.dataAgeS = 0;
    build();
  }

  function applyDelta(m) {
    S.seq = m.seq;
    if (m.zones.length || m.district) S.dataAgeS = 0; // an empty tick is not fresh data
    m.zones.forEach(function (z) { S.zones[z.id] = z; updateZone(z); });
    if (m.district) S.district = m.district;
    if (m.emergency) { // null when unchanged; a list (maybe empty) replaces ours whole
      S.emergency = m.emergency;
      renderEmergency();
    }
    if (m.alerts.length) {
      m.alerts.forEach(function (a) { S.alerts[a.id] = a; });
      renderAlerts();
    }
    renderHeadline();
  }

  // ---- layout (once per snapshot) --------------------------------------------------------------

  function build() {
    setText($("site-name"), S.site.name_zh);
    setText($("site-en"), S.site.name_en);
    buildLevelChips();
    buildStrip();
    renderEmergency(); // before the tiles: the layout decides how much room they get
    buildTiles();
    renderAlerts();
    renderHeadline();
    if (!S.responseLoaded) refreshResponse(); // the section needs the site's grid names
  }

  function buildLevelChips() {
    var box = $("level-counts");
    box.textContent = "";
    S.els.chips = {};
    // Most severe first; "no data" last so an unknown zone is never counted as calm.
    [4, 3, 2, 1, 0, "nodata"].forEach(function (key) {
      var lv = key === "nodata" ? { label: "no data", colour: "#757575" } : S.levels[key];
      if (!lv) return;
      var chip = el("div", "level-chip");
      var n = el("span", "n num", "0");
      chip.appendChild(n);
      chip.appendChild(el("span", "l", lv.label));
      paintBadge(chip, lv.colour);
      box.appendChild(chip);
      S.els.chips[key] = { chip: chip, n: n };
    });
  }

  function buildStrip() {
    var strip = $("strip");
    strip.textContent = "";
    S.els.segs = {};
    S.site.riverside.forEach(function (id) {
      var zone = siteZone(id);
      var seg = el("div", "seg");
      var bar = el("div", "seg-bar");
      var fill = el("div", "seg-fill");
      bar.appendChild(fill);
      bar.appendChild(el("div", "seg-80")); // the 80% line of LB/T 034-2014
      var p = el("div", "seg-pct", "—");
      var lvl = el("div", "seg-level", "");
      bar.appendChild(p);
      bar.appendChild(lvl);
      seg.appendChild(bar);
      var caption = el("div");
      caption.appendChild(el("div", "seg-name", zone.name_zh));
      caption.appendChild(el("div", "seg-en", zone.name_en));
      var occ = el("div", "seg-occ", "");
      caption.appendChild(occ);
      seg.appendChild(caption);
      seg.title = zone.name_en;
      strip.appendChild(seg);
      S.els.segs[id] = { bar: bar, fill: fill, pct: p, level: lvl, occ: occ };
      updateSeg(S.zones[id]);
    });
    $("strip").parentElement.hidden = S.site.riverside.length === 0;
  }

  function buildTiles() {
    var box = $("tiles");
    box.textContent = "";
    S.els.tiles = {};
    var river = {};
    S.site.riverside.forEach(function (id) { river[id] = true; });
    S.site.zones.forEach(function (zone) {
      if (river[zone.id]) return; // riverside segments live in the strip above
      var t = el("div", "tile");
      var zh = el("div", "tile-zh", zone.name_zh);
      var en = el("div", "tile-en", zone.name_en);
      var p = el("div", "tile-pct num", "—");
      var occBox = el("div", "tile-occ num");
      var occ = el("span", "", "—");
      var cap = el("span", "tile-cap", " / " + people(zone.capacity));
      occBox.appendChild(occ);
      occBox.appendChild(cap);
      var lvl = el("div", "tile-level", "");
      t.title = zone.name_zh + " " + zone.name_en;
      [zh, p, en, occBox, lvl].forEach(function (c) { t.appendChild(c); });
      box.appendChild(t);
      S.els.tiles[zone.id] = { tile: t, level: lvl, occ: occ, cap: cap, pct: p };
      updateTile(S.zones[zone.id]);
    });
    fitTiles();
  }

  // Choose the column count that gives the largest tiles (about 2:1) with every tile visible.
  function fitTiles() {
    var box = $("tiles");
    var n = Object.keys(S.els.tiles).length;
    var area = box.parentElement;
    var W = area.clientWidth, H = area.clientHeight, GAP = 8;
    if (!n || !W || !H) return;
    var best = { score: -1, cols: 1, h: 120 };
    for (var cols = 1; cols <= n; cols++) {
      var rows = Math.ceil(n / cols);
      var w = (W - GAP * (cols - 1)) / cols;
      var h = (H - GAP * (rows - 1)) / rows;
      var score = Math.min(w / 2, h);
      if (score > best.score) best = { score: score, cols: cols, h: Math.min(h, w / 1.6, 200) };
    }
    box.style.setProperty("--tile-cols", String(best.cols));
    box.style.setProperty("--tile-h", Math.floor(best.h) + "px");
  }

  function siteZone(id) {
    for (var i = 0; i < S.site.zones.length; i++) if (S.site.zones[i].id === id) return S.site.zones[i];
    return { id: id, name_zh: id, name_en: "" };
  }

  // ---- incremental updates ---------------------------------------------------------------------

  function zoneLabel(z) {
    if (z.occupancy === null) return "no data";
    return z.healthy ? z.level_label : z.level_label + " · sensor fault";
  }

  function updateZone(z) {
    if (S.els.segs[z.id]) updateSeg(z);
    if (S.els.tiles[z.id]) updateTile(z);
  }

  function updateSeg(z) {
    var e = S.els.segs[z.id];
    if (!e || !z) return;
    var share = z.share === null ? 0 : Math.max(0, Math.min(z.share, 1));
    e.fill.style.height = (share * 100).toFixed(1) + "%";
    e.fill.style.background = z.colour;
    e.bar.style.borderColor = z.level >= 2 ? z.colour : "";
    setText(e.pct, pct(z.share));
    setText(e.level, zoneLabel(z));
    paintBadge(e.level, z.colour);
    setText(e.occ, people(z.occupancy) + " / " + people(z.capacity));
  }

  function updateTile(z) {
    var e = S.els.tiles[z.id];
    if (!e || !z) return;
    var nodata = z.occupancy === null;
    e.tile.style.setProperty("--lvl", z.colour);
    e.tile.classList.toggle("nodata", nodata);
    e.tile.classList.toggle("hot", !nodata && z.level >= 3);
    setText(e.occ, people(z.occupancy));
    setText(e.cap, " / " + people(z.capacity));
    setText(e.pct, pct(z.share));
    e.pct.style.color = nodata ? "" : (z.level >= 1 ? z.colour : "#e8eef5");
    setText(e.level, zoneLabel(z));
    paintBadge(e.level, z.colour);
  }

  function renderHeadline() {
    var d = S.district;
    setBig($("people-now"), d ? people(d.people_now) : "—");
    setBig($("arrivals"), d ? people(d.arrivals_today) : "—");
    renderArrivalsRatio(d);

    var counts = { 0: 0, 1: 0, 2: 0, 3: 0, 4: 0, nodata: 0 };
    Object.keys(S.zones).forEach(function (id) {
      var z = S.zones[id];
      if (z.occupancy === null) counts.nodata++;
      else counts[z.level] = (counts[z.level] || 0) + 1;
    });
    Object.keys(S.els.chips || {}).forEach(function (key) {
      var c = S.els.chips[key];
      setText(c.n, String(counts[key] || 0));
      c.chip.classList.toggle("zero", !counts[key]);
    });

    var open = 0, worst = 0;
    Object.keys(S.alerts).forEach(function (id) {
      var a = S.alerts[id];
      if (a.open) { open++; worst = Math.max(worst, a.level); }
    });
    var oa = $("open-alerts");
    setBig(oa, String(open));
    oa.style.color = open ? S.levels[worst].colour : "";
  }

  // "112% of profile · 56% of 1.47M peak": today so far against the capacity profile, and against the
  // peak day. The first is coloured: well above the profile is the early sign of a crowd building.
  function renderArrivalsRatio(d) {
    var box = $("arrivals-pct");
    var key = d ? [d.arrivals_vs_profile_pct, d.arrivals_vs_peak_day_pct, d.peak_day_visits].join("|") : "";
    if (box.dataset.key === key) return;
    box.dataset.key = key;
    box.textContent = "";
    if (!d) { box.textContent = "—"; return; }
    var vp = d.arrivals_vs_profile_pct;
    if (vp !== null) {
      var b = el("b", "", Math.round(vp) + "%");
      b.style.color = vp >= 130 ? S.levels[3].colour : vp >= 110 ? S.levels[2].colour : "";
      box.appendChild(b);
      box.appendChild(document.createTextNode(" of profile"));
    }
    if (d.arrivals_vs_peak_day_pct !== null) {
      var peak = (d.peak_day_visits / 1e6).toFixed(2) + "M";
      box.appendChild(document.createTextNode(
        (vp !== null ? " · " : "") + Math.round(d.arrivals_vs_peak_day_pct) + "% of " + peak + " peak"));
    }
    box.title = "arrivals today vs the capacity profile so far, and vs the peak day";
  }

  function alertOrder(a, b) {
    if (a.open !== b.open) return a.open ? -1 : 1;
    if (a.level !== b.level) return b.level - a.level;
    return alertTime(b) - alertTime(a);
  }

  function alertTime(a) { // epoch seconds: *_ts from alerts/encode.py, or numeric *_at
    var keys = ["updated_ts", "opened_ts", "updated_at", "opened_at"];
    for (var i = 0; i < keys.length; i++) if (typeof a[keys[i]] === "number") return a[keys[i]];
    return 0;
  }

  function ago(ts) {
    if (!ts) return "";
    var ref = (S.district && S.district.ts) || Date.now() / 1000; // event time, so replays read right
    var m = Math.max(0, Math.round((ref - ts) / 60));
    return m < 1 ? "just now" : m < 60 ? m + " min ago" : Math.floor(m / 60) + " h " + (m % 60) + " min ago";
  }

  function renderAlerts() {
    var list = $("alert-list");
    var all = Object.keys(S.alerts).map(function (id) { return S.alerts[id]; }).sort(alertOrder);
    list.textContent = "";
    if (!all.length) {
      list.appendChild(el("li", "alert-empty", "无预警 No alerts"));
      return;
    }
    all.slice(0, MAX_ALERT_ROWS).forEach(function (a) {
      var li = el("li", "alert" + (a.open ? "" : " closed"));
      li.style.setProperty("--lvl", a.colour);
      var badge = el("div", "alert-badge", a.level_label);
      paintBadge(badge, a.colour);
      li.appendChild(badge);
      li.appendChild(el("div", "alert-zone", (a.zone_name_zh || a.zone) + " " + (a.zone_name_en || "")));
      var body = el("div", "alert-msg", (a.cause ? "[" + a.cause + "] " : "") + (a.message || ""));
      li.appendChild(body);
      var meta = el("div", "alert-meta");
      meta.appendChild(el("span", "alert-state " + a.state, a.state));
      meta.appendChild(document.createTextNode(" · " + ago(alertTime(a))));
      li.appendChild(meta);
      list.appendChild(li);
    });
    if (all.length > MAX_ALERT_ROWS) list.appendChild(el("li", "more", "+" + (all.length - MAX_ALERT_ROWS) + " more"));
  }

  // ---- emergency layout (平急转换) ---------------------------------------------------------------

  function hhmm(ts) {
    var d = new Date(ts * 1000), opts = { hour12: false, hour: "2-digit", minute: "2-digit" };
    try { return d.toLocaleTimeString("zh-CN", Object.assign({ timeZone: S.tz }, opts)); }
    catch (e) { return d.toLocaleTimeString("zh-CN", opts); }
  }

  function renderEmergency() {
    var box = $("emergency");
    var modes = S.emergency || [];
    var key = JSON.stringify(modes);
    if (box.dataset.key === key) return;
    box.dataset.key = key;
    box.textContent = "";
    modes.forEach(function (m) {
      var line = el("div", "em-line");
      line.appendChild(el("span", "em-title", "应急状态 EMERGENCY MODE"));
      var scope = m.scope === "district" ? "全区 district" : (m.scope_name_zh + " " + m.scope_name_en);
      line.appendChild(document.createTextNode(" — " + scope + " since " + hhmm(m.since) + " by " + m.by + ": "));
      line.appendChild(el("span", "em-reason", m.reason));
      line.title = m.reason;
      box.appendChild(line);
    });
    box.hidden = modes.length === 0;
    var was = document.body.classList.contains("emergency");
    document.body.classList.toggle("emergency", modes.length > 0);
    if (was !== modes.length > 0) fitTiles(); // the zones area changed size
  }

  // ---- response metrics (GET /api/metrics/response, alerts/metrics.py) ----------------------------
  // {"targets": {"I": {"label", "ack_s"}, ...}, "overall": row, "by_grid": [{"grid", ...row}]}, a row having
  // alerts, ack_median_s and ack_within_target (a share 0..1, null while nothing is judged yet).

  function shareColour(share) {
    var lv = share >= 0.9 ? 0 : share >= 0.7 ? 3 : 4; // green, orange, red (colours of domain/levels.py)
    return (S.levels[lv] || {}).colour || "";
  }

  function duration(s) {
    if (s === null || s === undefined) return "—";
    s = Math.round(s);
    if (s >= 3600) return Math.floor(s / 3600) + " h " + Math.round((s % 3600) / 60) + " min";
    return Math.floor(s / 60) + ":" + ("0" + (s % 60)).slice(-2);
  }

  function gridName(id) {
    var grids = (S.site && S.site.grids) || [];
    for (var i = 0; i < grids.length; i++) if (grids[i].id === id) return grids[i].name_zh + " " + grids[i].name_en;
    return id ? String(id) : "—";
  }

  function resetRow(id) {
    var tr = $(id);
    while (tr.children.length > 1) tr.removeChild(tr.lastChild); // keep the row's own header cell
    return tr;
  }

  function targetsText(targets) {
    return Object.keys(targets || {}).map(function (name) {
      return name + " ≤" + Math.round(targets[name].ack_s / 60) + " min";
    }).join(", ");
  }

  function renderResponse(data) {
    var heads = resetRow("response-grids"), alerts = resetRow("response-alerts");
    var ack = resetRow("response-ack"), share = resetRow("response-share");
    var columns = (data.by_grid || []).map(function (r) { return { name: gridName(r.grid), row: r }; });
    if (data.overall) columns.unshift({ name: "全区 All", row: data.overall });
    columns.forEach(function (c) {
      var r = c.row, judged = typeof r.ack_within_target === "number";
      heads.appendChild(el("th", "", c.name));
      alerts.appendChild(el("td", r.alerts ? "" : "none", String(r.alerts || 0)));
      ack.appendChild(el("td", typeof r.ack_median_s === "number" ? "" : "none", duration(r.ack_median_s)));
      var td = el("td", "share" + (judged ? "" : " none"), judged ? Math.round(r.ack_within_target * 100) + "%" : "—");
      if (judged) td.style.color = shareColour(r.ack_within_target);
      share.appendChild(td);
    });
    var targets = targetsText(data.targets);
    $("response-target").title = targets ? "acknowledged within " + targets : "";
    setText($("response-note"), "today" + (targets ? " · ack targets " + targets : "") +
      " · updated " + hhmm(Date.now() / 1000));
    $("response").hidden = false;
    fitTiles();
  }

  // Today in the site's timezone, by the data's own clock so a replayed day reads its own metrics.
  function todayStart() {
    var ref = S.district && S.district.ts ? S.district.ts * 1000 : Date.now();
    try {
      return new Intl.DateTimeFormat("en-CA", { timeZone: S.tz, year: "numeric", month: "2-digit", day: "2-digit" })
        .format(new Date(ref)) + "T00:00:00";
    } catch (e) {
      return null;
    }
  }

  function refreshResponse() {
    if (!S.site) return;
    S.responseLoaded = true;
    var since = todayStart();
    var url = "/api/metrics/response" + (since ? "?since=" + encodeURIComponent(since) : "");
    fetch(url, { cache: "no-store", credentials: "same-origin" })
      .then(function (r) {
        if (r.status === 503 || r.status === 404) { // no alert manager behind this wall: no section
          $("response").hidden = true;
          return null;
        }
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      })
      .then(function (data) { if (data) renderResponse(data); })
      .catch(function (e) {
        setText($("response-note"), "refresh failed (" + e.message + "), showing the last figures");
      });
  }

  // ---- staleness and clock ---------------------------------------------------------------------

  function refreshBanner() {
    var age = S.lastMsgAt ? (Date.now() - S.lastMsgAt) / 1000 : null;
    var title = "", detail = "";
    if (!S.connected && age === null) {
      title = "CONNECTING…";
      detail = "no connection to the service yet";
    } else if (!S.connected) {
      title = "DATA STALE · RECONNECTING…";
      detail = "last update " + Math.round(age) + " s ago";
    } else if (age !== null && age * 1000 > STALE_AFTER_MS) {
      title = "DATA STALE · RECONNECTING…";
      detail = "no message for " + Math.round(age) + " s";
    } else if (S.dataAgeS !== null && S.dataAgeS > DATA_STALE_S) {
      title = "DATA STALE";
      detail = "no sensor data for " + Math.round(S.dataAgeS) + " s";
    }
    var banner = $("banner");
    banner.hidden = !title;
    document.body.classList.toggle("stale", !!title);
    setText($("banner-title"), title);
    setText($("banner-detail"), detail);
  }

  function tick() {
    if (S.connected && S.lastMsgAt && Date.now() - S.lastMsgAt > STALE_AFTER_MS) {
      setConn("no messages, reconnecting…", false);
      dropSocket(); // a silent socket is a dead socket: start over with a fresh snapshot
    }
    try {
      setText($("clock"), new Date().toLocaleTimeString("zh-CN", { hour12: false, timeZone: S.tz }));
    } catch (e) {
      setText($("clock"), new Date().toLocaleTimeString("zh-CN", { hour12: false }));
    }
    refreshBanner();
  }

  window.addEventListener("resize", fitTiles);
  connect();
  setInterval(tick, 1000);
  setInterval(refreshResponse, RESPONSE_EVERY_MS);
  tick();
})();
