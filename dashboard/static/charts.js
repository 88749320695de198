// Zone time series for the wall and the report, drawn with the vendored uPlot (vendor/uplot/). Plain JS, no build
// step, no external assets. Two panels per zone:
//   occupancy: people now, capacity line, one line per level threshold (in the level's colour), and the forecast
//              ahead (zoneView.outlook) as a dashed line inside its 90% band, starting at the last point;
//   inflow:    arrivals per minute against the learned normal (dashed).
// Times are epoch seconds of the data, shown in the site's timezone whatever the browser's own is.
//
//   var c = CF.zoneCharts(containerEl, {zone, levels, windowMinutes: 180, timezone: "Asia/Shanghai", height});
//   c.setHistory(points)  rows from /api/zones/{id}/history; replaces the data up to their last row (live points
//                         pushed meanwhile that are newer than the history are kept)
//   c.push(zoneView)      a live zone view: appended (same ts replaces the last point, older ts is ignored)
//   c.size()              points kept (the window is bounded: older than windowMinutes before the newest go)
//   c.data()              {occupancy: [x, occ, forecast, low, high], inflow: [x, inflow, normal]}: what is drawn
//   c.xRange()            [min, max] of the time axis as last drawn (null before the first draw)
//   c.xLabels()           time-axis labels as last drawn
//   c.draws()             redraws so far (updates are batched: many pushes in a burst make one redraw)
//   c.destroy()           frees the charts, observer and timers, removes the panels
(function () {
  "use strict";

  var DEFAULT_WINDOW_MIN = 180;
  var MIN_REDRAW_MS = 500; // at most 2 redraws a second, however fast deltas arrive
  var MAX_POINTS = 5000; // besides the time window: a burst of same-minute deltas cannot grow memory either
  var DEFAULT_PLOT_H = 240; // per panel, when the container has no height of its own
  var MIN_FILL_H = 200; // a container at least this tall (CSS) is filled; a shorter one gets default-height panels
  var FONT_PX = 20; // axis labels read from across a room
  var AXIS_FONT = "600 " + FONT_PX + "px system-ui, sans-serif";
  var INK = "#e8eef5";
  var MUTED = "#8a99ab";
  var GRID = "rgba(232, 238, 245, 0.12)";
  var OCC = "#ffffff";
  var FORECAST = "#80deea";
  var FORECAST_BAND = "rgba(128, 222, 234, 0.18)";
  var INFLOW = "#4fc3f7";
  var NORMAL = "#b0bec5";
  var CAPACITY = "#eceff1";
  var DASH = [12, 8];

  function num(v) {
    return typeof v === "number" && isFinite(v) ? v : null; // null, missing or NaN: a gap, never a zero
  }

  function el(tag, text) {
    var e = document.createElement(tag);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function timeFormats(tz) {
    try {
      new Intl.DateTimeFormat("en-GB", { timeZone: tz }); // throws RangeError on an unknown zone
    } catch (e) {
      if (window.console) console.warn("charts: unknown timezone " + tz + ", using the browser's");
      tz = undefined;
    }
    var hm = new Intl.DateTimeFormat("en-GB", { timeZone: tz, hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
    var md = new Intl.DateTimeFormat("en-GB", { timeZone: tz, month: "2-digit", day: "2-digit" });
    return {
      tz: tz,
      hm: function (ts) { return hm.format(new Date(ts * 1000)); },
      md: function (ts) {
        var p = {};
        md.formatToParts(new Date(ts * 1000)).forEach(function (x) { p[x.type] = x.value; });
        return p.month + "-" + p.day;
      },
    };
  }

  var fmtPeople = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
  var fmtRate = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });

  // Room for the widest y label, so "12,000" is never cut off.
  function yAxisSize(u, values) {
    var longest = 0;
    (values || []).forEach(function (v) { longest = Math.max(longest, String(v).length); });
    return Math.max(48, Math.ceil(longest * FONT_PX * 0.62) + 20);
  }

  function axes(fmt, yFmt, onXLabels) {
    var common = {
      stroke: INK, font: AXIS_FONT, gap: 6,
      grid: { stroke: GRID, width: 1 }, ticks: { stroke: GRID, width: 1, size: 6 },
    };
    var x = Object.assign({}, common, {
      size: FONT_PX + 24, space: 110,
      values: function (u, splits, axisIdx, space, incr) {
        var f = incr >= 86400 ? fmt.md : fmt.hm;
        var out = splits.map(function (v) { return v === null || v === undefined ? "" : f(v); });
        if (onXLabels) onXLabels(out);
        return out;
      },
    });
    var y = Object.assign({}, common, {
      size: yAxisSize, space: FONT_PX * 2.5,
      values: function (u, splits) { return splits.map(function (v) { return yFmt.format(v); }); },
    });
    return [x, y];
  }

  var LINE_LABEL_PX = 16;
  var LABEL_BG = "rgba(10, 14, 19, 0.85)"; // the wall's background (style.css --bg)

  function canvasRatio(u) {
    return u.width > 0 ? u.ctx.canvas.width / u.width : 1; // canvas pixels per CSS pixel
  }

  function inView(u, value) {
    return value !== null && value <= u.scales.y.max && value >= u.scales.y.min;
  }

  // Horizontal lines across the plot (capacity, level thresholds), under the series.
  function drawLines(u, lines) {
    var ctx = u.ctx, b = u.bbox, r = canvasRatio(u);
    lines.forEach(function (l) {
      if (!inView(u, l.value)) return;
      var y = Math.round(u.valToPos(l.value, "y", true));
      ctx.save();
      ctx.strokeStyle = l.colour;
      ctx.lineWidth = 2 * r;
      ctx.setLineDash(l.dash ? l.dash.map(function (d) { return d * r; }) : []);
      ctx.beginPath();
      ctx.moveTo(b.left, y);
      ctx.lineTo(b.left + b.width, y);
      ctx.stroke();
      ctx.restore();
    });
  }

  // Their labels, over the series on a dark patch, at the left (the right end is "now" and the forecast).
  // Lines close together (capacity and 95% of it) would stack their labels: each is pushed below the one above.
  function drawLineLabels(u, lines) {
    var ctx = u.ctx, b = u.bbox, r = canvasRatio(u), h = (LINE_LABEL_PX + 2) * r;
    var shown = lines.filter(function (l) { return inView(u, l.value); })
      .map(function (l) { return { l: l, y: u.valToPos(l.value, "y", true) - 3 * r }; })
      .sort(function (a, b2) { return a.y - b2.y; });
    var floor = -Infinity;
    ctx.save();
    ctx.font = "600 " + Math.round(LINE_LABEL_PX * r) + "px system-ui, sans-serif";
    ctx.textAlign = "left";
    ctx.textBaseline = "bottom";
    shown.forEach(function (s) {
      var y = Math.max(s.y, floor + h, b.top + h);
      floor = y;
      if (y > b.top + b.height) return;
      ctx.fillStyle = LABEL_BG;
      ctx.fillRect(b.left + 2 * r, y - h, ctx.measureText(s.l.label).width + 8 * r, h);
      ctx.fillStyle = s.l.colour;
      ctx.fillText(s.l.label, b.left + 6 * r, y);
    });
    ctx.restore();
  }

  function zoneCharts(container, opts) {
    opts = opts || {};
    var zone = opts.zone || {};
    var windowS = (num(opts.windowMinutes) || DEFAULT_WINDOW_MIN) * 60;
    var fmt = timeFormats(opts.timezone || "Asia/Shanghai");
    var levels = {};
    (opts.levels || []).forEach(function (lv) { levels[lv.level] = lv; });
    var capacity = num(zone.capacity);
    var thresholds = (zone.thresholds || []).filter(function (t) { return num(t.share) !== null; });

    // Capacity and each level's threshold (capacity x share), in the level's colour and with its label.
    function levelLines() {
      if (capacity === null) return [];
      var out = [{ value: capacity, colour: CAPACITY, dash: DASH, label: "capacity " + fmtPeople.format(capacity) }];
      thresholds.forEach(function (t) {
        var lv = levels[t.level] || {};
        out.push({
          value: capacity * t.share, colour: lv.colour || MUTED,
          label: (lv.label || "level " + t.level) + " · " + Math.round(t.share * 100) + "%",
        });
      });
      return out;
    }

    var rows = []; // {ts, occ, inflow, expected}, oldest first, ts strictly increasing
    var outlook = null; // {base: ts of the view it came with, rows: [[h, occ, lo, hi]...]}
    var destroyed = false, pending = false, timer = null, frame = 0, lastDraw = -Infinity;
    var xLabels = [];
    var draws = 0;

    // ---- DOM -----------------------------------------------------------------------------------------------
    // With a height of its own (CSS), the container is filled by an absolutely placed wrapper so the charts can
    // never grow it (no resize feedback loop); otherwise panels flow at a fixed height.
    // (Padding alone is not a height: an empty container with only padding flows.)
    var cs = getComputedStyle(container);
    var padTop = parseFloat(cs.paddingTop) || 0, padBottom = parseFloat(cs.paddingBottom) || 0;
    var fill = !num(opts.height) && container.clientHeight - padTop - padBottom >= MIN_FILL_H;
    var restorePosition = null;
    var wrap = el("div");
    wrap.className = "cf-charts";
    if (fill) {
      if (cs.position === "static") {
        restorePosition = container.style.position;
        container.style.position = "relative";
      }
      wrap.style.position = "absolute";
      wrap.style.top = padTop + "px";
      wrap.style.bottom = padBottom + "px";
      wrap.style.left = cs.paddingLeft;
      wrap.style.right = cs.paddingRight;
      wrap.style.overflow = "hidden";
    }

    function panel(kind, title, keys) {
      var p = el("div");
      p.className = "cf-chart";
      p.setAttribute("data-chart", kind);
      var head = el("div");
      head.style.display = "flex";
      head.style.alignItems = "baseline";
      head.style.gap = "18px";
      head.style.padding = "4px 6px";
      head.style.color = INK;
      var t = el("span", title);
      t.style.fontSize = "22px";
      t.style.fontWeight = "600";
      head.appendChild(t);
      keys.forEach(function (k) {
        var key = el("span");
        key.style.fontSize = "17px";
        key.style.color = MUTED;
        var sw = el("span");
        sw.style.display = "inline-block";
        sw.style.width = "26px";
        sw.style.marginRight = "6px";
        sw.style.verticalAlign = "middle";
        sw.style.borderTop = "3px " + (k.dashed ? "dashed " : "solid ") + k.colour;
        key.appendChild(sw);
        key.appendChild(document.createTextNode(k.text));
        head.appendChild(key);
      });
      p.appendChild(head);
      wrap.appendChild(p);
      return { el: p, head: head };
    }

    var occPanel = panel("occupancy", "在场人数 Occupancy", [
      { text: "now", colour: OCC }, { text: "forecast", colour: FORECAST, dashed: true },
      { text: "capacity", colour: CAPACITY, dashed: true },
    ]);
    var inPanel = panel("inflow", "进入 Inflow / min", [
      { text: "inflow", colour: INFLOW }, { text: "normal", colour: NORMAL, dashed: true },
    ]);
    container.appendChild(wrap);

    // ---- uPlot ---------------------------------------------------------------------------------------------
    function base(extra) {
      return Object.assign({
        width: 400, height: DEFAULT_PLOT_H,
        tzDate: fmt.tz ? function (ts) { return uPlot.tzDate(new Date(ts * 1000), fmt.tz); } : undefined,
        legend: { show: false }, // the key sits in the panel header, big enough to read on the wall
        cursor: { show: false, drag: { x: false, y: false } }, // nothing on the wall needs a mouse
        padding: [14, FONT_PX * 1.6, 0, 0], // right: room for half of the last time label ("15:00")
      }, extra);
    }

    var uOcc = new uPlot(base({
      series: [
        {},
        { label: "occupancy", stroke: OCC, width: 3 },
        { label: "forecast", stroke: FORECAST, width: 3, dash: DASH },
        { label: "forecast low", stroke: "transparent", width: 0, points: { show: false } },
        { label: "forecast high", stroke: "transparent", width: 0, points: { show: false } },
      ],
      bands: [{ series: [4, 3], fill: FORECAST_BAND }],
      scales: {
        x: { time: true },
        y: {
          range: function (u, min, max) {
            // Capacity is always in view, so how close a zone is to full reads at a glance.
            var top = Math.max(num(max) || 0, capacity || 0);
            return [0, top > 0 ? top * 1.08 : 10];
          },
        },
      },
      axes: axes(fmt, fmtPeople, function (labels) { xLabels = labels; }),
      hooks: {
        drawAxes: [function (u) { drawLines(u, levelLines()); }],
        draw: [function (u) { drawLineLabels(u, levelLines()); }],
      },
    }), [[], [], [], [], []], occPanel.el);

    var uIn = new uPlot(base({
      series: [
        {},
        { label: "inflow / min", stroke: INFLOW, width: 3 },
        { label: "normal", stroke: NORMAL, width: 2, dash: DASH },
      ],
      scales: {
        x: { time: true },
        y: { range: function (u, min, max) { return [0, Math.max(num(max) || 0, 1) * 1.15]; } },
      },
      axes: axes(fmt, fmtRate),
    }), [[], [], []], inPanel.el);

    // ---- data ----------------------------------------------------------------------------------------------
    function trim() {
      if (!rows.length) return;
      var cut = rows[rows.length - 1].ts - windowS;
      var i = 0;
      while (i < rows.length && rows[i].ts < cut) i++;
      i = Math.max(i, rows.length - MAX_POINTS);
      if (i > 0) rows.splice(0, i);
    }

    function build() {
      var x = [], occ = [], fc = [], lo = [], hi = [], inflow = [], normal = [];
      rows.forEach(function (r) {
        x.push(r.ts); occ.push(r.occ); fc.push(null); lo.push(null); hi.push(null);
        inflow.push(r.inflow); normal.push(r.expected);
      });
      var last = rows.length ? rows[rows.length - 1] : null;
      if (last && outlook) {
        var ahead = [];
        outlook.rows.forEach(function (o) {
          var h = num(o && o[0]), ts = h === null ? null : outlook.base + h * 60;
          if (ts !== null && ts > last.ts) ahead.push([ts, num(o[1]), num(o[2]), num(o[3])]);
        });
        ahead.sort(function (a, b) { return a[0] - b[0]; });
        if (ahead.length && last.occ !== null) {
          // The dashed line and its band start at the last measured point, not in mid-air.
          var n = x.length - 1;
          fc[n] = lo[n] = hi[n] = last.occ;
        }
        ahead.forEach(function (a) {
          x.push(a[0]); occ.push(null); fc.push(a[1]); lo.push(a[2]); hi.push(a[3]);
          inflow.push(null); normal.push(null);
        });
      }
      return { occupancy: [x, occ, fc, lo, hi], inflow: [x, inflow, normal] };
    }

    function draw() {
      frame = 0;
      pending = false;
      if (destroyed) return;
      lastDraw = performance.now();
      draws++;
      var d = build();
      uOcc.setData(d.occupancy);
      uIn.setData(d.inflow);
    }

    function schedule() {
      if (destroyed || pending) return;
      pending = true;
      var wait = Math.max(0, lastDraw + MIN_REDRAW_MS - performance.now());
      timer = setTimeout(function () {
        timer = null;
        frame = requestAnimationFrame(draw);
      }, wait);
    }

    function rowOf(p) {
      return {
        ts: num(p.ts), occ: num(p.occupancy), inflow: num(p.inflow_per_min),
        expected: num(p.expected_inflow_per_min), // absent on rows older than the learned normal
      };
    }

    function setHistory(points) {
      if (destroyed) return;
      var hist = (points || []).map(rowOf).filter(function (r) { return r.ts !== null; });
      hist.sort(function (a, b) { return a.ts - b.ts; });
      var merged = [];
      hist.forEach(function (r) {
        if (merged.length && merged[merged.length - 1].ts === r.ts) merged[merged.length - 1] = r;
        else merged.push(r);
      });
      var end = merged.length ? merged[merged.length - 1].ts : -Infinity;
      rows.forEach(function (r) { if (r.ts > end) merged.push(r); }); // live points the history does not reach
      rows = merged;
      trim();
      schedule();
    }

    function push(view) {
      if (destroyed || !view) return;
      if (num(view.capacity) !== null) capacity = view.capacity;
      var r = rowOf(view);
      if (r.ts === null) return; // a zone without data yet: nothing to place on the time axis
      var last = rows.length ? rows[rows.length - 1] : null;
      if (last && r.ts < last.ts) return; // late or replayed: the line never goes back in time
      if (last && r.ts === last.ts) rows[rows.length - 1] = r;
      else rows.push(r);
      if (Array.isArray(view.outlook)) outlook = { base: r.ts, rows: view.outlook };
      trim();
      schedule();
    }

    // ---- size ----------------------------------------------------------------------------------------------
    var sized = { w: -1, h: -1 };
    function resize() {
      if (destroyed) return;
      var w = Math.floor(wrap.clientWidth);
      if (w <= 0) return; // hidden: sized when shown
      var h = num(opts.height) || DEFAULT_PLOT_H;
      if (fill) {
        var room = wrap.clientHeight - occPanel.head.offsetHeight - inPanel.head.offsetHeight;
        h = Math.max(80, Math.floor(room / 2));
      }
      if (w === sized.w && h === sized.h) return;
      sized = { w: w, h: h };
      uOcc.setSize({ width: w, height: h });
      uIn.setSize({ width: w, height: h });
    }
    var observer = typeof ResizeObserver === "function" ? new ResizeObserver(resize) : null;
    if (observer) observer.observe(wrap);
    resize();

    return {
      setHistory: setHistory,
      push: push,
      size: function () { return rows.length; },
      data: build,
      xRange: function () {
        var s = uOcc.scales.x;
        return s && num(s.min) !== null && num(s.max) !== null ? [s.min, s.max] : null;
      },
      xLabels: function () { return xLabels.slice(); },
      draws: function () { return draws; },
      destroy: function () {
        if (destroyed) return;
        destroyed = true;
        if (observer) observer.disconnect();
        if (timer !== null) clearTimeout(timer);
        if (frame) cancelAnimationFrame(frame);
        uOcc.destroy();
        uIn.destroy();
        if (wrap.parentNode) wrap.parentNode.removeChild(wrap);
        if (restorePosition !== null) container.style.position = restorePosition;
        rows = [];
        outlook = null;
      },
    };
  }

  window.CF = window.CF || {};
  window.CF.zoneCharts = zoneCharts;
})();
