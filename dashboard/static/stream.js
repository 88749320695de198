// crowdflow push-stream client, shared by the wall (app.js) and the officer page (officer.js): one WebSocket
// to the push stream, the token as its first message (never in the URL: URLs end up in logs), a snapshot then
// deltas in seq order, resumed after a drop (/ws?epoch=..&seq=..). Where the stream is, the service says at
// GET /api/stream: its push process's port on this host name (the default), a path on this origin (behind a
// reverse proxy), or a full URL; without an answer, this origin's /ws. Where the service points never opens
// (a proxy that does not route the push port, a push process down; a connection not open after OPEN_WAIT_MS
// is given up, as one waiting on the port the service holds between two push processes): after FALLBACK_AFTER
// such tries in a row, this origin's /ws (the service's own stream), alternating with the place named,
// FALLBACK_AFTER tries each. It owns the socket, the resume point, the reconnect backoff (with jitter), the
// one-resync-at-a-time guard, the data time and the counters; the page is handed only what it should apply.
// Plain JS, no build step.
//
//   var stream = CF.openStream({
//     onSnapshot: function (msg) {}, // the page's state is replaced by this one (seq, epoch, dataTs already set)
//     onDelta: function (msg) {},    // the next delta in order: repeats and deltas after a gap never get here
//     onPing: function (msg) {},     // the stream is idle (dataAt already moved by its last_data_age_s)
//     onState: function (state, why) {},  // "connecting", "open", "closed" (by the other end), "dead" (silent for
//                                    // deadMs: dropped), "stuck" (resync unanswered: dropped, no resume next),
//                                    // "unauthorized" (the service refused the token, 4401: `why` says why; no
//                                    // reconnect until start() is called again, e.g. after a new sign-in);
//                                    // a token not judged now (1013 Try Again Later: the address must wait,
//                                    // the service was busy) is "closed" with `why`: kept, retried with backoff
//     token: function () {},         // the bearer token to send first (null: no connection is made)
//     canConnect: function () {},    // optional: false, and no connection is made (nor a reconnect scheduled)
//     deadMs: 40000,                 // optional: no message at all (pings included) for this long: start over
//   });
//   stream.start();  // connect now (if not connected); stream.stop(): close, no reconnect (resume point kept)
//
// Its state, to read: epoch, seq (-1: no snapshot yet), connected, everConnected, lastMsgAt, resyncSince,
// dataTs (the newest data time, epoch s, or null), dataAt (page time when the service last got new data) and
// stats {snapshots, deltas, resyncs, connects}.
(function () {
  "use strict";
  var CF = (window.CF = window.CF || {});

  var RESYNC_WAIT_MS = 10000; // a resync unanswered this long: reconnect (without resuming) for a snapshot
  var BACKOFF_MIN_MS = 500;
  var BACKOFF_MAX_MS = 15000;
  var DEAD_MS = 40000; // not even a ping (every 15 s when idle): the socket is dead
  var CHECK_MS = 1000;
  var UNAUTHORIZED = 4401; // the service's close code for a missing, unknown or late token
  var TRY_AGAIN_LATER = 1013; // the token was not judged now: keep it, try again after a while
  var LATER_MIN_MS = 2000; // the first retry after a 1013 (an address held back waits seconds anyway)
  var FALLBACK_AFTER = 3; // connections in a row that never opened before trying this origin's /ws
  var OPEN_WAIT_MS = 10000; // a connection not open by then never will be soon (a port held with nobody serving)

  function nothing() {}

  CF.openStream = function (opts) {
    var on = {
      snapshot: opts.onSnapshot || nothing, delta: opts.onDelta || nothing, ping: opts.onPing || nothing,
      state: opts.onState || nothing,
    };
    var tokenOf = opts.token || function () { return null; };
    var refusedToken = null; // the token the service refused: not sent again until it changes
    var canConnect = function () {
      var t = tokenOf();
      return !!t && t !== refusedToken && (!opts.canConnect || opts.canConnect());
    };
    var deadMs = opts.deadMs || DEAD_MS;
    var reconnectTimer = null;
    var where = null; // GET /api/stream's answer: {url, port}; null: this origin's /ws
    var located = false, locating = false;
    var wanted = false; // start() until stop(): a lookup finishing after stop() does not connect

    var s = {
      ws: null, epoch: null, seq: -1, connected: false, everConnected: false, lastMsgAt: 0,
      resyncSince: 0, // page time of the resync still waiting for its snapshot (0: none): one at a time
      backoff: BACKOFF_MIN_MS,
      // dataTs: the newest data (event) time; dataAt: the page's time when the service last got new data, from
      // its own last_data_age_s (snapshot, ping) or a delta whose data time moved on.
      dataTs: null, dataAt: 0,
      stats: { snapshots: 0, deltas: 0, resyncs: 0, connects: 0 },
      start: start, stop: stop,
    };

    var unopened = 0; // connections in a row that never opened

    function streamBase() {
      var proto = location.protocol === "https:" ? "wss:" : "ws:";
      if (Math.floor(unopened / FALLBACK_AFTER) % 2 === 1) return proto + "//" + location.host + "/ws";
      var u = where && typeof where.url === "string" ? where.url : null;
      if (u && /^wss?:\/\//.test(u)) return u;
      if (where && typeof where.port === "number") return proto + "//" + location.hostname + ":" + where.port + "/ws";
      return proto + "//" + location.host + (u && u.charAt(0) === "/" ? u : "/ws");
    }

    // The resume point belongs to the token whose snapshot it follows: another token (an officer's page signed
    // in as the operator) sees other zones, so it starts from a snapshot of its own, never from the other's seq.
    var resumeToken = null;

    function url() {
      var resume = s.epoch !== null && s.seq >= 0 && resumeToken === tokenOf()
        ? "?epoch=" + encodeURIComponent(s.epoch) + "&seq=" + s.seq : "";
      return streamBase() + resume;
    }

    // Asked once per page, and again after a connection that never opened (the service may have moved it).
    function locate(then) {
      locating = true;
      var done = function (body) {
        where = body && typeof body === "object" ? body : null;
        located = true;
        locating = false;
        then();
      };
      try {
        fetch("/api/stream", { cache: "no-store", credentials: "omit" })
          .then(function (r) { return r.ok ? r.json() : null; })
          .then(done, function () { done(null); });
      } catch (e) { done(null); }
    }

    function connect() {
      reconnectTimer = null;
      if (!wanted || !canConnect() || locating || s.ws) return;
      if (!located) { locate(connect); return; }
      var ws, opened = false;
      s.stats.connects++;
      try { ws = new WebSocket(url()); } catch (e) { scheduleReconnect(); return; }
      s.ws = ws;
      s.resyncSince = 0;
      setTimeout(function () { // given up: onclose counts it as never opened
        if (ws === s.ws && !opened) { try { ws.close(); } catch (e) { /* closing */ } }
      }, OPEN_WAIT_MS);
      ws.onopen = function () {
        if (ws !== s.ws) return;
        opened = true;
        unopened = 0;
        try { ws.send(JSON.stringify({ type: "auth", token: tokenOf() })); } catch (e) { /* closing already */ }
        s.connected = true;
        s.everConnected = true;
        s.lastMsgAt = Date.now(); // an open socket is not data: the page's own staleness waits for messages
        s.resyncSince = 0;
        on.state("open");
      };
      ws.onmessage = function (ev) {
        if (ws !== s.ws) return;
        var msg;
        try { msg = JSON.parse(ev.data); } catch (e) { return; }
        s.lastMsgAt = Date.now();
        handle(msg);
      };
      ws.onclose = function (ev) {
        if (ws !== s.ws) return;
        s.ws = null;
        s.connected = false;
        if (!opened) { // never reached: ask where the stream is before the next try
          located = false;
          unopened++;
        }
        if (ev && ev.code === UNAUTHORIZED) { // a wrong or revoked token: retrying it would only be refused again
          refusedToken = tokenOf();
          on.state("unauthorized", ev.reason || "token refused");
          return;
        }
        if (ev && ev.code === TRY_AGAIN_LATER) s.backoff = Math.max(s.backoff, LATER_MIN_MS); // not refused
        on.state("closed", ev && ev.reason ? ev.reason : undefined);
        scheduleReconnect();
      };
      ws.onerror = function () { try { ws.close(); } catch (e) { /* already closing */ } };
      on.state("connecting");
    }

    function scheduleReconnect() {
      if (reconnectTimer || !canConnect()) return;
      var delay = s.backoff * (0.75 + Math.random() * 0.5); // jitter: pages do not reconnect in lockstep
      s.backoff = Math.min(s.backoff * 2, BACKOFF_MAX_MS);
      reconnectTimer = setTimeout(connect, delay);
    }

    function close() {
      var ws = s.ws;
      s.ws = null;
      s.connected = false;
      if (ws) { try { ws.close(); } catch (e) { /* closing */ } }
    }

    function drop(state) {
      close();
      on.state(state);
      scheduleReconnect();
    }

    function start() {
      wanted = true;
      if (s.ws || locating) return;
      clearTimeout(reconnectTimer);
      connect();
    }

    function stop() {
      wanted = false;
      close();
      clearTimeout(reconnectTimer);
      reconnectTimer = null;
    }

    // One resync at a time: the deltas that follow a gap are dropped until the snapshot comes (or, after
    // RESYNC_WAIT_MS without one, the page reconnects without resuming, which always starts with a snapshot).
    function resync() {
      if (s.resyncSince) return;
      s.resyncSince = Date.now();
      s.stats.resyncs++;
      if (s.ws && s.ws.readyState === 1) s.ws.send(JSON.stringify({ type: "resync" }));
    }

    // The service says how long ago it last got sensor data: a page opened (or reconnected) on a stream that
    // stopped minutes ago is stale at once, with that age, rather than "live" until its own timers run out.
    function seedDataAge(age) {
      if (typeof age === "number" && isFinite(age) && age >= 0) s.dataAt = Date.now() - age * 1000;
    }

    function handle(msg) {
      if (msg.type === "snapshot") {
        s.backoff = BACKOFF_MIN_MS; // a good connection resets the backoff
        s.resyncSince = 0;
        s.stats.snapshots++;
        s.seq = msg.seq;
        s.epoch = msg.epoch === undefined ? null : msg.epoch;
        resumeToken = tokenOf();
        // The service's state as of now; a new service run may have no data yet, or an earlier replay's.
        s.dataTs = typeof msg.ts === "number" ? msg.ts : null;
        s.dataAt = Date.now();
        seedDataAge(msg.last_data_age_s);
        on.snapshot(msg);
      } else if (msg.type === "delta") {
        if (s.seq < 0 || s.resyncSince) { resync(); return; } // nothing to apply it to: wait for a snapshot
        if (msg.seq <= s.seq) return; // already applied (a resumed stream may repeat the edge)
        if (msg.seq !== s.seq + 1) { resync(); return; } // a gap: our picture is incomplete
        s.backoff = BACKOFF_MIN_MS;
        s.stats.deltas++;
        s.seq = msg.seq;
        if (typeof msg.ts === "number" && (s.dataTs === null || msg.ts > s.dataTs)) {
          s.dataTs = msg.ts;
          s.dataAt = Date.now();
        }
        on.delta(msg);
      } else if (msg.type === "ping") {
        seedDataAge(msg.last_data_age_s); // sent when no delta came for a while: how old the service's data is
        on.ping(msg);
      }
    }

    setInterval(function () {
      var now = Date.now();
      if (s.connected && now - s.lastMsgAt > deadMs) { drop("dead"); return; } // a silent socket is a dead one
      if (s.ws && s.resyncSince && now - s.resyncSince > RESYNC_WAIT_MS) {
        s.epoch = null; // no resume: the fresh connection starts with a snapshot
        s.resyncSince = 0;
        drop("stuck");
      }
    }, CHECK_MS);

    return s;
  };
})();
