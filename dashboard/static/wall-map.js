// crowdflow wall: the schematic map (svg#map) drawn from the site's zone polygons, and the side list of
// zones for those who cannot hover. Metres in a local frame, x east, y north: the SVG flips y.
(function () {
  "use strict";
  var W = window.CF.wall, U = W.util;
  var els = {}; // zone id -> {path, mark, q, label, name, pct, title, w, h}
  var rows = {}; // zone id -> side-list row
  var LABEL_PX = 17; // label size on screen, whatever the map's scale
  var LABEL_MIN_PX = 12; // a zone that cannot hold its name this big shows none (hover, side list)

  function bounds(zones) {
    var b = { x0: Infinity, y0: Infinity, x1: -Infinity, y1: -Infinity };
    zones.forEach(function (z) {
      z.polygon.forEach(function (p) {
        b.x0 = Math.min(b.x0, p[0]); b.x1 = Math.max(b.x1, p[0]);
        b.y0 = Math.min(b.y0, p[1]); b.y1 = Math.max(b.y1, p[1]);
      });
    });
    return b;
  }

  function pathOf(poly) {
    return poly.map(function (p, i) { return (i ? "L" : "M") + p[0] + "," + -p[1]; }).join("") + "Z";
  }

  function area(z) {
    var b = bounds([z]);
    return (b.x1 - b.x0) * (b.y1 - b.y0);
  }

  function build() {
    var S = W.S, map = U.$("map");
    var layer = U.$("map-zones");
    layer.textContent = "";
    els = {};
    var zones = S.site.zones.filter(function (z) { return z.polygon && z.polygon.length >= 3; });
    if (!zones.length) return;
    var b = bounds(zones), m = Math.max(b.x1 - b.x0, b.y1 - b.y0) * 0.02;
    map.setAttribute("viewBox", [b.x0 - m, -b.y1 - m, b.x1 - b.x0 + 2 * m, b.y1 - b.y0 + 2 * m].join(" "));
    // Largest first, so a small hotspot drawn over a big zone stays visible and clickable.
    zones.sort(function (a, c) { return area(c) - area(a); });
    var labels = U.svg("g", { "class": "map-labels" });
    var badges = U.svg("g", { "class": "map-badges" });
    zones.forEach(function (z) {
      var zb = bounds([z]);
      var g = U.svg("g", { "class": "zone" });
      var path = U.svg("path", { d: pathOf(z.polygon), "data-zone": z.id, "data-level": "0", fill: U.NO_DATA, tabindex: "0" });
      var title = U.svg("title");
      path.appendChild(title);
      var mark = U.svg("path", { d: pathOf(z.polygon), "class": "unhealthy-mark", fill: "url(#hatch)" });
      g.appendChild(path);
      g.appendChild(mark);
      layer.appendChild(g);
      var cx = (zb.x0 + zb.x1) / 2, cy = -(zb.y0 + zb.y1) / 2;
      var label = U.svg("text", { "class": "zone-label", x: cx, y: cy, "data-for": z.id });
      var name = U.svg("tspan", { x: cx, dy: "-0.1em" });
      name.textContent = z.name_zh;
      var pctLine = U.svg("tspan", { x: cx, dy: "1.15em", "class": "zone-label-pct" });
      label.appendChild(name);
      label.appendChild(pctLine);
      labels.appendChild(label);
      var q = U.svg("text", { "class": "unknown-badge", x: cx, y: cy });
      q.textContent = "?";
      badges.appendChild(q);
      els[z.id] = { path: path, mark: mark, q: q, title: title, label: label, name: name, pct: pctLine,
        w: zb.x1 - zb.x0, h: zb.y1 - zb.y0, zone: z };
      path.addEventListener("click", function () { W.detail.open(z.id); });
      path.addEventListener("keydown", function (ev) { if (ev.key === "Enter") W.detail.open(z.id); });
    });
    layer.appendChild(labels); // above every zone
    layer.appendChild(badges);
    buildList();
    Object.keys(els).forEach(function (id) { update(S.zones[id]); });
    layout();
  }

  // Labels are sized in screen pixels: shown only on zones big enough to hold them at this scale.
  function layout() {
    var map = U.$("map");
    if (!map || !map.viewBox || !map.viewBox.baseVal) return;
    var vb = map.viewBox.baseVal, w = map.clientWidth, h = map.clientHeight;
    if (!vb.width || !w || !h) return;
    var scale = Math.min(w / vb.width, h / vb.height); // px per metre (preserveAspectRatio meet)
    // Sizes in metres (the SVG's units) for a size in pixels; set through the CSSOM (the CSP allows no inline
    // <style>). A label shrinks to fit its zone, down to LABEL_MIN_PX; below that it is left out.
    var layer = U.$("map-zones");
    U.setStyle(layer.querySelector(".map-badges"), "font-size", (LABEL_PX * 1.4 / scale).toFixed(1) + "px");
    Object.keys(els).forEach(function (id) {
      var e = els[id], wpx = e.w * scale, hpx = e.h * scale;
      var px = Math.min(LABEL_PX, (wpx - 8) / Math.max(e.zone.name_zh.length, 4), hpx / 2.6);
      var fits = px >= LABEL_MIN_PX;
      e.label.classList.toggle("hidden", !fits);
      if (fits) U.setStyle(e.label, "font-size", (px / scale).toFixed(1) + "px");
    });
  }

  function tooltip(z, site) {
    var name = site.name_zh + " " + site.name_en;
    if (!z || z.occupancy === null) return name + "\n无数据 no data · capacity " + U.people(site.capacity);
    return name + "\n" + U.people(z.occupancy) + " / " + U.people(z.capacity) + " (" + U.pct(z.share) + ") · " +
      W.zoneLabel(z) + (z.forecast ? "\n" + z.forecast : "");
  }

  function update(z) {
    if (!z) return;
    var e = els[z.id];
    if (e) {
      // Blind is not calm, nor is it a level: a zone whose sensors are unhealthy is grey and hatched on the
      // map, whatever its last estimate says (the level stays in data-level, the hover text and the list).
      var unhealthy = z.healthy === false;
      var fill = unhealthy ? U.NO_DATA : z.colour;
      U.setAttr(e.path, "fill", fill);
      U.setAttr(e.path, "data-level", z.level);
      e.path.classList.toggle("unhealthy", unhealthy);
      e.path.classList.toggle("alarm", z.level >= 3);
      e.mark.classList.toggle("on", unhealthy);
      e.q.classList.toggle("on", unhealthy);
      U.setText(e.title, tooltip(z, e.zone));
      U.setText(e.pct, z.occupancy === null ? "—" : U.pct(z.share));
      U.setAttr(e.label, "fill", U.inkFor(fill));
    }
    updateRow(z);
  }

  // ---- side list: every zone not in the riverside strip, worst first (CSS order, no re-layout) ----

  function buildList() {
    var S = W.S, list = U.$("zone-list");
    list.textContent = "";
    rows = {};
    var river = {};
    S.site.riverside.forEach(function (id) { river[id] = true; });
    S.site.zones.forEach(function (z) {
      if (river[z.id]) return;
      var li = U.el("li", "zrow");
      li.dataset.zone = z.id;
      var sw = U.el("span", "zrow-level", "");
      var name = U.el("span", "zrow-name", z.name_zh);
      name.title = z.name_en;
      var pct = U.el("span", "zrow-pct num", "—");
      var occ = U.el("span", "zrow-occ num", "— / " + U.people(z.capacity));
      [sw, name, pct, occ].forEach(function (c) { li.appendChild(c); });
      li.addEventListener("click", function () { W.detail.open(z.id); });
      list.appendChild(li);
      rows[z.id] = { li: li, sw: sw, pct: pct, occ: occ };
    });
  }

  function updateRow(z) {
    var r = rows[z.id];
    if (!r) return;
    var nodata = z.occupancy === null;
    U.setAttr(r.li, "data-level", z.level);
    r.li.classList.toggle("unhealthy", z.healthy === false);
    U.paintBadge(r.sw, z.colour);
    U.setText(r.sw, z.healthy === false && z.level === 0 ? "?" : z.level === 0 ? "正常" : (W.S.levels[z.level] || {}).name || "");
    U.setText(r.pct, nodata ? "—" : U.pct(z.share));
    U.setStyle(r.pct, "color", !nodata && z.level >= 1 ? z.colour : "");
    U.setText(r.occ, U.people(z.occupancy) + " / " + U.people(z.capacity));
    // Worst level first, then fullest; unknown zones right after the alarming ones.
    var full = 1999 - Math.min(1999, Math.round((z.share || 0) * 1000));
    var rank = (4 - z.level) * 2000 + full;
    if (nodata || z.healthy === false) rank = z.level >= 3 ? rank : 4000;
    else if (z.level < 3) rank += 1;
    U.setStyle(r.li, "order", String(rank));
  }

  function select(id) {
    Object.keys(els).forEach(function (k) { els[k].path.classList.toggle("selected", k === id); });
  }

  W.map = { build: build, update: update, layout: layout, select: select };
})();
