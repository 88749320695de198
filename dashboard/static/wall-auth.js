// crowdflow wall: who is watching and who is acting. Two tokens, both only in sessionStorage and sent only in
// `Authorization: Bearer` (and as the push stream's first message), never in a URL:
// - the display token ("crowdflow.wall"): what the wall shows. A deployment gives its walls a read-only
//   "wall" token (every zone, no action); without one, the first person to sign in is the display too.
// - the acting token ("crowdflow.token", shared with the officer and report pages): who acknowledges.
// The sign-in form (#signin) appears when the wall has no token to show with, when an action needs a
// person, or when the server answers 401; a 403 shows the server's reason on the alert.
(function () {
  "use strict";
  var W = window.CF.wall, U = W.util;
  var KEY = "crowdflow.token";
  var WALL_KEY = "crowdflow.wall";
  var SHOW_WALL = "大屏需要令牌 Sign in to show the wall: the wall's read-only token, or your own";
  var pending = null; // {run, reject}: the action waiting for a sign-in (one at a time)
  var SIGN_IN_AGAIN = "未执行:请登录后重试 not done: sign in, then try again";

  function token() {
    try { return sessionStorage.getItem(KEY); } catch (e) { return null; }
  }

  function store(t) {
    try { if (t) sessionStorage.setItem(KEY, t); else sessionStorage.removeItem(KEY); } catch (e) { /* private mode */ }
  }

  function wallToken() {
    try { return sessionStorage.getItem(WALL_KEY); } catch (e) { return null; }
  }

  function storeWall(t) {
    try { if (t) sessionStorage.setItem(WALL_KEY, t); else sessionStorage.removeItem(WALL_KEY); } catch (e) { /* private mode */ }
  }

  // A wall link may carry its display token in the fragment (#wall=<token>, as `crowdflow demo` prints it):
  // browsers never send the fragment, so it reaches no server log; kept in the session, then cut from the URL.
  (function takeWallTokenFromFragment() {
    var m = /(?:^#|&)wall=([^&]+)/.exec(location.hash);
    if (!m) return;
    storeWall(decodeURIComponent(m[1]));
    try { history.replaceState(null, "", location.pathname + location.search); } catch (e) { /* old browser */ }
  })();

  // What the wall reads with: its display token, else the signed-in person's.
  function readToken() { return wallToken() || token(); }

  function readHeaders() {
    var t = readToken();
    return t ? { Authorization: "Bearer " + t } : {};
  }

  // The stream follows the read token: started when there is one, restarted when it changes.
  var streaming = null;
  function follow() {
    var t = readToken();
    if (t === streaming) return;
    streaming = t;
    if (!W.stream) return;
    W.stream.stop();
    if (t) W.stream.start();
    else showForm(SHOW_WALL);
  }

  // The service refused the token (4401): that token is no good any more; forget it and ask again. (Not for a
  // token the service could not judge just then, 1013: stream.js keeps it and tries again.)
  function refused(why) {
    if (wallToken() && wallToken() === streaming) storeWall(null);
    else { store(null); showWho(null); }
    streaming = null;
    if (readToken()) follow();
    else showForm("令牌无效 Token refused: " + (why || "sign in again"));
  }

  function detail(r) {
    return r.json().then(function (b) {
      var d = b && b.detail;
      if (Array.isArray(d)) d = d.map(function (x) { return x.msg || JSON.stringify(x); }).join("; ");
      return d ? String(d) : "HTTP " + r.status;
    }, function () { return "HTTP " + r.status; });
  }

  function me(t) {
    return fetch("/api/me", { headers: { Authorization: "Bearer " + t }, cache: "no-store" }).then(function (r) {
      if (r.ok) return r.json();
      return detail(r).then(function (d) { var e = new Error(d); e.status = r.status; throw e; });
    });
  }

  function showWho(p) {
    var who = U.$("whoami");
    U.setText(who, p ? (p.name || p.person) + " · " + p.role : "未登录 not signed in");
    who.title = p ? p.person + " (" + p.role + ")" + (p.zones ? ": " + p.zones.join(", ") : ": every zone") : "";
    who.classList.toggle("signed-in", !!p);
    U.$("signout").hidden = !p;
    U.$("signin-open").hidden = !!p;
  }

  function showForm(reason) {
    var f = U.$("signin");
    f.hidden = false;
    U.setText(U.$("signin-msg"), reason || "");
    U.$("signin-token").focus();
  }

  function hideForm() {
    U.$("signin").hidden = true;
    U.setText(U.$("signin-msg"), "");
  }

  function signIn(ev) {
    ev.preventDefault(); // the page's CSP forbids form submission; sign-in is a fetch
    var t = U.$("signin-token").value.trim();
    if (!t) { U.setText(U.$("signin-msg"), "请输入令牌 Enter your token"); return; }
    U.setText(U.$("signin-msg"), "…");
    me(t).then(function (p) {
      U.$("signin-token").value = "";
      hideForm();
      if (p.role === "wall") { // a display token: the wall shows with it; nobody is acting
        storeWall(t);
        follow();
        var waiting = pending;
        pending = null;
        if (waiting) waitForSignIn(waiting, "大屏令牌只读 the wall's token is read-only: sign in with your own");
        return;
      }
      store(t);
      showWho(p);
      follow();
      var job = pending;
      pending = null;
      if (job) job.run();
    }, function (e) {
      U.setText(U.$("signin-msg"), (e.status === 401 ? "令牌无效 Token refused: " : "") + e.message);
    });
  }

  function cancel() {
    hideForm();
    var job = pending;
    pending = null;
    if (job) job.reject(new Error("未登录 not signed in"));
  }

  function post(id, action, body) {
    return fetch("/api/alerts/" + encodeURIComponent(id) + "/" + action, {
      method: "POST",
      cache: "no-store",
      headers: { "Content-Type": "application/json", Authorization: "Bearer " + token() },
      body: JSON.stringify(body),
    });
  }

  // Only the newest action waits for the sign-in: an earlier one is told so (its row says to try again)
  // rather than left at "…" for good.
  function waitForSignIn(job, reason) {
    if (pending && pending.run !== job.run) pending.reject(new Error(SIGN_IN_AGAIN));
    pending = job;
    showForm(reason);
  }

  // Resolves with the updated alert; rejects with an Error whose message is the server's reason.
  function act(id, action, body) {
    return new Promise(function (resolve, reject) {
      var job = { run: run, reject: reject };
      function run() {
        if (!token()) {
          waitForSignIn(job, "登录后操作 Sign in to " + action);
          return;
        }
        post(id, action, body).then(function (r) {
          if (r.ok) return r.json().then(resolve);
          return detail(r).then(function (d) {
            if (r.status === 401) { // expired or revoked: sign in again, then the action runs
              store(null);
              showWho(null);
              waitForSignIn(job, d);
              return;
            }
            reject(new Error(d));
          });
        }).catch(function (e) { reject(new Error("网络错误 network error: " + e.message)); });
      }
      run();
    });
  }

  function init() {
    U.$("signin").addEventListener("submit", signIn);
    U.$("signin-cancel").addEventListener("click", cancel);
    U.$("signin-open").addEventListener("click", function () { showForm(""); });
    U.$("signout").addEventListener("click", function () { store(null); showWho(null); follow(); });
    var t = token();
    showWho(null);
    if (t) me(t).then(showWho, function (e) { if (e.status === 401) { store(null); follow(); } });
    if (!readToken()) showForm(SHOW_WALL);
  }

  W.auth = {
    init: init, act: act, token: token, readToken: readToken, readHeaders: readHeaders, follow: follow,
    refused: refused,
  };
})();
