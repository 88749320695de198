// crowdflow wall: the alert feed (#alert-list). Open, most severe, newest first; each alert with cause,
// evidence, the measures checklist, diversion targets, state and age, and the operator's actions.
// A row is rebuilt only when its alert changed, and its comment box is kept; a row with a note being typed
// stays (at the end) even when newer alerts push it past the last row, and sorting never moves the focus.
// While the operator points at the list or types in it, rows hold their places: a row that moved under the
// pointer between sight and click would take the click (an Ack on another zone's alert). New alerts are
// added at the end meanwhile, counted in the head; the list sorts again when the pointer leaves, or after
// HOLD_MS without a touch, so a pointer left resting on the list never keeps a new red alert down.
(function () {
  "use strict";
  var W = window.CF.wall, U = W.util;
  var MAX_ROWS = 16; // the feed never grows without bound: the rest is counted in "+N more"
  var EXPANDED = 1; // the top open alerts show their checklist; the others on a click
  var rows = {}; // alert id -> {li, body, actions, input, msg, key, opened, changed}
  var toggled = {}; // alert id -> true: opened (or closed) by hand, against the default
  var more = null;
  var HOLD_MS = 15000;
  var touched = 0; // Date.now() of the operator's last pointer move, key or focus in the list
  var holdTimer = null;
  var EVIDENCE = {
    occupancy: "在区 occupancy", capacity: "容量 capacity", share: "占比 share", density: "密度 density",
    inflow_per_min: "进 in/min", outflow_per_min: "出 out/min",
  };

  // An alert as alerts/encode.py gives it (level as an object; the POST answers) or as the hub's view.
  function normalize(a) {
    if (a.level && typeof a.level === "object") {
      var lv = a.level;
      a.level = lv.severity;
      a.level_label = a.level_label || lv.label;
      a.colour = a.colour || lv.colour;
    }
    var known = W.S.levels[a.level] || {};
    a.level_label = a.level_label || known.label || String(a.level);
    a.colour = a.colour || known.colour || U.NO_DATA;
    a.zone_name_en = a.zone_name_en || a.zone_name || a.zone;
    if (!a.zone_name_zh) a.zone_name_zh = W.siteZone(a.zone).name_zh || a.zone;
    if (a.open === undefined) a.open = a.state !== "resolved";
    return a;
  }

  // When it was raised (opened_ts), the one time every page and the report agree on for an alert's age.
  function openedTime(a) {
    if (typeof a.opened_ts === "number") return a.opened_ts;
    return typeof a.opened_at === "number" ? a.opened_at : alertTime(a);
  }

  function alertTime(a) {
    var keys = ["updated_ts", "opened_ts"];
    for (var i = 0; i < keys.length; i++) if (typeof a[keys[i]] === "number") return a[keys[i]];
    return typeof a.updated_at === "number" ? a.updated_at : typeof a.opened_at === "number" ? a.opened_at : 0;
  }

  function order(a, b) { // dashboard/views.py alert_order: open first, most severe, newest
    if (!!a.open !== !!b.open) return a.open ? -1 : 1;
    if (a.level !== b.level) return b.level - a.level;
    return alertTime(b) - alertTime(a);
  }

  function keyOf(a, expanded) {
    return JSON.stringify([expanded, a.state, a.level, alertTime(a), a.message, a.evidence, a.measures, a.diversion,
      a.incident, a.inhibited_by, a.silenced_by, a.uncertain, a.uncertain_reason, a.acknowledged_by,
      a.ack_comment, a.resolve_comment, (a.history || []).length]);
  }

  function evidenceText(k, v) {
    var name = EVIDENCE[k] || k.replace(/_/g, " ");
    if (typeof v !== "number") return name + " " + v;
    if (k === "share" || /_share$/.test(k)) return name + " " + Math.round(v * 100) + "%";
    return name + " " + (Math.abs(v) >= 100 ? Math.round(v).toLocaleString("en-US") : String(Math.round(v * 100) / 100));
  }

  function marks(a) {
    var out = [];
    if (a.incident) out.push(["incident", "事件 incident " + a.incident]);
    if (a.inhibited_by) out.push(["inhibited", "抑制 follows " + a.inhibited_by]);
    if (a.silenced_by) out.push(["silenced", "静默 silenced"]);
    if (a.uncertain) out.push(["uncertain", "⚠ 数据存疑 uncertain" + (a.uncertain_reason ? ": " + a.uncertain_reason : "")]);
    return out;
  }

  function fillBody(body, a, expanded) {
    body.textContent = "";
    var head = U.el("div", "alert-head");
    head.title = "点击展开/收起 click to show or hide the details";
    var badge = U.el("span", "alert-badge", a.level_label);
    U.paintBadge(badge, a.colour);
    head.appendChild(badge);
    head.appendChild(U.el("span", "alert-zone", a.zone_name_zh + " " + (a.zone_name_en || "")));
    body.appendChild(head);
    var cause = U.el("div", "alert-cause", (U.CAUSES[a.cause] || a.cause || "") + (a.message ? " · " + a.message : ""));
    body.appendChild(cause);
    var ev = a.evidence || {};
    var evKeys = Object.keys(ev);
    if (evKeys.length && a.open && expanded) {
      var evBox = U.el("div", "alert-evidence");
      evKeys.slice(0, 6).forEach(function (k) { evBox.appendChild(U.el("span", "ev", evidenceText(k, ev[k]))); });
      body.appendChild(evBox);
    }
    if (a.open && expanded && a.measures && a.measures.length) {
      var ul = U.el("ul", "measures");
      a.measures.forEach(function (m) { ul.appendChild(U.el("li", "", m)); });
      body.appendChild(ul);
    }
    if (a.open && expanded && a.diversion && a.diversion.length) {
      var div = U.el("div", "diversion", "分流 Divert to: ");
      a.diversion.slice(0, 3).forEach(function (d, i) {
        var name = W.siteZone(d.zone).name_zh || d.name || d.zone;
        div.appendChild(U.el("b", "", (i ? ", " : "") + name + " (+" + U.people(d.spare) + ")"));
      });
      body.appendChild(div);
    }
    var ms = marks(a);
    if (ms.length) {
      var mk = U.el("div", "alert-marks");
      ms.forEach(function (m) { mk.appendChild(U.el("span", "mark " + m[0], m[1])); });
      body.appendChild(mk);
    }
    var meta = U.el("div", "alert-meta");
    meta.appendChild(U.el("span", "alert-state " + a.state, U.STATES[a.state] || a.state));
    var who = a.state === "resolved" ? (a.resolved_by ? " by " + a.resolved_by + (a.resolve_comment ? ": " + a.resolve_comment : "") : "")
      : a.acknowledged_by ? " by " + a.acknowledged_by + (a.ack_comment ? ": " + a.ack_comment : "") : "";
    if (who) meta.appendChild(U.el("span", "alert-who", who));
    if (a.open && !expanded && ((a.measures || []).length || (a.diversion || []).length)) {
      meta.appendChild(U.el("span", "alert-more", " · ☐ " + (a.measures || []).length + " 项措施 measures ▸"));
    }
    body.appendChild(meta);
    // Raised time and age, then the last lifecycle change (level, acknowledgement, resolve) if any: labelled,
    // in the site's timezone, ages against the data's clock (ages() keeps them current).
    var times = U.el("div", "alert-times");
    times.appendChild(U.el("span", "alert-opened", ""));
    var opened = openedTime(a), changed = alertTime(a);
    if (changed > opened) times.appendChild(U.el("span", "alert-changed", ""));
    body.appendChild(times);
  }

  function buildRow(a) {
    var li = U.el("li", "alert");
    li.dataset.alert = a.id;
    var body = U.el("div", "alert-body");
    body.addEventListener("click", function () { toggled[a.id] = !toggled[a.id]; render(); });
    li.appendChild(body);
    var actions = U.el("div", "alert-actions");
    var input = U.el("input", "alert-input");
    input.type = "text";
    input.dataset.field = "comment";
    input.maxLength = 500;
    input.placeholder = "备注 / 原因  comment or reason";
    actions.appendChild(input);
    [["ack", "确认 Ack"], ["comment", "备注 Comment"], ["resolve", "解除 Resolve"]].forEach(function (b) {
      var btn = U.el("button", "btn " + b[0], b[1]);
      btn.type = "button";
      btn.dataset.action = b[0];
      btn.addEventListener("click", function () { act(a.id, b[0]); });
      actions.appendChild(btn);
    });
    input.addEventListener("keydown", function (ev) { if (ev.key === "Enter") act(a.id, "comment"); });
    li.appendChild(actions);
    var msg = U.el("div", "alert-error", "");
    li.appendChild(msg);
    return { li: li, body: body, actions: actions, input: input, msg: msg, key: null };
  }

  function paint(r, a, expanded) {
    var key = keyOf(a, expanded);
    U.setAttr(r.li, "data-level", a.level);
    U.setAttr(r.li, "data-state", a.state);
    U.setStyle(r.li, "--lvl", a.colour);
    r.li.classList.toggle("closed", !a.open);
    r.actions.hidden = !a.open;
    r.actions.querySelector('[data-action="ack"]').hidden = a.state === "acknowledged";
    if (r.key === key) return;
    r.key = key;
    r.li.classList.toggle("expanded", expanded);
    fillBody(r.body, a, expanded);
    r.opened = { el: r.body.querySelector(".alert-opened"), ts: openedTime(a), label: "发布 raised " };
    var changed = r.body.querySelector(".alert-changed");
    r.changed = changed ? { el: changed, ts: alertTime(a), label: "变更 changed " } : null;
  }

  // The operator is typing in a row's box (a focused button, left by a click, does not count).
  function typing(list) {
    var el = document.activeElement;
    return !!el && el.tagName === "INPUT" && list.contains(el);
  }

  function holding(list) {
    return (list.matches(":hover") || typing(list)) && Date.now() - touched < HOLD_MS;
  }

  // A row the operator works in: its box has the focus, or text not sent yet. It is never dropped while its
  // alert exists (past the last row it stays at the end), so a note is never lost.
  function working(r) {
    return r.input === document.activeElement || r.input.value.trim() !== "";
  }

  function watch(list) {
    if (list.dataset.watched) return;
    list.dataset.watched = "1";
    var touch = function () { touched = Date.now(); };
    ["pointermove", "pointerdown", "keydown", "focusin", "wheel"].forEach(function (ev) {
      list.addEventListener(ev, touch, { passive: true });
    });
    // Leaving the list lets it sort at once (the event comes before :hover clears), unless the operator is
    // still typing in a row's box: that holds it until the box loses focus, or HOLD_MS after the last key.
    list.addEventListener("pointerleave", function () {
      if (!typing(list)) touched = 0;
      setTimeout(render, 0);
    });
    list.addEventListener("focusout", function () { setTimeout(render, 0); });
  }

  // The rows `lis` in this order, without moving the one that holds the focus: a moved element loses it,
  // and the operator's cursor with it.
  function place(list, lis) {
    var focus = -1;
    lis.forEach(function (li, i) { if (li.contains(document.activeElement)) focus = i; });
    if (focus < 0) { lis.forEach(function (li) { list.appendChild(li); }); return; }
    var pivot = lis[focus], after = pivot;
    for (var i = 0; i < focus; i++) list.insertBefore(lis[i], pivot);
    for (var j = focus + 1; j < lis.length; j++) { list.insertBefore(lis[j], after.nextSibling); after = lis[j]; }
  }

  function onScreen(list) {
    return Array.prototype.filter.call(list.children, function (c) { return c.dataset.alert; });
  }

  function render() {
    var S = W.S, list = U.$("alert-list");
    watch(list);
    var hold = holding(list);
    var all = Object.keys(S.alerts).map(function (id) { return S.alerts[id]; }).sort(order);
    var shown = all.slice(0, MAX_ROWS);
    all.slice(MAX_ROWS).forEach(function (a) { // past the last row: kept where the operator is working
      var r = rows[a.id];
      if (r && r.li.isConnected && (hold || working(r))) shown.push(a);
    });
    var at = {}, keep = {};
    onScreen(list).forEach(function (li, i) { at[li.dataset.alert] = i; });
    shown.forEach(function (a, i) {
      var r = rows[a.id] || (rows[a.id] = buildRow(a));
      keep[a.id] = true;
      // Held, which rows are open by default follows their places on screen, so no row above the pointer
      // grows or shrinks (new ones, at the end, start closed).
      var pos = hold ? (a.id in at ? at[a.id] : Infinity) : i;
      var byDefault = a.open && pos < EXPANDED;
      paint(r, a, toggled[a.id] ? !byDefault : byDefault);
    });
    Object.keys(rows).forEach(function (id) {
      if (!keep[id]) { rows[id].li.remove(); delete rows[id]; delete toggled[id]; }
    });
    var empty = list.querySelector(".alert-empty");
    if (!shown.length && !empty) list.appendChild(U.el("li", "alert-empty", "无预警 No alerts"));
    if (shown.length && empty) empty.remove();
    // Reorder only when the order changed; held, only add the new rows at the end.
    var lis = shown.map(function (a) { return rows[a.id].li; }), current = onScreen(list);
    var same = current.length === lis.length && lis.every(function (li, i) { return current[i] === li; });
    if (!same && hold) {
      lis.forEach(function (li) {
        if (!li.isConnected) { list.appendChild(li); heldNew[li.dataset.alert] = true; }
      });
    } else if (!same) place(list, lis);
    held(hold && !same);
    if (!more) more = U.el("li", "more", "");
    var hidden = all.length - shown.length;
    U.setText(more, hidden > 0 ? "+" + hidden + " more 更多" : "");
    more.hidden = hidden <= 0;
    if (list.lastChild !== more) list.appendChild(more);
    ages();
  }

  // The head says the order is held, and how many rows came onto the list meanwhile (at its end); a timer
  // releases the hold HOLD_MS after the last touch.
  var heldNew = {};
  function held(on) {
    var tag = U.$("alert-held");
    if (!on) heldNew = {};
    var n = Object.keys(heldNew).filter(function (id) { return rows[id]; }).length;
    if (tag) {
      tag.hidden = !on;
      U.setText(tag, (n ? "+" + n + " 新 new ↓ · " : "") + "暂停排序 order held");
    }
    if (holdTimer) { clearTimeout(holdTimer); holdTimer = null; }
    if (on) holdTimer = setTimeout(render, Math.max(50, touched + HOLD_MS - Date.now() + 50));
  }

  // "发布 raised 19:42, 16 min ago". Ages read the data's own clock, so a replayed evening says "12 min ago"
  // of its own time.
  function stamp(t, ref) {
    if (!t || !t.el) return;
    if (!t.ts) { U.setText(t.el, ""); return; }
    var ago = U.minutesAgo(t.ts, ref);
    U.setText(t.el, t.label + U.timeIn(t.ts, W.S.tz) + (ago ? ", " + ago : ""));
  }

  function ages() {
    var ref = W.S.dataTs;
    Object.keys(rows).forEach(function (id) { stamp(rows[id].opened, ref); stamp(rows[id].changed, ref); });
  }

  function say(id, text, ok) {
    var r = rows[id];
    if (!r) return;
    U.setText(r.msg, text);
    r.msg.classList.toggle("ok", !!ok);
  }

  function act(id, action) {
    var r = rows[id];
    if (!r) return;
    var text = r.input.value.trim();
    var body;
    if (action === "ack") body = { comment: text };
    else if (action === "comment") {
      if (!text) { say(id, "先输入备注 Type a comment first"); r.input.focus(); return; }
      body = { text: text };
    } else {
      if (!text) { say(id, "解除须说明原因 A reason is required to resolve"); r.input.focus(); return; }
      body = { comment: text };
    }
    say(id, "…", false);
    W.auth.act(id, action, body).then(function (updated) {
      var row = rows[id];
      if (row && row.input.value.trim() === text) row.input.value = "";
      W.applyAlert(updated);
      say(id, { ack: "已确认 acknowledged", comment: "已备注 comment saved", resolve: "已解除 resolved" }[action], true);
    }, function (err) {
      say(id, err && err.message ? err.message : String(err));
    });
  }

  W.feed = { render: render, ages: ages, normalize: normalize, order: order, alertTime: alertTime };
})();
