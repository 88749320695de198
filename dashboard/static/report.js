// crowdflow daily report: GET /api/report/daily?date=YYYY-MM-DD rendered as headline figures and sortable
// tables, with the CSV download of the same day. Plain JS, no build step, no external assets.
// The report needs a token (the wall's, the operator's, command's or the admin's): the one this tab signed in
// with on the wall or the officer page (sessionStorage), else the small sign-in form. It goes only in the
// Authorization header, so the CSV is fetched and saved from memory rather than linked.
// Times are shown as the server gives them (site timezone), never converted to the browser's timezone.
(function () {
  "use strict";

  var S = {
    report: null,
    levels: {}, // name ("IV") or severity (1) -> level info
    maxDate: null, // the data's day, once known: no report after it
    request: 0, // newest request number: an older answer arriving late is dropped
    sort: {}, // table id -> {key, dir}
  };

  var $ = function (id) { return document.getElementById(id); };
  var KEY = "crowdflow.token", WALL_KEY = "crowdflow.wall";

  function token() {
    try { return sessionStorage.getItem(KEY) || sessionStorage.getItem(WALL_KEY); } catch (e) { return null; }
  }

  function authHeaders() {
    var t = token();
    return t ? { Authorization: "Bearer " + t } : {};
  }

  function askToken(reason) {
    $("report-signin").hidden = false;
    setStatus("error", reason);
    $("report-token").focus();
  }
  var fmtInt = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }

  function num(v) { return v === null || v === undefined ? "—" : fmtInt.format(v); }
  // "2026-01-01T19:42:05+08:00" -> "19:42"; with the report's day, a time on another day keeps its date:
  // an alert resolved after midnight reads "01-02 00:12", not a time that looks earlier than its opening.
  function hm(iso, day) {
    if (!iso) return "—";
    return day && iso.slice(0, 10) !== day ? iso.slice(5, 10) + " " + iso.slice(11, 16) : iso.slice(11, 16);
  }
  function pct(share) { return share === null || share === undefined ? "—" : (share * 100).toFixed(1) + "%"; }

  function dur(s) {
    if (s === null || s === undefined) return "—";
    if (s < 60) return Math.round(s) + " s";
    var m = Math.floor(s / 60), sec = Math.round(s - m * 60);
    if (sec === 60) { m += 1; sec = 0; }
    return m + " min" + (sec ? " " + sec + " s" : "");
  }

  // Dark text on light level colours (yellow, orange), white on dark ones.
  function inkFor(hex) {
    var h = (hex || "#757575").replace("#", "");
    var r = parseInt(h.substr(0, 2), 16), g = parseInt(h.substr(2, 2), 16), b = parseInt(h.substr(4, 2), 16);
    return (0.299 * r + 0.587 * g + 0.114 * b) > 150 ? "#111" : "#fff";
  }

  function badge(level) {
    var lv = level === null || level === undefined ? null : S.levels[level];
    if (!lv) return el("span", "lvl none", "— 无数据 no data");
    var b = el("span", "lvl", lv.label_zh + " · " + lv.label);
    b.style.background = lv.colour;
    b.style.color = inkFor(lv.colour);
    b.setAttribute("data-level", String(lv.severity));
    return b;
  }

  // ---- dates ------------------------------------------------------------------------------------------

  function shiftDay(iso, days) {
    var d = new Date(iso + "T00:00:00Z");
    d.setUTCDate(d.getUTCDate() + days);
    return d.toISOString().slice(0, 10);
  }

  function dateFromUrl() {
    var m = /[?&]date=(\d{4}-\d{2}-\d{2})/.exec(window.location.search);
    return m ? m[1] : null;
  }

  // ---- loading ----------------------------------------------------------------------------------------

  function setStatus(state, text) {
    document.body.setAttribute("data-state", state);
    $("report-status").textContent = text;
  }

  function load(date) {
    var n = ++S.request;
    setStatus("loading", "加载中… Loading…");
    var url = "/api/report/daily" + (date ? "?date=" + encodeURIComponent(date) : "");
    fetch(url, { cache: "no-store", headers: authHeaders() })
      .then(function (res) {
        return res.json().then(function (body) { return { ok: res.ok, status: res.status, body: body }; },
          function () { return { ok: false, status: res.status, body: null }; });
      })
      .then(function (a) {
        if (n !== S.request) return;
        if (!a.ok) {
          var detail = a.body && a.body.detail ? a.body.detail : "HTTP " + a.status;
          if (typeof detail !== "string") detail = JSON.stringify(detail);
          if (a.status === 401 || a.status === 403) {
            askToken("需要令牌 A token is needed: " + detail);
            return;
          }
          setStatus("error", "无法生成报告 Cannot build the report: " + detail);
          return;
        }
        render(a.body);
      })
      .catch(function (e) {
        if (n !== S.request) return;
        setStatus("error", "连接失败 Cannot reach the service: " + e);
      });
  }

  // ---- render -----------------------------------------------------------------------------------------

  function render(r) {
    S.report = r;
    S.levels = {};
    r.levels.forEach(function (lv) { S.levels[lv.name] = lv; S.levels[lv.severity] = lv; });
    if (r.partial) S.maxDate = r.date;
    var input = $("report-date");
    input.value = r.date;
    if (S.maxDate) input.max = S.maxDate;
    $("next-day").disabled = !!S.maxDate && r.date >= S.maxDate;
    $("csv-link").href = "/api/report/daily.csv?date=" + encodeURIComponent(r.date);
    $("csv-link").setAttribute("download", "crowdflow-report-" + r.site + "-" + r.date + ".csv");
    if (dateFromUrl() !== r.date) window.history.replaceState(null, "", "?date=" + r.date);
    document.title = "crowdflow · 每日报告 " + r.date;
    $("site-name").textContent = r.site_name_zh + " · " + r.site_name_en + " · " + r.date;
    $("generated").textContent = r.partial
      ? "数据截至 data until " + hm(r.data_until_at) + " (" + r.timezone + ")"
      : "全天 whole day 00:00–24:00 (" + r.timezone + ")";

    renderNotes(r);
    renderHeadline(r);
    renderZones(r);
    renderGrids(r);
    renderResponse(r);
    renderAlerts(r);
    document.body.setAttribute("data-date", r.date);
    setStatus("ready", r.partial
      ? "当日未结束：数据截至 " + hm(r.data_until_at) + " · Partial day: data up to " + hm(r.data_until_at)
      : "全天 Whole day · " + r.date);
  }

  function renderNotes(r) {
    var ul = $("report-notes");
    ul.textContent = "";
    r.notes.forEach(function (n) { ul.appendChild(el("li", null, n)); });
  }

  function renderHeadline(r) {
    var h = r.headline;
    $("peak-people").textContent = num(h.peak_people);
    $("peak-at").textContent = h.peak_at
      ? "于 at " + hm(h.peak_at) + (h.peak_zones < h.zones_total ? " · " + h.peak_zones + "/" + h.zones_total + " 区域有数据 zones with data" : "")
      : "无数据 no data";
    $("arrivals").textContent = num(h.arrivals);
    $("arrivals-sub").textContent = h.arrivals_zones === h.zones_total
      ? "全部 " + h.zones_total + " 个区域 all zones"
      : h.arrivals_zones + "/" + h.zones_total + " 个区域已知 zones known";

    var box = $("alerts-by-level");
    box.textContent = "";
    $("alerts-total").textContent = h.alerts ? "· " + h.alerts.total : "· —";
    ["IV", "III", "II", "I"].forEach(function (name) {
      var lv = S.levels[name];
      var chip = el("div", "level-chip");
      chip.setAttribute("data-level", name);
      chip.style.background = lv.colour;
      chip.style.color = inkFor(lv.colour);
      chip.appendChild(el("span", "chip-label", lv.label_zh));
      chip.appendChild(el("span", "chip-value num", h.alerts ? String(h.alerts.by_level[name]) : "—"));
      box.appendChild(chip);
    });

    var resp = h.response;
    $("ack-median").textContent = resp ? dur(resp.ack_median_s) : "—";
    $("ack-sub").textContent = resp
      ? "P90 " + dur(resp.ack_p90_s) + " · 按时 within target " + pct(resp.ack_within_target) +
        " · 未确认 unacknowledged " + resp.unacknowledged
      : "无预警管理 no alert manager";
  }

  // ---- sortable tables ------------------------------------------------------------------------------

  // rows: [{values: {key: value}, tr: <tr>}]; nulls sort last in either direction.
  function fill(tableId, rows, emptyText) {
    var table = $(tableId);
    var body = table.tBodies[0];
    body.textContent = "";
    if (!rows.length) {
      var tr = el("tr", "empty");
      var td = el("td", null, emptyText);
      td.colSpan = table.tHead.rows[0].cells.length;
      tr.appendChild(td);
      body.appendChild(tr);
      return;
    }
    var s = S.sort[tableId];
    if (s) {
      var type = table.querySelector('th[data-key="' + s.key + '"]').getAttribute("data-type");
      rows = rows.slice().sort(function (a, b) {
        var x = a.values[s.key], y = b.values[s.key];
        var xn = x === null || x === undefined, yn = y === null || y === undefined;
        if (xn || yn) return xn === yn ? 0 : (xn ? 1 : -1);
        var c = type === "num" ? x - y : String(x).localeCompare(String(y), "zh-CN");
        return s.dir * c;
      });
    }
    rows.forEach(function (r) { body.appendChild(r.tr); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
      var key = th.getAttribute("data-key");
      th.setAttribute("aria-sort", s && s.key === key ? (s.dir > 0 ? "ascending" : "descending") : "none");
    });
  }

  function makeSortable(tableId, rerender) {
    var table = $(tableId);
    table.tHead.addEventListener("click", function (ev) {
      var th = ev.target.closest("th[data-key]");
      if (!th) return;
      var key = th.getAttribute("data-key");
      var s = S.sort[tableId];
      // Numbers start biggest first (the busiest zone on top), text A to Z.
      var first = th.getAttribute("data-type") === "num" ? -1 : 1;
      S.sort[tableId] = s && s.key === key ? { key: key, dir: -s.dir } : { key: key, dir: first };
      if (S.report) rerender(S.report);
    });
  }

  function cell(tr, text, cls) {
    var td = el("td", cls || null, text);
    tr.appendChild(td);
    return td;
  }

  function twoNames(zh, en) {
    var span = el("span", null);
    span.appendChild(el("span", "zh", zh));
    span.appendChild(el("span", "en", " " + en));
    return span;
  }

  function renderZones(r) {
    var gridNames = {};
    r.grids.forEach(function (g) { gridNames[g.grid] = g.name_zh + " " + g.name_en; });
    var rows = r.zones.map(function (z) {
      var tr = el("tr");
      tr.setAttribute("data-zone", z.zone);
      tr.appendChild(el("td")).appendChild(twoNames(z.name_zh, z.name_en));
      cell(tr, gridNames[z.grid] || z.grid, "grid-name");
      cell(tr, num(z.peak_occupancy), "r num peak");
      cell(tr, hm(z.peak_at), "num");
      var td = cell(tr, null, "share-col");
      var bar = el("div", "bar");
      var fillEl = el("div", "fill");
      var share = z.peak_share === null ? 0 : Math.min(z.peak_share, 1.2);
      fillEl.style.width = (share / 1.2 * 100).toFixed(1) + "%"; // the bar's end is 120% of capacity
      var lv = z.worst_level === null ? null : S.levels[z.worst_level];
      fillEl.style.background = lv ? lv.colour : "#757575";
      bar.appendChild(fillEl);
      bar.appendChild(el("div", "cap-mark")); // 100% of capacity
      td.appendChild(bar);
      td.appendChild(el("span", "share-text num", pct(z.peak_share)));
      var lvTd = cell(tr, null, "level-col");
      lvTd.appendChild(badge(z.worst_level));
      if (z.worst_level) lvTd.appendChild(el("span", "when", " " + hm(z.worst_level_at)));
      cell(tr, num(z.arrivals), "r num");
      return {
        tr: tr,
        values: { name: z.name_zh, grid: gridNames[z.grid] || z.grid, peak_occupancy: z.peak_occupancy, peak_at: z.peak_at,
                  peak_share: z.peak_share, worst_level: z.worst_level, arrivals: z.arrivals },
      };
    });
    fill("zones-table", rows, "无区域 No zones");
  }

  function renderGrids(r) {
    var rows = r.grids.filter(function (g) { return g.zones > 0 || (g.alerts && g.alerts.total); }).map(function (g) {
      var tr = el("tr");
      tr.setAttribute("data-grid", g.grid);
      tr.appendChild(el("td")).appendChild(twoNames(g.name_zh, g.name_en));
      var arr = cell(tr, num(g.arrivals), "r num");
      if (g.arrivals !== null && g.arrivals_zones < g.zones) {
        arr.title = g.arrivals_zones + "/" + g.zones + " 区域已知 zones known";
        arr.classList.add("incomplete");
      }
      cell(tr, num(g.peak_people), "r num");
      cell(tr, hm(g.peak_at), "num");
      cell(tr, g.alerts ? String(g.alerts.total) : "—", "r num");
      var values = { name: g.name_zh, arrivals: g.arrivals, peak_people: g.peak_people, peak_at: g.peak_at,
                     alerts_total: g.alerts ? g.alerts.total : null };
      ["IV", "III", "II", "I"].forEach(function (name) {
        var n = g.alerts ? g.alerts.by_level[name] : null;
        var td = cell(tr, n === null ? "—" : String(n), "r num lvl-count");
        td.setAttribute("data-level", name);
        if (n) { td.style.background = S.levels[name].colour; td.style.color = inkFor(S.levels[name].colour); }
        values["alerts_" + name] = n;
      });
      return { tr: tr, values: values };
    });
    fill("grids-table", rows, "无网格 No grids");
  }

  function responseRow(id, zh, en, f) {
    var tr = el("tr");
    tr.setAttribute("data-grid", id);
    tr.appendChild(el("td")).appendChild(twoNames(zh, en));
    cell(tr, String(f.alerts), "r num");
    cell(tr, String(f.acknowledged), "r num");
    cell(tr, dur(f.ack_median_s), "r num");
    cell(tr, dur(f.ack_p90_s), "r num");
    var w = cell(tr, pct(f.ack_within_target), "r num");
    if (f.ack_within_target !== null) w.classList.add(f.ack_within_target >= 0.9 ? "good" : f.ack_within_target >= 0.7 ? "fair" : "poor");
    var u = cell(tr, String(f.unacknowledged), "r num");
    if (f.unacknowledged_past_target) u.appendChild(el("span", "late", " (" + f.unacknowledged_past_target + " 超时 late)"));
    return tr;
  }

  function renderResponse(r) {
    var targets = r.ack_targets_s;
    $("targets").textContent = targets
      ? "确认目标 ack targets: " + ["I", "II", "III", "IV"].filter(function (n) { return n in targets; })
          .map(function (n) { return n + " " + dur(targets[n]); }).join(" · ")
      : "";
    var rows = r.grids.filter(function (g) { return g.response; }).map(function (g) {
      var f = g.response;
      return { tr: responseRow(g.grid, g.name_zh, g.name_en, f),
               values: { name: g.name_zh, alerts: f.alerts, acknowledged: f.acknowledged,
                         ack_median_s: f.ack_median_s, ack_p90_s: f.ack_p90_s,
                         ack_within_target: f.ack_within_target, unacknowledged: f.unacknowledged } };
    });
    fill("response-table", rows, r.headline.response ? "当日无预警 No alerts that day" : "无预警管理 No alert manager");
    var table = $("response-table");
    var foot = table.tFoot || table.createTFoot();
    foot.textContent = "";
    if (r.headline.response && rows.length) {
      foot.appendChild(responseRow("district", "全区 " + r.site_name_zh, "District", r.headline.response));
    }
  }

  function renderAlerts(r) {
    var rows = (r.alerts || []).map(function (a) {
      var tr = el("tr");
      tr.setAttribute("data-alert", a.id);
      cell(tr, hm(a.opened_at, r.date), "num");
      tr.appendChild(el("td")).appendChild(twoNames(a.zone_name_zh, a.zone_name_en));
      cell(tr, null).appendChild(badge(a.peak_level));
      cell(tr, a.cause);
      cell(tr, a.state);
      cell(tr, a.acknowledged_at ? hm(a.acknowledged_at, r.date) + " " + a.acknowledged_by : "—", "num");
      cell(tr, hm(a.resolved_at, r.date), "num");
      return { tr: tr, values: { opened_at: a.opened_at, zone: a.zone_name_zh, peak_level: a.peak_level,
                                 cause: a.cause, state: a.state, acknowledged_at: a.acknowledged_at,
                                 resolved_at: a.resolved_at } };
    });
    fill("alerts-table", rows, r.alerts ? "当日无预警 No alerts that day" : "无预警管理 No alert manager");
  }

  // ---- wiring ------------------------------------------------------------------------------------------

  function go(date) {
    if (!/^\d{4}-\d{2}-\d{2}$/.test(date)) return;
    window.history.replaceState(null, "", "?date=" + date);
    load(date);
  }

  $("report-date").addEventListener("change", function (ev) { go(ev.target.value); });
  $("prev-day").addEventListener("click", function () { if (S.report) go(shiftDay(S.report.date, -1)); });
  $("next-day").addEventListener("click", function () { if (S.report) go(shiftDay(S.report.date, 1)); });
  $("print").addEventListener("click", function () { window.print(); });
  $("report-signin").addEventListener("submit", function (ev) {
    ev.preventDefault(); // the page's CSP forbids form submission
    var t = $("report-token").value.trim();
    if (!t) return;
    try { sessionStorage.setItem(KEY, t); } catch (e) { /* private mode: the form again next time */ }
    $("report-token").value = "";
    $("report-signin").hidden = true;
    load(S.report ? S.report.date : dateFromUrl());
  });
  // The CSV needs the Authorization header too: fetched, then saved from a blob under the link's file name.
  $("csv-link").addEventListener("click", function (ev) {
    ev.preventDefault();
    var link = ev.currentTarget;
    fetch(link.href, { cache: "no-store", headers: authHeaders() }).then(function (res) {
      if (!res.ok) { setStatus("error", "下载失败 Download failed: HTTP " + res.status); return null; }
      return res.blob();
    }).then(function (blob) {
      if (!blob) return;
      var a = document.createElement("a");
      a.href = URL.createObjectURL(blob);
      a.download = link.getAttribute("download") || "crowdflow-report.csv";
      document.body.appendChild(a);
      a.click();
      setTimeout(function () { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
    }, function (e) { setStatus("error", "下载失败 Download failed: " + e); });
  });
  makeSortable("zones-table", renderZones);
  makeSortable("grids-table", renderGrids);
  makeSortable("response-table", renderResponse);
  makeSortable("alerts-table", renderAlerts);
  load(dateFromUrl());
})();
