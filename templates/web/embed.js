/*! Weekly AI Tool Verdicts sign-up form. Drop-in:
 *   <script src="https://NEWSLETTER-HOST/embed.js" async
 *           data-source="homepage" data-name="true" data-theme="auto" data-accent="#1d4ed8"
 *           data-title="Get the weekly digest" data-description="..." data-button="Subscribe"
 *           data-target="#signup"></script>
 * Renders a styled form (in a shadow root, so the page's CSS and ours never mix) after the
 * script tag or inside data-target, and posts it with fetch (CORS: the page's origin must be
 * in site.allowed_origins). With `data-enhance` it instead upgrades the server's own forms
 * (<form data-dg-form>) on the hosted /subscribe and /embed pages.
 */
(function () {
  "use strict";

  var script = document.currentScript;
  if (!script) {
    var all = document.querySelectorAll('script[src*="embed.js"]');
    script = all[all.length - 1];
  }
  if (!script) return;
  var opts = script.dataset || {};
  var base = script.src.replace(/\/embed\.js(?:[?#].*)?$/, "");
  var endpoint = base + "/subscribe";
  var SETTING = "site.allowed_origins";
  var count = 0;

  // WCAG relative luminance of "#rgb[a]" / "#rrggbb[aa]" (alpha ignored: the button is opaque).
  function hex6(value) {
    var m = /^#([0-9a-f]{3,4}|[0-9a-f]{6}|[0-9a-f]{8})$/i.exec(value || "");
    if (!m) return null;
    var h = m[1];
    if (h.length <= 4) h = h[0] + h[0] + h[1] + h[1] + h[2] + h[2];
    return "#" + h.slice(0, 6).toLowerCase();
  }
  function luminance(hex) {
    var c = [1, 3, 5].map(function (i) {
      var v = parseInt(hex.slice(i, i + 2), 16) / 255;
      return v <= 0.04045 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  }
  function contrast(a, b) {
    var x = luminance(a), y = luminance(b);
    return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05);
  }
  // The button text for an accent: our light or dark ink, whichever reads better; when neither
  // reaches 4.5:1 (mid-tone accents), pure white or black, one of which always does.
  function inkFor(accent) {
    var best = ["#ffffff", "#0b1120"].sort(function (a, b) { return contrast(accent, b) - contrast(accent, a); })[0];
    if (contrast(accent, best) >= 4.5) return best;
    return contrast(accent, "#ffffff") >= contrast(accent, "#000000") ? "#ffffff" : "#000000";
  }

  // A CORS failure looks like a network failure to fetch; ask the server (which answers any
  // origin here) whether this page's origin is the reason, and say so to visitor and developer.
  function explainFailure() {
    return fetch(base + "/embed/origin", { mode: "cors", credentials: "omit" }).then(function (response) {
      return response.json();
    }).then(function (body) {
      if (body && body.allowed === false) {
        if (window.console) console.error("Newsletter sign-up: " + body.origin + " is not in " + SETTING +
          " on " + base + "; add it there (and restart) to enable this form on this site.");
        return "This form isn’t enabled for this site.";
      }
      return null;
    }).catch(function () { return null; });
  }

  var CSS = [
    ":host{all:initial;display:block}",
    ".dg{--dg-accent:#1d4ed8;--dg-bg:#fff;--dg-text:#111827;--dg-muted:#4b5563;--dg-line:#d1d5db;",
    "--dg-err:#b91c1c;--dg-ok:#047857;--dg-ok-bg:#ecfdf5;--dg-on:#fff;",
    "font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,'Helvetica Neue',Arial,sans-serif;",
    "color:var(--dg-text);background:var(--dg-bg);border:1px solid var(--dg-line);border-radius:12px;",
    "padding:1.25rem;max-width:32rem;box-sizing:border-box}",
    ".dg.dark{--dg-accent:#3b82f6;--dg-bg:#111827;--dg-text:#f3f4f6;--dg-muted:#9ca3af;--dg-line:#374151;",
    "--dg-err:#f87171;--dg-ok:#34d399;--dg-ok-bg:#062e22;--dg-on:#0b1120}",
    ".dg *{box-sizing:border-box}",
    ".dg h2{margin:0 0 .25rem;font-size:1.2rem;line-height:1.3}",
    ".dg p{margin:0 0 .75rem}",
    ".dg .desc{color:var(--dg-muted)}",
    ".dg label{display:block;font-weight:600;margin:0 0 .3rem}",
    ".dg .row{display:flex;flex-wrap:wrap;gap:.5rem}",
    ".dg .row input{flex:1 1 14rem}",
    ".dg .field{margin:0 0 .75rem}",
    ".dg input{width:100%;min-height:2.75rem;padding:.55rem .75rem;font:inherit;color:var(--dg-text);",
    "background:var(--dg-bg);border:1px solid var(--dg-line);border-radius:8px}",
    ".dg input[aria-invalid=true]{border-color:var(--dg-err)}",
    ".dg button{flex:0 0 auto;min-height:2.75rem;padding:.55rem 1.2rem;font:inherit;font-weight:650;",
    "color:var(--dg-on);background:var(--dg-accent);border:0;border-radius:8px;cursor:pointer}",
    ".dg button[disabled]{opacity:.65;cursor:progress}",
    ".dg :focus-visible{outline:3px solid var(--dg-accent);outline-offset:2px}",
    ".dg .status{min-height:1.4em;margin:.6rem 0 0;font-size:.93rem}",
    ".dg .status.error{color:var(--dg-err)}",
    ".dg .status:empty{margin:0;min-height:0}",
    ".dg .fine{margin:.4rem 0 0;font-size:.82rem;color:var(--dg-muted)}",
    ".dg .done{padding:.75rem 1rem;border-radius:8px;background:var(--dg-ok-bg);color:var(--dg-ok)}",
    ".dg .hp{position:absolute;left:-10000px;width:1px;height:1px;overflow:hidden}",
    ".dg .topics{border:0;margin:.6rem 0 0;padding:0}.dg .topics legend{font-weight:600;font-size:.9rem;padding:0}",
    ".dg .choice{display:flex;gap:.6rem;align-items:center;margin:.35rem 0;font-size:.95rem;font-weight:400}",
    ".dg .choice input{width:1.15rem;height:1.15rem;min-height:0;margin:0;padding:0;flex:none;",
    "accent-color:var(--dg-accent);box-shadow:none}",
    "@media (max-width:420px){.dg .row button{width:100%}}"
  ].join("");

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    for (var k in attrs) if (Object.prototype.hasOwnProperty.call(attrs, k)) node.setAttribute(k, attrs[k]);
    if (text) node.textContent = text;
    return node;
  }

  function field(form, name) {
    return form.querySelector('[name="' + name + '"]');
  }

  function setStatus(form, text, isError) {
    var status = form.querySelector(".status");
    status.textContent = text;
    status.className = "status" + (isError ? " error" : "");
  }

  function showDone(form, message) {
    var done = el("p", { "class": "done notice ok", role: "status", tabindex: "-1" }, message);
    form.parentNode.replaceChild(done, form);
    done.focus();
  }

  function submitWith(form, url) {
    form.addEventListener("submit", function (event) {
      if (!window.fetch || !window.JSON) return; // the browser posts the form itself
      event.preventDefault();
      var button = form.querySelector('button[type="submit"]');
      var label = button.textContent;
      var email = field(form, "email");
      var payload = { email: email.value };
      ["name", "website", "source", "page"].forEach(function (n) {
        var input = field(form, n);
        if (input && input.value) payload[n] = input.value;
      });
      var ticked = [].map.call(form.querySelectorAll('input[name="topic"]:checked'), function (box) {
        return box.value;
      });
      if (ticked.length) payload.topics = ticked.join("+");
      [].forEach.call(form.querySelectorAll("[aria-invalid]"), function (n) { n.removeAttribute("aria-invalid"); });
      button.disabled = true;
      button.textContent = "Subscribing…";
      setStatus(form, "", false);
      fetch(url, {
        method: "POST", mode: "cors", credentials: "omit",
        headers: { "Content-Type": "application/json", "Accept": "application/json" },
        body: JSON.stringify(payload)
      }).then(function (response) {
        return response.json().catch(function () { return {}; }).then(function (body) {
          if (response.ok && body.ok) {
            showDone(form, body.message || "Check your inbox to confirm.");
            return;
          }
          var message = body.error || "Something went wrong. Please try again.";
          if (response.status === 429) message = body.error || "Too many attempts. Please try again later.";
          var bad = body.field && field(form, body.field);
          if (bad) { bad.setAttribute("aria-invalid", "true"); bad.focus(); }
          setStatus(form, message, true);
        });
      }).catch(function () {
        return explainFailure().then(function (reason) {
          setStatus(form, reason || "We could not reach the server. Check your connection and try again.", true);
        });
      }).then(function () {
        if (button.isConnected) { button.disabled = false; button.textContent = label; }
      });
    });
  }

  // data-topics="true": the topic boxes, named as the server names them (GET /embed/topics).
  function addTopics(form, before, n) {
    if (!window.fetch) return;
    fetch(base + "/embed/topics", { mode: "cors", credentials: "omit", headers: { "Accept": "application/json" } })
      .then(function (response) { return response.ok ? response.json() : { topics: [] }; })
      .then(function (body) {
        var topics = body.topics || [];
        if (!topics.length) return;
        var set = el("fieldset", { "class": "topics" });
        set.appendChild(el("legend", {}, "Topics (optional: none ticked brings every topic)"));
        topics.forEach(function (topic, i) {
          var id = "dg-topic-" + n + "-" + i;
          var label = el("label", { "class": "choice", "for": id });
          label.appendChild(el("input", { id: id, type: "checkbox", name: "topic", value: topic.key }));
          label.appendChild(el("span", {}, topic.name));
          set.appendChild(label);
        });
        form.insertBefore(set, before.nextSibling);
      })
      .catch(function () { /* no boxes: the reader gets every topic */ });
  }

  function render() {
    var n = ++count;
    var host = opts.target ? document.querySelector(opts.target) : null;
    if (!host) {
      host = document.createElement("div");
      script.parentNode.insertBefore(host, script.nextSibling);
    }
    host.setAttribute("data-digest-signup", "");
    var root = host.attachShadow ? host.attachShadow({ mode: "open" }) : host;
    var style = document.createElement("style");
    style.textContent = CSS;
    root.appendChild(style);

    var dark = opts.theme === "dark" ||
      (opts.theme === "auto" && window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches);
    var box = el("div", { "class": "dg" + (dark ? " dark" : "") });
    var accent = hex6(opts.accent);
    if (accent) {
      box.style.setProperty("--dg-accent", accent);
      box.style.setProperty("--dg-on", inkFor(accent));
    } else if (opts.accent && window.console) {
      console.warn("Newsletter sign-up: data-accent must be a colour like #1d4ed8; using the default.");
    }
    var title = opts.title === undefined ? "Get the week’s best AI tool comparisons" : opts.title;
    if (title) box.appendChild(el("h2", {}, title));
    var desc = opts.description === undefined ? "One email a week. Unsubscribe with one click." : opts.description;
    if (desc) box.appendChild(el("p", { "class": "desc" }, desc));

    var form = el("form", { action: endpoint, method: "post", novalidate: "" });
    var ids = { email: "dg-email-" + n, name: "dg-name-" + n, status: "dg-status-" + n };
    if (opts.name === "true") {
      var nameField = el("div", { "class": "field" });
      nameField.appendChild(el("label", { "for": ids.name }, "First name (optional)"));
      nameField.appendChild(el("input", { id: ids.name, name: "name", type: "text", maxlength: "60",
        autocomplete: "given-name" }));
      form.appendChild(nameField);
    }
    form.appendChild(el("label", { "for": ids.email }, "Email address"));
    var row = el("div", { "class": "row" });
    row.appendChild(el("input", { id: ids.email, name: "email", type: "email", required: "", maxlength: "254",
      autocomplete: "email", inputmode: "email", spellcheck: "false", placeholder: "you@example.com",
      "aria-describedby": ids.status }));
    row.appendChild(el("button", { type: "submit" }, opts.button || "Subscribe"));
    form.appendChild(row);
    if (opts.topics === "true") addTopics(form, row, n);
    var hp = el("div", { "class": "hp", "aria-hidden": "true" });
    hp.appendChild(el("input", { name: "website", type: "text", tabindex: "-1", autocomplete: "off" }));
    form.appendChild(hp);
    form.appendChild(el("input", { type: "hidden", name: "source", value: (opts.source || "embed.js").slice(0, 40) }));
    form.appendChild(el("input", { type: "hidden", name: "page", value: location.href.split(/[?#]/)[0] }));
    form.appendChild(el("p", { "class": "status", id: ids.status, role: "status", "aria-live": "polite" }));
    form.appendChild(el("p", { "class": "fine" }, "We’ll email you a link to confirm first."));
    box.appendChild(form);
    root.appendChild(box);

    form.addEventListener("submit", function (event) {
      var email = field(form, "email");
      if (!email.value.trim() || (email.validity && !email.validity.valid)) {
        event.preventDefault();
        event.stopImmediatePropagation();
        email.setAttribute("aria-invalid", "true");
        setStatus(form, "Please enter a valid email address, like name@example.com.", true);
        email.focus();
      }
    });
    submitWith(form, endpoint);
  }

  if (opts.enhance !== undefined) {
    [].forEach.call(document.querySelectorAll("form[data-dg-form]"), function (form) {
      // In the /embed iframe the host page is our referrer (the server fills it in too).
      var page = field(form, "page");
      if (page && !page.value && window.top !== window && document.referrer) page.value = document.referrer;
      submitWith(form, form.action);
    });
  } else {
    render();
  }
})();
