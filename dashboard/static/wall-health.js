// crowdflow wall: the sensor health panel (#health). Zones whose sensors are unhealthy, with what is wrong
// (zone view "sensor_issues"), and the service's own health from /healthz every 10 s: the MQTT broker,
// readings rejected at ingest (by reason) and inputs the dashboard could not show.
(function () {
  "use strict";
  var W = window.CF.wall, U = W.util;
  var POLL_MS = 10000;
  var rows = {}; // zone id -> {li, text}

  function issuesText(z) {
    var s = z.sensor_issues || {};
    var parts = Object.keys(s).sort().map(function (k) { return k + ": " + s[k]; });
    if (parts.length) return parts.join(" · ");
    return z.occupancy === null ? "无数据 no data yet" : "传感器异常 sensor fault";
  }

  function reset() {
    U.$("health-zones").textContent = "";
    rows = {};
  }

  function update(z) {
    if (!z) return;
    var r = rows[z.id];
    if (z.healthy !== false) {
      if (r) { r.li.remove(); delete rows[z.id]; count(); }
      return;
    }
    if (!r) {
      var li = U.el("li", "hz");
      li.dataset.zone = z.id;
      var site = W.siteZone(z.id);
      li.appendChild(U.el("span", "hz-name", site.name_zh));
      var text = U.el("span", "hz-text", "");
      li.appendChild(text);
      li.addEventListener("click", function () { W.detail.open(z.id); });
      U.$("health-zones").appendChild(li);
      r = rows[z.id] = { li: li, text: text };
      count();
    }
    U.setText(r.text, issuesText(z));
  }

  function count() {
    var n = Object.keys(rows).length;
    U.setText(U.$("health-count"), n ? n + " 区域异常 zones unhealthy" : "全部正常 all zones reporting");
    U.$("health-count").classList.toggle("bad", n > 0);
  }

  function sum(obj) {
    return Object.keys(obj || {}).reduce(function (t, k) { return t + (typeof obj[k] === "number" ? obj[k] : 0); }, 0);
  }

  function top(obj, n) {
    return Object.keys(obj || {}).sort(function (a, b) { return obj[b] - obj[a]; }).slice(0, n)
      .map(function (k) { return k + " " + obj[k]; }).join(", ");
  }

  function renderService(h) {
    var broker = h.broker === null || h.broker === undefined ? "—" : String(h.broker);
    var b = U.$("health-broker");
    U.setText(b, "MQTT " + broker);
    b.classList.toggle("bad", broker !== "connected" && broker !== "true");
    var ingest = (h.pipeline && h.pipeline.ingest) || {};
    var rej = ingest.rejected || {};
    var total = typeof ingest.rejected_total === "number" ? ingest.rejected_total : sum(rej);
    var ing = U.$("health-ingest");
    U.setText(ing, "拒收 rejected " + U.people(total) + (total ? " (" + top(rej, 3) + ")" : "") +
      (typeof ingest.received === "number" ? " of " + U.people(ingest.received) : ""));
    ing.classList.toggle("bad", total > 0);
    var hubRej = sum(h.rejected);
    var st = U.$("health-status");
    var reasons = (h.reasons || []).join(", ");
    U.setText(st, (h.status === "ok" ? "服务正常 service ok" : "服务降级 degraded" + (reasons ? ": " + reasons : "")) +
      (hubRej ? " · wall rejected " + hubRej : ""));
    st.classList.toggle("bad", h.status !== "ok");
  }

  function poll() {
    fetch("/healthz", { cache: "no-store" })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(renderService)
      .catch(function (e) {
        var st = U.$("health-status");
        U.setText(st, "健康检查失败 /healthz failed: " + e.message);
        st.classList.add("bad");
      });
  }

  function init() {
    count();
    poll();
    setInterval(poll, POLL_MS);
  }

  W.health = { init: init, reset: reset, update: update };
})();
