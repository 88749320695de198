// crowdflow wall: the riverside strip (#strip), one bar per segment in site.riverside order: occupancy
// against capacity (the bar's top), coloured by level, the II and I threshold lines, and the forecast time to
// the next level (.eta).
(function () {
  "use strict";
  var W = window.CF.wall, U = W.util;
  var segs = {}; // zone id -> elements
  var FULL_SCALE = 1; // the bar's top is the capacity; an overfull segment says how far over in its figure

  function thresholdShare(zone, level) {
    var t = zone.thresholds || [];
    for (var i = 0; i < t.length; i++) if (t[i].level === level) return t[i].share;
    return null;
  }

  function build() {
    var S = W.S, strip = U.$("strip");
    strip.textContent = "";
    segs = {};
    S.site.riverside.forEach(function (id) {
      var zone = W.siteZone(id);
      var seg = U.el("div", "seg");
      seg.dataset.zone = id;
      seg.dataset.level = "0";
      var bar = U.el("div", "seg-bar");
      var fill = U.el("div", "seg-fill");
      bar.appendChild(fill);
      [3, 4].forEach(function (lv) { // II orange and I red: where admissions stop and where it is critical
        var share = thresholdShare(zone, lv);
        if (share === null || !S.levels[lv]) return;
        var line = U.el("div", "seg-line l" + lv);
        line.style.bottom = (Math.min(share / FULL_SCALE, 1) * 100).toFixed(1) + "%";
        line.style.borderTopColor = S.levels[lv].colour;
        line.title = S.levels[lv].label + " from " + Math.round(share * 100) + "%";
        bar.appendChild(line);
      });
      var p = U.el("div", "seg-pct num", "—");
      var lvl = U.el("div", "seg-level", "");
      bar.appendChild(p);
      bar.appendChild(lvl);
      seg.appendChild(bar);
      var eta = U.el("div", "eta", "");
      seg.appendChild(eta);
      var caption = U.el("div", "seg-caption");
      caption.appendChild(U.el("div", "seg-name", zone.name_zh));
      var occ = U.el("div", "seg-occ num", "");
      caption.appendChild(occ);
      seg.appendChild(caption);
      seg.title = zone.name_zh + " " + zone.name_en;
      seg.addEventListener("click", function () { W.detail.open(id); });
      strip.appendChild(seg);
      segs[id] = { seg: seg, bar: bar, fill: fill, pct: p, level: lvl, occ: occ, eta: eta, zone: zone };
      update(S.zones[id]);
    });
    U.$("riverside").hidden = S.site.riverside.length === 0;
  }

  function update(z) {
    var e = z && segs[z.id];
    if (!e) return;
    var share = z.share === null ? 0 : Math.max(0, Math.min(z.share / FULL_SCALE, 1));
    U.setAttr(e.seg, "data-level", z.level);
    e.seg.classList.toggle("unhealthy", z.healthy === false);
    U.setStyle(e.fill, "height", (share * 100).toFixed(1) + "%");
    U.setStyle(e.fill, "background", z.colour);
    U.setStyle(e.bar, "border-color", z.level >= 2 ? z.colour : "");
    U.setText(e.pct, U.pct(z.share));
    U.setText(e.level, W.zoneLabel(z));
    U.paintBadge(e.level, z.colour);
    U.setText(e.occ, U.people(z.occupancy) + " / " + U.people(z.capacity));
    var f = U.shortForecast(z.forecast);
    U.setText(e.eta, f.text);
    e.eta.title = z.forecast || "";
    U.setStyle(e.eta, "color", f.level !== null && W.S.levels[f.level] ? W.S.levels[f.level].colour : "");
  }

  W.strip = { build: build, update: update, thresholdShare: thresholdShare };
})();
