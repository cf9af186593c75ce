// The answer page's live updates: short polls of /a/<token>/live while the answer is being written.
// Every fragment it puts on the page was rendered and sanitized by the server (bot/format/html.py);
// the script only swaps them in. Without it, the page reloads itself (<noscript> refresh).
(function () {
  "use strict";
  var page = document.getElementById("page");
  if (!page || !window.fetch) {
    return;
  }
  var FAST = 1000;
  var SLOW = 4000;
  var GIVE_UP = 20 * 60 * 1000; // an answer is written in minutes: a page left open stops polling
  var url = page.getAttribute("data-live");
  var version = page.getAttribute("data-version") || "0";
  var started = Date.now();
  var delay = FAST;
  var shown = {};

  function byId(id) {
    return document.getElementById(id);
  }

  function fill(id, html) {
    if (shown[id] !== html) {
      shown[id] = html;
      byId(id).innerHTML = html;
    }
  }

  function nearBottom() {
    var doc = document.documentElement;
    return window.innerHeight + window.pageYOffset >= doc.scrollHeight - 80;
  }

  function notice(text) {
    var status = byId("status");
    status.textContent = text;
    status.className = "status status-stale";
  }

  function apply(data) {
    var follow = nearBottom();
    version = String(data.v);
    page.setAttribute("data-state", data.state);
    page.setAttribute("data-version", version);
    var status = byId("status");
    status.textContent = data.status;
    status.className = "status status-" + data.state;
    fill("answer", data.answer);
    if (data.reasoning) {
      byId("reasoning").hidden = false;
      fill("reasoning-body", data.reasoning);
    }
    if (data.sources) {
      byId("sources").hidden = false;
      fill("sources-body", data.sources);
    }
    var error = byId("error");
    error.hidden = !data.error;
    error.textContent = data.error || "";
    if (follow && data.state === "writing") {
      window.scrollTo(0, document.documentElement.scrollHeight);
    }
  }

  function schedule(ms) {
    window.setTimeout(poll, ms);
  }

  function poll() {
    if (Date.now() - started > GIVE_UP) {
      notice(page.getAttribute("data-stale"));
      return;
    }
    if (document.hidden) {
      schedule(SLOW);
      return;
    }
    var options = { cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer" };
    window
      .fetch(url + "?v=" + encodeURIComponent(version), options)
      .then(function (response) {
        if (response.status === 404) {
          notice(page.getAttribute("data-expired"));
          return { stop: true };
        }
        if (response.status === 204) {
          return null;
        }
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.json();
      })
      .then(function (data) {
        if (data && data.stop) {
          return;
        }
        if (data) {
          apply(data);
          delay = FAST;
          if (data.done) {
            return;
          }
        } else {
          delay = Math.min(delay * 1.5, SLOW);
        }
        schedule(delay);
      })
      .catch(function () {
        delay = SLOW;
        schedule(delay);
      });
  }

  var state = page.getAttribute("data-state");
  if (state !== "done" && state !== "failed") {
    schedule(FAST);
  }
})();
