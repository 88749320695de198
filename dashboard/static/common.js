// crowdflow: the small DOM and format helpers the wall (wall-util.js re-exports them) and the officer page share
// (window.CF.ui). Plain JS, no build step; loaded before the page's own scripts.
(function () {
  "use strict";
  var CF = (window.CF = window.CF || {});

  var NO_DATA = "#757575"; // the one colour not from site.levels: unknown is grey, never calm green
  var fmtInt = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
  var timeFormats = {};

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }

  // Write only when different: the pages run for hours and most values do not change each tick.
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

  // A level badge: its colour (grey when none) with readable text on it.
  function paint(e, colour) {
    setStyle(e, "background", colour || NO_DATA);
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

  // An age to read at a glance: "45 s", "5 min", "2 h 10 min".
  function ageText(ms) {
    var s = Math.max(0, Math.round(ms / 1000));
    if (s < 120) return s + " s";
    var m = Math.floor(s / 60);
    return m < 120 ? m + " min" : Math.floor(m / 60) + " h " + (m % 60) + " min";
  }

  // "16 min ago" from two epoch-seconds times ("" without them).
  function minutesAgo(ts, ref) {
    if (!ts || !ref) return "";
    var m = Math.max(0, Math.round((ref - ts) / 60));
    return m < 1 ? "刚刚 just now" : m < 60 ? m + " min ago" : Math.floor(m / 60) + " h " + (m % 60) + " min ago";
  }

  CF.ui = {
    NO_DATA: NO_DATA,
    $: function (id) { return document.getElementById(id); },
    el: el, setText: setText, setAttr: setAttr, setStyle: setStyle, inkFor: inkFor, paint: paint,
    people: people, pct: pct, timeIn: timeIn, dateIn: dateIn, ageText: ageText, minutesAgo: minutesAgo,
  };
})();
