// Airlock console: progressive enhancement only (every page works without
// it). Data from the server is attacker-influenced (image names, package
// names): this script only ever sets textContent, never HTML.
"use strict";

// Live updates (GET /ui/live, server-sent events): on a page that shows
// image states ([data-state-for]), each `event: state` sets the text and
// the state-<STATE> class of the elements of that image and says what
// happened in p#live. An `event: end` (session ended, server stopping)
// closes the stream for good.
(function () {
  if (!window.EventSource || !document.querySelector("[data-state-for]")) {
    return;
  }
  var live = document.getElementById("live");
  // States are a fixed set of lowercase words; anything else is not used
  // as a class name.
  var stateName = /^[a-z][a-z-]{0,39}$/;
  // States a person has to look at: announced even for an image not on
  // this page (a reload shows it).
  var waiting = { "awaiting-approval": true, rejected: true, failed: true };

  function say(text) {
    if (!live) {
      return;
    }
    live.textContent = text;
    live.hidden = false;
  }

  var es = new EventSource("/ui/live");
  es.addEventListener("state", function (ev) {
    var d;
    try {
      d = JSON.parse(ev.data);
    } catch (e) {
      return;
    }
    if (!d || typeof d.image !== "string" || typeof d.state !== "string" || !stateName.test(d.state)) {
      return;
    }
    var shown = 0;
    document.querySelectorAll("[data-state-for]").forEach(function (el) {
      if (el.getAttribute("data-state-for") !== d.image) {
        return;
      }
      el.textContent = d.state;
      Array.prototype.slice.call(el.classList).forEach(function (c) {
        if (c.indexOf("state-") === 0) {
          el.classList.remove(c);
        }
      });
      el.classList.add("state-" + d.state);
      shown++;
    });
    if (shown === 0 && !waiting[d.state]) {
      return;
    }
    var who = typeof d.actor === "string" && d.actor ? " by " + d.actor : "";
    var why = typeof d.reason === "string" && d.reason ? ": " + d.reason : "";
    var where = shown ? "" : " (reload to see it)";
    say(d.image + " is now " + d.state + who + why + where);
  });
  es.addEventListener("end", function (ev) {
    es.close();
    var why = "";
    try {
      why = JSON.parse(ev.data).reason || "";
    } catch (e) {
      why = "";
    }
    say("Live updates stopped" + (typeof why === "string" && why ? ": " + why : "."));
  });
})();
