// crowdflow officer page: an officer's open alerts and zones on a phone.
// Plain JS, no build step, nothing loaded from elsewhere; common.js (CF.ui) and stream.js (CF.openStream) first.
// The list of alerts comes from GET /api/alerts?mine=true (filtered on the server to the zones this person may
// act on); the live stream (/ws, the wall's) only says when to fetch it again, and moves the zones' levels.
(function () {
  "use strict";

  var TOKEN_KEY = "crowdflow.token"; // same key on every page
  var TICKS_KEY = "crowdflow.officer.ticks."; // + alert id: the measures this officer ticked (this phone only)
  // {person, id}: this browser's Web Push subscription at the service (the id from the POST's answer), kept so
  // a sign-out can remove it: a phone handed back must not go on buzzing with its last officer's alerts.
  var PUSH_KEY = "crowdflow.officer.push";
  var REFETCH_MIN_MS = 1000; // at most one alert fetch per second, however many deltas arrive
  var REFETCH_EVERY_MS = 60000; // and once a minute anyway, in case a change had no delta
  var STALE_AFTER_MS = 20000; // no message at all for this long (pings included): the socket is presumed dead
  var DATA_STUCK_MS = 60000; // the service has had no new sensor data for this long: say the page is stale
  var PUSH_TIMEOUT_MS = 15000;
  var ROSTER_NOTE = "预警仍会发送到您的值班渠道(ntfy、钉钉、企业微信)。 " +
    "Alerts still reach you on your roster channels (ntfy, DingTalk, WeCom).";

  var LEVEL_ZH = { 4: "I级 红色", 3: "II级 橙色", 2: "III级 黄色", 1: "IV级 蓝色", 0: "正常" };
  var CAUSE = {
    capacity: "超容量 over capacity", density: "密度过高 too dense", surge: "客流激增 sudden surge",
    forecast: "预计超限 forecast", stall: "出口受阻 outflow stalled", counterflow: "对冲 counter-flow",
    sensor: "传感器异常 sensors",
  };
  var STATE = {
    raised: "待确认 new", escalated: "已升级 escalated", acknowledged: "已确认 acknowledged",
    resolved: "已解除 resolved",
  };

  var S = {
    token: null,
    me: null, // {person, name, role, zones}
    myZones: null, // Set of zone ids, or null for every zone (command, operator)
    zones: {}, // id -> latest zone view (mine only)
    alerts: [], // latest /api/alerts?mine=true
    cards: {}, // alert id -> {li, parts}
    known: null, // alert id -> severity seen; null until the first fetch (no buzz for what was already open)
    dataNow: null, // newest event time seen on the stream (epoch s): ages are measured against it
    tz: undefined, // the site's timezone (from the snapshot): times are shown in it, never the phone's
    streaming: false, // the stream has given a snapshot or delta since it (re)connected
    fetching: false, again: false, lastFetchAt: 0, fetchTimer: null,
    buzzes: 0,
    fetches: 0,
    pushId: null,
    pushKey: null,
    focusAlert: null,
    flashTimer: null,
  };

  var C = window.CF.ui; // common.js
  var $ = C.$, el = C.el, setText = C.setText, paint = C.paint, n0 = C.people, pct = C.pct;

  // The live stream (stream.js): it owns the socket, resume point, backoff, resync guard and data time.
  var stream = window.CF.openStream({
    onSnapshot: takeSnapshot, onDelta: takeDelta, onPing: refreshConn, onState: streamState,
    token: function () { return S.token; }, deadMs: STALE_AFTER_MS, // the stream carries only my zones
  });

  // ---- the server -------------------------------------------------------------------------------

  function api(method, path, body) {
    var headers = { "Accept": "application/json" };
    if (S.token) headers["Authorization"] = "Bearer " + S.token;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    return fetch(path, { method: method, headers: headers, body: body === undefined ? undefined : JSON.stringify(body),
                         cache: "no-store" })
      .then(function (r) {
        return r.text().then(function (text) {
          var data = null;
          try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
          if (r.status === 401) signOut(detail(data, "令牌无效或已过期 token not accepted"));
          return { ok: r.ok, status: r.status, data: data };
        });
      });
  }

  function detail(data, fallback) {
    if (data && typeof data.detail === "string") return data.detail;
    if (data && Array.isArray(data.detail) && data.detail.length) return data.detail[0].msg || fallback;
    return fallback;
  }

  // ---- sign-in ----------------------------------------------------------------------------------

  function signIn(token) {
    S.token = token;
    $("signin-submit").disabled = true;
    setText($("signin-msg"), "");
    return api("GET", "/api/me").then(function (r) {
      $("signin-submit").disabled = false;
      if (!r.ok) {
        if (r.status !== 401) showSignIn("无法登录 cannot sign in: HTTP " + r.status + " " + detail(r.data, ""));
        return;
      }
      try { sessionStorage.setItem(TOKEN_KEY, token); } catch (e) { /* private mode: this tab only */ }
      S.me = r.data;
      S.myZones = r.data.zones === null ? null : new Set(r.data.zones);
      $("signin").hidden = true;
      $("main").hidden = false;
      $("signout").hidden = false;
      setText($("whoami"), r.data.name + " · " + roleWords(r.data.role));
      $("whoami").dataset.person = r.data.person;
      $("signin-token").value = "";
      loadZones();
      fetchAlerts();
      stream.start();
      initPush();
    }, function () {
      $("signin-submit").disabled = false;
      showSignIn("无法连接服务 cannot reach the service: check the network and try again");
    });
  }

  function roleWords(role) {
    return { officer: "网格员 officer", grid_leader: "网格长 grid leader", command: "指挥 command",
             operator: "值班员 operator", admin: "管理员 admin", wall: "大屏 wall display" }[role] || role;
  }

  function showSignIn(reason) {
    $("signin").hidden = false;
    $("main").hidden = true;
    $("signout").hidden = true;
    setText($("whoami"), "未登录 not signed in");
    setText($("signin-msg"), reason || "");
  }

  function signOut(reason) {
    S.token = null;
    S.me = null;
    try { sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* nothing stored */ }
    stream.stop();
    S.streaming = false;
    clearTimeout(S.fetchTimer); S.fetchTimer = null;
    S.known = null; S.alerts = []; S.zones = {};
    Object.keys(S.cards).forEach(function (id) { S.cards[id].li.remove(); });
    S.cards = {};
    $("my-zones").textContent = "";
    setConn("reconnecting", "未连接 offline");
    showSignIn(reason);
  }

  // ---- my zones ---------------------------------------------------------------------------------

  function mine(zoneId) { return S.myZones === null || S.myZones.has(zoneId); }

  function loadZones() {
    api("GET", "/api/zones").then(function (r) {
      if (!r.ok || !Array.isArray(r.data)) return;
      r.data.forEach(function (z) { if (mine(z.id)) S.zones[z.id] = z; });
      noteTimes(r.data);
      renderZones();
    });
  }

  function noteTimes(zones) {
    zones.forEach(function (z) {
      if (typeof z.ts === "number" && (S.dataNow === null || z.ts > S.dataNow)) S.dataNow = z.ts;
    });
  }

  function renderZones() {
    var box = $("my-zones");
    var list = Object.keys(S.zones).map(function (id) { return S.zones[id]; });
    list.sort(function (a, b) {
      return (b.level - a.level) || (b.share || 0) - (a.share || 0) || a.id.localeCompare(b.id);
    });
    var have = {};
    Array.prototype.forEach.call(box.children, function (li) { have[li.dataset.zone] = li; });
    list.forEach(function (z, i) {
      var li = have[z.id] || zoneItem(z.id);
      delete have[z.id];
      updateZone(li, z);
      if (box.children[i] !== li) box.insertBefore(li, box.children[i] || null);
    });
    Object.keys(have).forEach(function (id) { have[id].remove(); });
  }

  function zoneItem(id) {
    var li = el("li", "zone");
    li.dataset.zone = id;
    li.appendChild(el("span", "zlevel"));
    var body = el("div", "zbody");
    body.appendChild(el("div", "zname"));
    body.appendChild(el("div", "zfig"));
    li.appendChild(body);
    return li;
  }

  function updateZone(li, z) {
    li.dataset.level = String(z.level);
    li.classList.toggle("unhealthy", !z.healthy);
    var badge = li.querySelector(".zlevel");
    setText(badge, z.healthy || z.level > 0 ? (z.level > 0 ? LEVEL_ZH[z.level].split(" ")[0] : "正常") : "?");
    paint(badge, z.colour);
    setText(li.querySelector(".zname"), z.name_zh + " " + z.name_en);
    var fig = z.occupancy === null ? "无数据 no data" :
      n0(z.occupancy) + " / " + n0(z.capacity) + " 人 · " + pct(z.share) + " · " + z.level_label;
    if (!z.healthy) fig += " · 传感器异常 sensors unhealthy";
    if (z.eta_red_min !== null && z.eta_red_min !== undefined && z.level < 4) {
      fig += " · 约" + z.eta_red_min + "分钟达红色 red in ~" + z.eta_red_min + " min";
    }
    setText(li.querySelector(".zfig"), fig);
  }

  // ---- my alerts --------------------------------------------------------------------------------

  // Deltas say something changed; fetch again, at most once a second, one request at a time.
  function scheduleFetch() {
    if (!S.token) return;
    if (S.fetching) { S.again = true; return; }
    if (S.fetchTimer) return;
    var wait = Math.max(0, S.lastFetchAt + REFETCH_MIN_MS - Date.now());
    S.fetchTimer = setTimeout(fetchAlerts, wait);
  }

  function fetchAlerts() {
    clearTimeout(S.fetchTimer);
    S.fetchTimer = null;
    if (!S.token) return;
    S.fetching = true;
    S.lastFetchAt = Date.now();
    api("GET", "/api/alerts?mine=true").then(function (r) {
      S.fetching = false;
      if (r.ok && Array.isArray(r.data)) {
        setText($("alerts-msg"), "");
        applyAlerts(r.data);
        S.fetches += 1;
        $("my-alerts").dataset.fetched = String(S.fetches); // how many lists this page has taken in
      } else if (r.status !== 401) {
        setText($("alerts-msg"), "预警列表未更新 list not updated: " + detail(r.data, "HTTP " + r.status));
      }
      if (S.again) { S.again = false; scheduleFetch(); }
    }, function () {
      S.fetching = false;
      setText($("alerts-msg"), "网络中断,列表可能不是最新 offline: the list may be out of date");
      if (S.again) { S.again = false; scheduleFetch(); }
    });
  }

  function sev(a) { return a.level && typeof a.level === "object" ? a.level.severity : a.level; }

  function applyAlerts(list) {
    list = list.filter(function (a) { return a.open !== false && a.state !== "resolved"; });
    list.sort(function (a, b) { return (sev(b) - sev(a)) || ((b.opened_ts || 0) - (a.opened_ts || 0)); });
    var fresh = [];
    var first = S.known === null;
    var known = {};
    list.forEach(function (a) {
      known[a.id] = sev(a);
      if (!first && (!(a.id in S.known) || sev(a) > S.known[a.id])) fresh.push(a.id);
    });
    S.known = known;
    S.alerts = list;
    renderAlerts(fresh);
    if (fresh.length) buzz(fresh);
    if (S.focusAlert && S.cards[S.focusAlert]) {
      S.cards[S.focusAlert].li.scrollIntoView({ block: "start" });
      markFresh(S.cards[S.focusAlert].li);
      S.focusAlert = null;
    }
  }

  function renderAlerts(fresh) {
    var box = $("my-alerts");
    var keep = {};
    S.alerts.forEach(function (a, i) {
      var card = S.cards[a.id] || (S.cards[a.id] = alertCard(a.id));
      keep[a.id] = true;
      updateCard(card, a);
      if (i === 0 && !card.opened) { // the most severe alert's checklist starts open; the officer folds the rest
        card.opened = true;
        card.li.querySelector(".ameasures").open = true;
      }
      if (box.children[i] !== card.li) box.insertBefore(card.li, box.children[i] || null);
    });
    Object.keys(S.cards).forEach(function (id) {
      if (!keep[id]) { S.cards[id].li.remove(); delete S.cards[id]; }
    });
    (fresh || []).forEach(function (id) { if (S.cards[id]) markFresh(S.cards[id].li); });
    setText($("alerts-count"), S.alerts.length ? String(S.alerts.length) : "");
    $("alerts-none").hidden = S.alerts.length > 0;
  }

  function markFresh(li) {
    li.classList.add("fresh");
    setTimeout(function () { li.classList.remove("fresh"); }, 4000);
  }

  // A card is built once per alert and then updated in place: a comment being typed survives every refresh.
  function alertCard(id) {
    var li = el("li", "alert");
    li.dataset.alert = id;
    var head = el("div", "ahead");
    var badge = el("span", "abadge");
    badge.appendChild(el("span", "aroman"));
    badge.appendChild(el("span", "acolour"));
    head.appendChild(badge);
    var where = el("div", "awhere");
    where.appendChild(el("div", "azone"));
    where.appendChild(el("div", "acause"));
    head.appendChild(where);
    li.appendChild(head);

    var meta = el("div", "ameta");
    meta.appendChild(el("span", "astate"));
    meta.appendChild(el("span", "aage")); // raised at, and how long ago
    meta.appendChild(el("span", "achanged")); // the last lifecycle change, if any
    li.appendChild(meta);
    li.appendChild(el("p", "amsg"));
    li.appendChild(el("ul", "aevidence"));

    var divert = el("div", "adivert");
    li.appendChild(divert);

    // What to do comes first (one tap to acknowledge); the checklist follows for working through.
    var note = el("textarea", "acomment");
    note.dataset.field = "comment";
    note.rows = 2;
    note.maxLength = 2000;
    note.placeholder = "备注(解除时必填)Note (required to resolve)";
    note.setAttribute("aria-label", "备注 comment");
    li.appendChild(note);

    var actions = el("div", "aactions");
    var ack = el("button", "btn primary", "确认 Acknowledge");
    ack.type = "button";
    ack.dataset.action = "ack";
    var comment = el("button", "btn", "补充备注 Add note");
    comment.type = "button";
    comment.dataset.action = "comment";
    var resolve = el("button", "btn danger", "解除 Resolve");
    resolve.type = "button";
    resolve.dataset.action = "resolve";
    actions.appendChild(ack);
    actions.appendChild(comment);
    actions.appendChild(resolve);
    li.appendChild(actions);
    li.appendChild(el("p", "msg amsg-act"));

    var measures = el("details", "ameasures");
    var summary = el("summary", null, "措施 Measures");
    summary.appendChild(el("span", "mcount"));
    measures.appendChild(summary);
    measures.appendChild(el("ul", "checklist"));
    li.appendChild(measures);

    ack.addEventListener("click", function () { act(id, "ack"); });
    comment.addEventListener("click", function () { act(id, "comment"); });
    resolve.addEventListener("click", function () { act(id, "resolve"); });
    return { li: li, id: id, measuresKey: null, opened: false };
  }

  function updateCard(card, a) {
    var li = card.li;
    var level = a.level || {};
    li.dataset.level = String(level.severity);
    li.dataset.state = a.state;
    li.dataset.zone = a.zone;
    li.style.borderLeftColor = level.colour || C.NO_DATA;
    var badge = li.querySelector(".abadge");
    paint(badge, level.colour);
    setText(li.querySelector(".aroman"), level.name || "?");
    setText(li.querySelector(".acolour"), (LEVEL_ZH[level.severity] || "").split(" ")[1] || level.label || "");
    setText(li.querySelector(".azone"), (a.zone_name_zh || a.zone) + " " + (a.zone_name || ""));
    var cause = CAUSE[a.cause] || a.cause;
    setText(li.querySelector(".acause"), cause + " · " + (level.label || ""));

    var state = STATE[a.state] || a.state;
    if (a.state === "acknowledged" && a.acknowledged_by) {
      state += " · " + a.acknowledged_by + (a.ack_comment ? ": " + a.ack_comment : "");
    }
    if (a.uncertain) state += " · 数据存疑 uncertain";
    if (a.silenced_by) state += " · 已静默 silenced";
    setText(li.querySelector(".astate"), state);
    var age = li.querySelector(".aage"), changed = li.querySelector(".achanged");
    age.dataset.opened = String(a.opened_ts || "");
    age.dataset.openedAt = a.opened_at || "";
    var moved = typeof a.updated_ts === "number" && typeof a.opened_ts === "number" && a.updated_ts > a.opened_ts;
    changed.dataset.opened = moved ? String(a.updated_ts) : "";
    changed.dataset.openedAt = moved ? a.updated_at || "" : "";
    changed.hidden = !moved;
    setText(li.querySelector(".amsg"), a.message || "");
    renderEvidence(li.querySelector(".aevidence"), a.evidence || {});
    renderMeasures(card, a.measures || []);
    renderDiversion(li.querySelector(".adivert"), a.diversion || []);

    var acked = a.state === "acknowledged";
    li.querySelector('button[data-action="ack"]').hidden = acked;
    li.querySelector('button[data-action="comment"]').hidden = !acked;
    updateAge(li);
  }

  var EVIDENCE = [
    // key, label, format
    ["occupancy", "在区 people", function (v) { return n0(v); }],
    ["capacity", "容量 capacity", function (v) { return n0(v); }],
    ["share", "占比 of capacity", function (v) { return pct(v); }],
    ["density", "密度 density", function (v) { return v.toFixed(2) + " /m²"; }],
    ["inflow_per_min", "进 in", function (v) { return n0(v) + "/min"; }],
    ["outflow_per_min", "出 out", function (v) { return n0(v) + "/min"; }],
    ["expected_per_min", "通常 usual in", function (v) { return n0(v) + "/min"; }],
    ["baseline_inflow_per_min", "通常进 usual in", function (v) { return n0(v) + "/min"; }],
    ["baseline_outflow_per_min", "通常出 usual out", function (v) { return n0(v) + "/min"; }],
    ["eta_min_red", "达红色 red in", function (v) { return v < 0.5 ? null : "~" + Math.round(v) + " min"; }],
    ["eta_min_orange", "达橙色 orange in", function (v) { return v < 0.5 ? null : "~" + Math.round(v) + " min"; }],
    ["forecast_15", "15分钟后 in 15 min", function (v) { return n0(v); }],
    ["forecast_30", "30分钟后 in 30 min", function (v) { return n0(v); }],
    ["bad_sensors", "异常传感器 bad sensors", function (v) { return n0(v); }],
    ["entrances", "对冲入口 entrances", function (v) { return n0(v); }],
    ["flow_factor", "活动系数 event factor", function (v) { return "×" + v.toFixed(1); }],
  ];

  function renderEvidence(ul, ev) {
    var items = [];
    EVIDENCE.forEach(function (row) {
      var v = ev[row[0]];
      if (typeof v !== "number") return;
      var shown = row[2](v);
      if (shown !== null) items.push(row[1] + " " + shown);
    });
    var text = items.join("|");
    if (ul.dataset.shown === text) return;
    ul.dataset.shown = text;
    ul.textContent = "";
    items.forEach(function (t) { ul.appendChild(el("li", null, t)); });
  }

  function ticksOf(id) {
    try { return JSON.parse(localStorage.getItem(TICKS_KEY + id) || "[]"); } catch (e) { return []; }
  }

  function renderMeasures(card, measures) {
    var key = measures.join("\n");
    if (card.measuresKey === key) return;
    card.measuresKey = key;
    var ul = card.li.querySelector(".checklist");
    var ticked = ticksOf(card.id);
    ul.textContent = "";
    card.li.querySelector(".ameasures").hidden = measures.length === 0;
    var done = ticked.filter(function (t) { return measures.indexOf(t) >= 0; }).length;
    setText(card.li.querySelector(".mcount"), " (" + done + "/" + measures.length + ")");
    measures.forEach(function (m, i) {
      var li = el("li");
      var label = el("label");
      var box = el("input");
      box.type = "checkbox";
      box.checked = ticked.indexOf(m) >= 0;
      box.addEventListener("change", function () {
        var now = ticksOf(card.id).filter(function (x) { return x !== m; });
        if (box.checked) now.push(m);
        try { localStorage.setItem(TICKS_KEY + card.id, JSON.stringify(now)); } catch (e) { /* not kept */ }
        var done = now.filter(function (t) { return measures.indexOf(t) >= 0; }).length;
        setText(card.li.querySelector(".mcount"), " (" + done + "/" + measures.length + ")");
      });
      label.appendChild(box);
      label.appendChild(el("span", null, m));
      li.appendChild(label);
      ul.appendChild(li);
    });
  }

  function renderDiversion(box, targets) {
    var text = targets.map(function (d) {
      return d.name + "(可容 room for " + n0(d.spare) + " · " + pct(d.share) + ")";
    }).join(";");
    box.hidden = targets.length === 0;
    setText(box, targets.length ? "分流至 Divert to: " + text : "");
  }

  // The clock time of an alert's moment in the site's timezone: from the ts once the snapshot has said which
  // timezone that is, else from the server's local ISO text ("2026-10-03T19:42:05+08:00" -> "19:42").
  function alertClock(ts, iso) {
    if (S.tz || !iso) return C.timeIn(ts, S.tz, false);
    return iso.slice(11, 16);
  }

  // "发布 raised 19:42, 16 min ago" (wall and officer page alike: ages from the raise, against the data's clock)
  function stampAge(span, label) {
    var at = parseFloat(span.dataset.opened);
    if (isNaN(at)) { setText(span, ""); return; }
    var now = S.dataNow !== null ? S.dataNow : Date.now() / 1000;
    setText(span, label + alertClock(at, span.dataset.openedAt) + ", " + C.minutesAgo(at, now));
  }

  function updateAge(li) {
    stampAge(li.querySelector(".aage"), "发布 raised ");
    stampAge(li.querySelector(".achanged"), "变更 changed ");
  }

  function updateAges() {
    Object.keys(S.cards).forEach(function (id) { updateAge(S.cards[id].li); });
  }

  function act(id, action) {
    var card = S.cards[id];
    if (!card) return;
    var li = card.li;
    var note = li.querySelector('textarea[data-field="comment"]');
    var text = note.value.trim();
    var say = li.querySelector(".amsg-act");
    var body;
    if (action === "ack") body = { comment: text };
    else if (action === "comment") {
      if (!text) { setText(say, "请先写备注 Write the note first"); note.focus(); return; }
      body = { text: text };
    } else {
      if (!text) { setText(say, "请写明解除原因 Write why it is resolved"); note.focus(); return; }
      body = { comment: text };
    }
    var buttons = li.querySelectorAll("button[data-action]");
    Array.prototype.forEach.call(buttons, function (b) { b.disabled = true; });
    setText(say, "发送中 sending…");
    api("POST", "/api/alerts/" + encodeURIComponent(id) + "/" + action, body).then(function (r) {
      Array.prototype.forEach.call(buttons, function (b) { b.disabled = false; });
      if (r.ok) {
        note.value = "";
        setText(say, { ack: "已确认 acknowledged", comment: "备注已记录 note recorded", resolve: "已解除 resolved" }[action]);
        if (r.data && r.data.id === id) {
          if (r.data.state === "resolved") { li.remove(); delete S.cards[id]; }
          else updateCard(card, r.data);
        }
      } else if (r.status !== 401) {
        setText(say, "未成功 not done: " + detail(r.data, "HTTP " + r.status));
      }
      scheduleFetch();
    }, function () {
      Array.prototype.forEach.call(buttons, function (b) { b.disabled = false; });
      setText(say, "网络中断,未发送 offline: not sent, try again");
    });
  }

  // A new alert for me (or one that got worse): vibrate and flash, so a phone in a pocket or a hand is noticed.
  function buzz(ids) {
    S.buzzes += 1;
    document.body.dataset.alerted = String(S.buzzes);
    try { if (navigator.vibrate) navigator.vibrate([300, 120, 300, 120, 300]); } catch (e) { /* no vibration */ }
    document.body.classList.remove("flash");
    void document.body.offsetWidth; // restart the animation
    document.body.classList.add("flash");
    clearTimeout(S.flashTimer);
    S.flashTimer = setTimeout(function () { document.body.classList.remove("flash"); }, 2000);
    var top = S.cards[ids[0]];
    if (top && window.scrollY > top.li.offsetTop) top.li.scrollIntoView({ block: "start" });
  }

  // ---- the live stream --------------------------------------------------------------------------

  function setConn(state, text, title) {
    var c = $("conn");
    c.dataset.state = state;
    setText(c, text);
    c.title = title || "";
  }

  // Live only while the stream is up AND the service has fresh sensor data; otherwise stale, with how long.
  function refreshConn() {
    if (!S.streaming) return; // connecting / reconnecting: said where the socket opens and closes
    if (stream.dataTs === null) { setConn("stale", "数据停滞 stale", "no sensor data yet"); return; }
    var quiet = Date.now() - stream.dataAt;
    var asOf = "data as of " + C.timeIn(stream.dataTs, S.tz, true);
    if (quiet > DATA_STUCK_MS) {
      setConn("stale", "数据停滞 stale · " + C.ageText(quiet), "no new sensor data for " + C.ageText(quiet) + " · " + asOf);
      return;
    }
    setConn("live", "实时 live", asOf);
  }

  function streamState(state, why) {
    if (state === "connecting") { setConn("reconnecting", "连接中 connecting"); return; }
    if (state === "unauthorized") { signOut(why || "令牌无效或已过期 token not accepted"); return; }
    if (state === "open") return; // live (or stale) once the stream has said something
    S.streaming = false;
    if (state === "dead") {
      setConn("stale", "数据停滞 stale", "no message from the service for " + C.ageText(Date.now() - stream.lastMsgAt));
    } else {
      setConn("reconnecting", "重连中 reconnecting"); // closed, or dropped for a snapshot that never came
    }
  }

  // stream.js has taken the seq, epoch and data time (ts, last_data_age_s) from it already.
  function takeSnapshot(msg) {
    if (msg.site && msg.site.timezone) S.tz = msg.site.timezone;
    S.streaming = true;
    refreshConn(); // a stream that stopped minutes ago is stale at once
    takeZones(msg.zones || [], true);
    scheduleFetch(); // whatever happened while we were away
  }

  // The next delta in order (stream.js drops repeats, and resyncs once on a gap).
  function takeDelta(msg) {
    S.streaming = true;
    refreshConn();
    if (msg.zones && msg.zones.length) takeZones(msg.zones, false);
    var alerts = msg.alerts || [];
    if (alerts.some(function (a) { return mine(a.zone); })) scheduleFetch();
  }

  function takeZones(zones, whole) {
    noteTimes(zones);
    var changed = false;
    zones.forEach(function (z) { if (mine(z.id)) { S.zones[z.id] = z; changed = true; } });
    if (changed || whole) renderZones();
    updateAges();
  }

  setInterval(refreshConn, 1000);
  setInterval(function () { if (S.token && !document.hidden) scheduleFetch(); }, REFETCH_EVERY_MS);
  setInterval(updateAges, 15000);

  // ---- Web Push ---------------------------------------------------------------------------------

  function pushSay(state, text) {
    var p = $("push-status");
    p.dataset.state = state;
    setText(p, text);
  }

  function pushButton(label, enabled) {
    var b = $("push-subscribe");
    setText(b, label);
    b.disabled = !enabled;
  }

  function keyBytes(b64) {
    var s = (b64 + "===".slice((b64.length + 3) % 4)).replace(/-/g, "+").replace(/_/g, "/");
    var raw = atob(s);
    var out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
    return out;
  }

  function withTimeout(p, ms, what) {
    return new Promise(function (resolve, reject) {
      var t = setTimeout(function () { reject(new Error(what + " did not answer within " + ms / 1000 + " s")); }, ms);
      p.then(function (v) { clearTimeout(t); resolve(v); }, function (e) { clearTimeout(t); reject(e); });
    });
  }

  function pushSupported() {
    return window.isSecureContext && "serviceWorker" in navigator && "PushManager" in window &&
      "Notification" in window;
  }

  function initPush() {
    S.pushId = null;
    if (!pushSupported()) {
      pushButton("开启推送 Turn on push", false);
      pushSay("unsupported", "此浏览器在此地址无法接收推送(需要 HTTPS 和支持推送的浏览器)。 " +
        "This browser cannot receive push at this address (it needs HTTPS and a browser with push). " + ROSTER_NOTE);
      return;
    }
    api("GET", "/api/push/key").then(function (r) {
      if (!r.ok) {
        pushButton("开启推送 Turn on push", false);
        pushSay("unconfigured", r.status === 404 ? "本服务未开启手机推送。 Push is not configured on this service. " + ROSTER_NOTE
                                                 : "推送暂不可用 push unavailable: " + detail(r.data, "HTTP " + r.status));
        return;
      }
      S.pushKey = r.data.public_key;
      pushButton("开启推送 Turn on push", true);
      pushSay("off", "本机未订阅推送。 This phone is not subscribed. " + ROSTER_NOTE);
      // Already subscribed on this phone: register it again (same id), e.g. after the service forgot a gone one.
      navigator.serviceWorker.getRegistration("/").then(function (reg) {
        return reg ? reg.pushManager.getSubscription() : null;
      }).then(function (sub) {
        if (sub) return store(sub);
      }).catch(function () { /* stays "off" */ });
    });
  }

  function pushSaved() {
    try {
      var v = JSON.parse(localStorage.getItem(PUSH_KEY) || "null");
      return v && typeof v.id === "string" && typeof v.person === "string" ? v : null;
    } catch (e) { return null; }
  }

  function pushRemember(person, id) {
    try { localStorage.setItem(PUSH_KEY, JSON.stringify({ person: person, id: id })); } catch (e) { /* not kept */ }
  }

  function pushForget() {
    try { localStorage.removeItem(PUSH_KEY); } catch (e) { /* nothing kept */ }
  }

  // This browser's PushSubscription, ended (the push service forgets the endpoint). Resolves true if one was.
  function dropBrowserSubscription() {
    if (!pushSupported()) return Promise.resolve(false);
    var done = navigator.serviceWorker.getRegistration("/").then(function (reg) {
      return reg ? reg.pushManager.getSubscription() : null;
    }).then(function (sub) { return sub ? sub.unsubscribe() : false; });
    return withTimeout(done, PUSH_TIMEOUT_MS, "the browser's push service");
  }

  function store(sub) {
    return api("POST", "/api/push/subscriptions", sub.toJSON()).then(function (r) {
      if (!r.ok) throw new Error(detail(r.data, "HTTP " + r.status));
      S.pushId = r.data.id;
      if (S.me) pushRemember(S.me.person, r.data.id);
      pushButton("关闭推送 Turn off push", true);
      pushSay("subscribed", "本机已开启推送(" + r.data.id + ")。 Push is on for this phone. " +
        "其他值班渠道照常发送 Your roster channels are told as well.");
    });
  }

  function subscribe() {
    pushButton("请稍候 please wait…", false);
    var ask = Notification.permission === "granted" ? Promise.resolve("granted") : Notification.requestPermission();
    Promise.resolve(ask).then(function (perm) {
      if (perm !== "granted") {
        var e = new Error("notifications " + perm);
        e.name = "PermissionDenied";
        throw e;
      }
      return navigator.serviceWorker.register("/sw.js", { scope: "/" });
    }).then(function () {
      return withTimeout(navigator.serviceWorker.ready, PUSH_TIMEOUT_MS, "the service worker");
    }).then(function (reg) {
      var asked = reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: keyBytes(S.pushKey) });
      return withTimeout(asked, PUSH_TIMEOUT_MS, "the browser's push service");
    }).then(store).catch(function (e) {
      pushButton("开启推送 Turn on push", true);
      if (e && (e.name === "PermissionDenied" || e.name === "NotAllowedError")) {
        pushSay("denied", "通知权限被拒绝:请在浏览器的网站设置中允许通知。 Notifications are blocked for this site: " +
          "allow them in the browser's site settings. " + ROSTER_NOTE);
      } else {
        pushSay("failed", "此浏览器未能订阅推送,可能无法连接其推送服务(浏览器提示:" + reason(e) + ")。 " +
          "This browser could not subscribe to push; its push service may be unreachable from here (the browser " +
          "says: " + reason(e) + "). " + ROSTER_NOTE);
      }
    });
  }

  function reason(e) { return e && e.message ? e.message : String(e); }

  function unsubscribe() {
    pushButton("请稍候 please wait…", false);
    var id = S.pushId;
    api("DELETE", "/api/push/subscriptions/" + encodeURIComponent(id)).then(function () {
      return navigator.serviceWorker.getRegistration("/");
    }).then(function (reg) {
      return reg ? reg.pushManager.getSubscription() : null;
    }).then(function (sub) {
      return sub ? sub.unsubscribe() : true;
    }).then(function () {
      S.pushId = null;
      pushForget();
      pushButton("开启推送 Turn on push", true);
      pushSay("off", "本机推送已关闭。 Push is off for this phone. " + ROSTER_NOTE);
    }, function (e) {
      pushButton("关闭推送 Turn off push", true);
      pushSay("subscribed", "未能关闭推送 could not turn push off: " + (e && e.message ? e.message : e));
    });
  }

  // ---- start ------------------------------------------------------------------------------------

  $("signin").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var t = $("signin-token").value.trim();
    if (!t) { setText($("signin-msg"), "请输入令牌 enter your token"); return; }
    signIn(t);
  });
  // Signing out on a phone that subscribed to push: the service forgets the subscription (DELETE, while the
  // token still works) and the browser ends it, so the next person to pick the phone up gets no alerts meant
  // for this one. Then the token goes.
  function signOutByHand() {
    var saved = pushSaved();
    if (!saved || !S.me || saved.person !== S.me.person) { signOut(""); return; }
    $("signout").disabled = true;
    pushButton("请稍候 please wait…", false);
    pushSay("removing", "正在关闭本机推送… Turning push off for this phone…");
    var atService = api("DELETE", "/api/push/subscriptions/" + encodeURIComponent(saved.id)).then(function (r) {
      return r.ok || r.status === 404; // 404: the service had already forgotten it
    }, function () { return false; });
    var inBrowser = dropBrowserSubscription().then(function () { return true; }, function () { return false; });
    Promise.all([atService, inBrowser]).then(function (done) {
      $("signout").disabled = false;
      pushForget();
      S.pushId = null;
      // Either side suffices: the service sends nothing to a subscription it forgot, and one the browser ended
      // makes the push service answer "gone", upon which the service forgets it.
      var said = done[0]
        ? "已退出,本机推送已关闭。 Signed out: push to this phone is off."
        : done[1]
          ? "已退出,本机已停止接收推送(服务将在下次推送时删除该订阅)。 Signed out: this phone no longer receives push " +
            "(the service could not be told now; it drops the subscription at its next push)."
          : "已退出,但未能关闭本机推送:请在浏览器的网站设置中关闭通知。 Signed out, but push to this phone could not be " +
            "turned off: turn notifications off in the browser's site settings.";
      if (S.token) signOut(said); // (a 401 on the DELETE has signed out already, with its reason)
      pushButton("开启推送 Turn on push", true);
      pushSay(done[0] || done[1] ? "off" : "failed", said);
    });
  }

  $("signout").addEventListener("click", signOutByHand);
  $("push-subscribe").addEventListener("click", function () { if (S.pushId) unsubscribe(); else subscribe(); });
  document.addEventListener("visibilitychange", function () { if (!document.hidden) scheduleFetch(); });

  // From a notification: show that alert once the list is in (at start, or when the worker navigates here).
  function focusFromHash() {
    var m = /^#alert=([\w-]+)$/.exec(location.hash || "");
    if (!m) return;
    S.focusAlert = m[1];
    if (S.known !== null) applyAlerts(S.alerts);
  }
  window.addEventListener("hashchange", focusFromHash);
  focusFromHash();

  var saved = null;
  try { saved = sessionStorage.getItem(TOKEN_KEY); } catch (e) { saved = null; }
  if (saved) { $("signin").hidden = true; signIn(saved); } else showSignIn("");
})();
