// crowdflow wall: the helpers the wall-*.js modules share (window.CF.wall.util): common.js's (CF.ui), which the
// officer page uses too, and the wall's own labels, SVG and forecast text.
(function () {
  "use strict";
  var CF = (window.CF = window.CF || {});
  var W = (CF.wall = CF.wall || {});

  var C = CF.ui; // common.js: el, setText, paint, people, timeIn, ...
  var SVG_NS = "http://www.w3.org/2000/svg"; // a namespace name, never fetched

  var LEVEL_ZH = { 0: "正常", 1: "四级 蓝", 2: "三级 黄", 3: "二级 橙", 4: "一级 红" };
  var CAUSES = {
    capacity: "容量 capacity", density: "密度 density", surge: "激增 surge", forecast: "预测 forecast",
    stall: "滞留 stall", counterflow: "逆流 counterflow", sensor: "传感器 sensor",
  };
  var STATES = {
    raised: "待确认 raised", escalated: "已升级 escalated", acknowledged: "已确认 acknowledged",
    resolved: "已解除 resolved",
  };

  function svg(tag, attrs) {
    var e = document.createElementNS(SVG_NS, tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    return e;
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
    NO_DATA: C.NO_DATA, LEVEL_ZH: LEVEL_ZH, CAUSES: CAUSES, STATES: STATES,
    el: C.el, svg: svg, setText: C.setText, setAttr: C.setAttr, setStyle: C.setStyle, inkFor: C.inkFor,
    paintBadge: C.paint, people: C.people, pct: C.pct, timeIn: C.timeIn, dateIn: C.dateIn,
    ageText: C.ageText, minutesAgo: C.minutesAgo, shortForecast: shortForecast, $: C.$,
  };
})();
