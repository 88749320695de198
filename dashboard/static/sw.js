// crowdflow service worker: shows a Web Push notification (title and body from the service's payload,
// alerts/notify/render.py push_payload) and opens the officer page on the alert when it is tapped.
// It caches nothing: the page must always show the live state, never a stale copy.
"use strict";

self.addEventListener("install", function () { self.skipWaiting(); });
self.addEventListener("activate", function (event) { event.waitUntil(self.clients.claim()); });

function officerUrl(data) {
  var id = data && Array.isArray(data.alert_ids) && data.alert_ids.length ? String(data.alert_ids[0]) : "";
  // Always this service's own page, whatever address the payload names: a tap never leaves for another site.
  return new URL("/officer" + (/^[\w-]+$/.test(id) ? "#alert=" + id : ""), self.location.origin).href;
}

self.addEventListener("push", function (event) {
  var data = {};
  if (event.data) {
    try { data = event.data.json(); } catch (e) { data = { body: event.data.text() }; }
  }
  var level = typeof data.level === "number" ? data.level : 0;
  var options = {
    body: data.body || "",
    tag: data.key || data.id || "crowdflow", // a newer message about the same alert replaces the older one
    renotify: true,
    requireInteraction: level >= 3, // II orange and I red stay until the officer looks
    vibrate: [300, 120, 300, 120, 300],
    data: { url: officerUrl(data) },
  };
  event.waitUntil(self.registration.showNotification(data.title || "crowdflow 预警 alert", options));
});

self.addEventListener("notificationclick", function (event) {
  event.notification.close();
  var url = (event.notification.data && event.notification.data.url) || new URL("/officer", self.location.origin).href;
  event.waitUntil(
    self.clients.matchAll({ type: "window", includeUncontrolled: true }).then(function (list) {
      for (var i = 0; i < list.length; i++) {
        var c = list[i];
        if (new URL(c.url).pathname === "/officer" && "focus" in c) {
          return (c.navigate ? c.navigate(url) : Promise.resolve(c)).then(function (w) { return (w || c).focus(); });
        }
      }
      return self.clients.openWindow(url);
    })
  );
});
