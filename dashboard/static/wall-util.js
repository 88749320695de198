// crowdflow wall: small DOM and format helpers shared by the wall-*.js modules (window.CF.wall.util).
(function () {
  "use strict";
  var CF = (window.CF = window.CF || {});
  var W = (CF.wall = CF.wall || {});

  var SVG_NS = "http://www.w3.org/2000/svg"; // a namespace name, never fetched
  var NO_DATA = "#757575"; // the one colour not from site.levels: unknown is grey, never calm green
  var fmtInt = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
  var timeFormats = {};

  var LEVEL_ZH = { 0: "正常", 1: "四级 蓝", 2: "三级 黄", 3: "二级 橙", 4: "一级 红" };
  var CAUSES = {
    capacity: "容量 capacity", density: "密度 density", surge: "激增 surge", forecast: "预测 forecast",
    stall: "滞留 stall", counterflow: "逆流 counterflow", sensor: "传感器 sensor",
  };
  var STATES = {
    raised: "待确认 raised", escalated: "已升级 escalated", acknowledged: "已确认 acknowledged",
    resolved: "已解除 resolved",
  };

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }

  function svg(tag, attrs) {
    var e = document.createElementNS(SVG_NS, tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    return e;
  }

  // Write only when different: the wall runs for hours and most values do not change each tick.
  function setText(e, text) { if (e && e.textContent !== text) e.textContent = text; }
  function setAttr(e, name, value) {
    value = String(value);
    if (e && e.getAttribute(name) !== value) e.setAttribute(name, value);
  }
  function setStyle(e, prop, value) { if (e && e.style.getPropertyValue(prop) !== value) e.style.setProperty(prop, value); }

  // Dark text on light level colours (yellow, orange), white on dark ones: readable at a distance.
  function inkFor(hex) {
    var h = (hex || NO_DATA).replace("#", "");
    var r = parseInt(h.substr(0, 2), 16), g = parseInt(h.substr(2, 2), 16), b = parseInt(h.substr(4, 2), 16);
    return 0.299 * r + 0.587 * g + 0.114 * b > 150 ? "#111" : "#fff";
  }

  function paintBadge(e, colour) {
    setStyle(e, "background", colour);
    setStyle(e, "color", inkFor(colour));
  }

  function people(n) { return n === null || n === undefined ? "—" : fmtInt.format(Math.round(n)); }
  function pct(share) { return share === null || share === undefined ? "—" : Math.round(share * 100) + "%"; }

  // Clock text of an epoch-seconds time in the SITE's timezone (never the browser's).
  function timeIn(ts, tz, withSeconds) {
    var key = (tz || "") + (withSeconds ? "s" : "m");
    var f = timeFormats[key];
    if (!f) {
      var opts = { hour12: false, hour: "2-digit", minute: "2-digit" };
      if (withSeconds) opts.second = "2-digit";
      if (tz) opts.timeZone = tz;
      try { f = new Intl.DateTimeFormat("en-GB", opts); } catch (e) { delete opts.timeZone; f = new Intl.DateTimeFormat("en-GB", opts); }
      timeFormats[key] = f;
    }
    return f.format(new Date(ts * 1000));
  }

  function dateIn(ts, tz) {
    var key = (tz || "") + "d";
    if (!timeFormats[key]) {
      var opts = { year: "numeric", month: "2-digit", day: "2-digit" };
      if (tz) opts.timeZone = tz;
      try { timeFormats[key] = new Intl.DateTimeFormat("en-CA", opts); } catch (e) { delete opts.timeZone; timeFormats[key] = new Intl.DateTimeFormat("en-CA", opts); }
    }
    return timeFormats[key].format(new Date(ts * 1000));
  }

  function minutesAgo(ts, ref) {
    if (!ts || !ref) return "";
    var m = Math.max(0, Math.round((ref - ts) / 60));
    return m < 1 ? "刚刚 just now" : m < 60 ? m + " min ago" : Math.floor(m / 60) + " h " + (m % 60) + " min ago";
  }

  // "reaches II orange in about 12 min and I red in about 25 min" -> "II in 12 min · I in 25 min".
  var ETA_RE = /\b(IV|III|II|I)\s+[a-z]+\s+in about\s+(\d+)\s*min/g;
  function shortForecast(text) {
    if (!text) return { text: "", level: null };
    var parts = [], first = null, m;
    ETA_RE.lastIndex = 0;
    while ((m = ETA_RE.exec(text)) !== null) {
      parts.push(m[1] + " in " + m[2] + " min");
      if (first === null) first = m[1];
    }
    if (parts.length) return { text: "→ " + parts.join(" · "), level: { IV: 1, III: 2, II: 3, I: 4 }[first] };
    if (/^rising/.test(text)) return { text: "↑ 上升 rising", level: null };
    if (/^falling/.test(text)) return { text: "↓ 下降 falling", level: null };
    if (/^steady/.test(text)) return { text: "平稳 steady", level: null };
    return { text: "", level: null };
  }

  W.util = {
    NO_DATA: NO_DATA, LEVEL_ZH: LEVEL_ZH, CAUSES: CAUSES, STATES: STATES,
    el: el, svg: svg, setText: setText, setAttr: setAttr, setStyle: setStyle, inkFor: inkFor,
    paintBadge: paintBadge, people: people, pct: pct, timeIn: timeIn, dateIn: dateIn,
    minutesAgo: minutesAgo, shortForecast: shortForecast,
    $: function (id) { return document.getElementById(id); },
  };
})();
