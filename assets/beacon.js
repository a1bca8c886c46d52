// Tollgate beacon, served at /v1/beacon.js. API: tollgate('init', {site, endpoint}); tollgate('track', type,
// fields). Calls made before it loads wait in tollgate.q (the snippet's stub). Events that happen together go
// as one batch, split to stay under the 64 KiB keepalive quota and the gateway's 100 events per request; a
// batch leaves on the next tick and on visibilitychange / pagehide. It is sent as text/plain with
// navigator.sendBeacon (no preflight, no cookies), else fetch keepalive without credentials, else the pixel.
// With Global Privacy Control on, events carry consent: false and the gateway applies the strict profile.
// Lines are stripped of indentation and of these comments when served.
(function (w, n) {
  var q = (w.tollgate && w.tollgate.q) || [], c = {}, b = [], t = 0;
  function id() {
    var k = w.crypto, s = "", i = 0;
    if (k && k.randomUUID) return k.randomUUID();
    for (; i < 32; i++) s += ((Math.random() * 16) | 0).toString(16);
    return s;
  }
  function size(s) {
    return unescape(encodeURIComponent(s)).length;
  }
  function send(a) {
    var d = JSON.stringify({ events: a }), u = c.endpoint;
    if (n.sendBeacon && n.sendBeacon(u, d)) return;
    if (w.fetch) {
      try {
        fetch(u, { method: "POST", body: d, keepalive: !0, credentials: "omit", headers: { "content-type": "text/plain" } });
        return;
      } catch (e) {}
    }
    new Image().src = u.replace(/events$/, "p.gif") + "?d=" +
      btoa(unescape(encodeURIComponent(d))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function flush() {
    clearTimeout(t);
    t = 0;
    for (var a = [], s = 12, e, l; b.length; ) {
      e = b.shift();
      l = size(JSON.stringify(e)) + 1;
      if (a.length && (s + l > 6e4 || a.length > 99)) {
        send(a);
        a = [];
        s = 12;
      }
      a.push(e);
      s += l;
    }
    a.length && send(a);
  }
  function api(m, x, f) {
    if (m == "init") c = x;
    if (m == "track" && c.site) {
      var e = { site: c.site, type: x, event_id: id(), ts: Date.now(), page_url: location.href }, k;
      for (k in f) e[k] = f[k];
      if (n.globalPrivacyControl) e.consent = !1;
      b.push(e);
      t = t || setTimeout(flush, 0);
    }
  }
  while (q.length) api.apply(0, q.shift());
  w.tollgate = function () {
    api.apply(0, arguments);
  };
  addEventListener("visibilitychange", function () {
    document.visibilityState == "hidden" && flush();
  });
  addEventListener("pagehide", flush);
})(window, navigator);
