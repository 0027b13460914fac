// digest preview: live reload over server-sent events, frame width and colour scheme, detail tabs.
(function () {
  "use strict";

  var STORE = "digest-preview:";
  function remember(key, value) { try { localStorage.setItem(STORE + key, value); } catch (e) { /* private mode */ } }
  function recall(key, fallback) { try { return localStorage.getItem(STORE + key) || fallback; } catch (e) { return fallback; } }

  // -- live reload: the server's version changes on any template or config.toml edit ------------
  function liveReload() {
    var live = document.getElementById("live");
    var pageVersion = document.body.getAttribute("data-version");
    if (!window.EventSource) { if (live) live.setAttribute("data-state", "off"); return; }
    var source = new EventSource("/events");
    source.addEventListener("version", function (event) {
      if (live) live.setAttribute("data-state", "on");
      if (event.data !== pageVersion) {
        if (live) live.setAttribute("data-state", "reloading");
        source.close();
        window.location.reload();
      }
    });
    source.onerror = function () { if (live) live.setAttribute("data-state", "off"); };
    window.addEventListener("beforeunload", function () { source.close(); });
  }

  // -- the email frame --------------------------------------------------------------------------
  function fitFrame(frame) {
    try {
      var doc = frame.contentDocument;
      if (!doc || !doc.documentElement) return;
      frame.style.height = "0px";
      var h = Math.max(doc.documentElement.scrollHeight, doc.body ? doc.body.scrollHeight : 0);
      frame.style.height = Math.max(h, 200) + "px";
    } catch (e) { /* not same-origin: keep the CSS height */ }
  }

  function frameSrc(frame, scheme) {
    var base = frame.getAttribute("data-src");
    var sep = base.indexOf("?") >= 0 ? "&" : "?";
    return scheme === "dark" ? base + sep + "scheme=dark" : base;
  }

  function setupViewer(viewer) {
    var stage = viewer.querySelector("[data-stage]");
    var frame = viewer.querySelector("iframe.email-frame");
    function press(attr, value) {
      viewer.querySelectorAll("button[" + attr + "]").forEach(function (b) {
        b.setAttribute("aria-pressed", b.getAttribute(attr) === value ? "true" : "false");
      });
    }
    function setFrame(value) {
      stage.setAttribute("data-frame", value);
      press("data-frame", value);
      remember("frame", value);
      if (frame) { setTimeout(function () { fitFrame(frame); }, 30); }
    }
    function setScheme(value) {
      var before = stage.getAttribute("data-scheme");
      stage.setAttribute("data-scheme", value);
      press("data-scheme", value);
      remember("scheme", value);
      if (frame && (before === "dark") !== (value === "dark")) { frame.src = frameSrc(frame, value); }
    }
    viewer.querySelectorAll("button[data-frame]").forEach(function (b) {
      b.addEventListener("click", function () { setFrame(b.getAttribute("data-frame")); });
    });
    viewer.querySelectorAll("button[data-scheme]").forEach(function (b) {
      b.addEventListener("click", function () { setScheme(b.getAttribute("data-scheme")); });
    });
    if (frame) {
      frame.addEventListener("load", function () { fitFrame(frame); });
      window.addEventListener("resize", function () { fitFrame(frame); });
    }
    var scheme = recall("scheme", "light");
    setFrame(recall("frame", "desktop"));
    stage.setAttribute("data-scheme", "light");
    setScheme(scheme);
    if (frame && frame.contentDocument && frame.contentDocument.readyState === "complete") { fitFrame(frame); }
  }

  // -- text / headers / raw tabs ----------------------------------------------------------------
  // The raw .eml is fetched when its tab is first shown (it is as big as the rest of the page).
  function loadRaw(box) {
    var pre = box.querySelector("[data-raw-src]");
    if (!pre || pre.getAttribute("data-loaded")) return;
    pre.setAttribute("data-loaded", "1");
    fetch(pre.getAttribute("data-raw-src"), { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(new Error("HTTP " + r.status)); })
      .then(function (text) { pre.textContent = text; })
      .catch(function (e) { pre.textContent = "Could not load the raw message: " + e.message; });
  }

  function setupTabs(box) {
    var tabs = box.querySelectorAll("[data-tab]");
    function show(name) {
      tabs.forEach(function (t) { t.setAttribute("aria-selected", t.getAttribute("data-tab") === name ? "true" : "false"); });
      box.querySelectorAll("[data-panel]").forEach(function (p) { p.hidden = p.getAttribute("data-panel") !== name; });
      if (name === "raw") loadRaw(box);
      remember("tab", name);
    }
    tabs.forEach(function (t) { t.addEventListener("click", function () { show(t.getAttribute("data-tab")); }); });
    show(recall("tab", "text"));
  }

  function start() {
    document.querySelectorAll("[data-viewer]").forEach(setupViewer);
    document.querySelectorAll("[data-tabs]").forEach(setupTabs);
    liveReload();
    var notice = document.getElementById("notice");
    if (notice && window.history && window.history.replaceState) {
      // Drop ?notice= so a manual reload does not show it again.
      var url = new URL(window.location.href);
      url.searchParams.delete("notice");
      window.history.replaceState(null, "", url.toString());
    }
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
