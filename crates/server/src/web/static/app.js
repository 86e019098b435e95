// tek web UI: live updates for the server-rendered pages. No framework, no build step.
// Dashboard: refreshes rows from GET /api/devices every 3 s.
// Device and Configure pages: follow GET /devices/{id}/events (Server-Sent Events).
"use strict";

(function () {
  function num(v, decimals, unit) {
    return v === null || v === undefined ? "\u2013" : v.toFixed(decimals) + " " + unit;
  }

  function ago(t) {
    if (t === null || t === undefined) return "never";
    var d = Math.max(0, Math.round(Date.now() / 1000 - t));
    if (d < 120) return d + " s ago";
    if (d < 7200) return Math.floor(d / 60) + " min ago";
    if (d < 172800) return Math.floor(d / 3600) + " h ago";
    return Math.floor(d / 86400) + " d ago";
  }

  // "YYYY-MM-DD HH:MM:SS" local in the IANA zone `tz` (the site's, named on the page), as
  // the server writes it (timefmt::local).
  function local(t, tz) {
    try {
      return new Intl.DateTimeFormat("sv-SE", {
        timeZone: tz || "UTC", year: "numeric", month: "2-digit", day: "2-digit",
        hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false
      }).format(new Date(t * 1000));
    } catch (e) {
      return new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC";
    }
  }

  function transport(t) {
    return t === "gsm" ? "GSM" : t === "ethernet" ? "Ethernet" : "\u2013";
  }

  function dotClass(v) {
    if (v.config.state === "pending") return "dot pending";
    if (v.config.state === "rolled_back") return "dot failed";
    return v.online ? "dot online" : "dot offline";
  }

  function dotLabel(v) {
    if (v.config.state === "pending") return "configuration change pending";
    if (v.config.state === "rolled_back") return "configuration rolled back";
    return v.online ? "online" : "offline";
  }

  function configText(v) {
    var c = v.config;
    if (c.state === "factory") return "factory defaults";
    if (c.state === "pending") return "v" + c.desired + " pending (confirmed: v" + c.applied + ")";
    if (c.state === "rolled_back") return "v" + c.desired + " rolled back: the controller could not reach a server with it and runs its previous configuration again";
    return "v" + c.desired + " confirmed";
  }

  function set(root, field, text) {
    var el = root.querySelector('[data-field="' + field + '"]');
    if (el && el.textContent !== text) el.textContent = text;
    return el;
  }

  function updateDots(v) {
    document.querySelectorAll('[data-dot="' + v.id + '"]').forEach(function (el) {
      el.className = dotClass(v);
      el.title = dotLabel(v);
      el.setAttribute("aria-label", dotLabel(v));
    });
  }

  function relay(r, bit) {
    if (r === null || r === undefined) return "\u2013";
    return (r & (1 << bit)) ? "on" : "off";
  }

  function updateDevice(v) {
    updateDots(v);
    var r = v.readings || {};
    var box = document.getElementById("readings");
    if (box) {
      set(box, "power", num(r.power_w, 0, "W"));
      set(box, "energy", num(r.energy_wh === undefined || r.energy_wh === null ? null : r.energy_wh / 1000, 3, "kWh"));
      set(box, "water", num(r.water_c, 2, "\u00b0C"));
      set(box, "air", num(r.air_c, 2, "\u00b0C"));
      set(box, "pump", relay(r.relays, 0));
      set(box, "heater", relay(r.relays, 1));
      var tf = box.querySelector('[data-field="time"]');
      var t = set(box, "time", r.time ? local(r.time, tf && tf.getAttribute("data-tz")) : "\u2013");
      if (t && r.time) t.setAttribute("data-time", String(r.time));
    }
    var meta = document.getElementById("device-meta");
    if (meta) {
      set(meta, "online", v.online ? "online" : "offline");
      set(meta, "last_seen", ago(v.last_seen));
      set(meta, "transport", v.transport ? transport(v.transport) : "transport unknown");
      if (v.status) set(meta, "radio", v.status.radio + ", signal " + (v.status.gsm_signal <= 31 ? v.status.gsm_signal + "/31" : "unknown"));
      var c = set(meta, "config", configText(v));
      if (c) c.setAttribute("data-state", v.config.state);
    }
    var wait = document.querySelector('[data-field="config-wait"]');
    if (wait) {
      wait.textContent = v.config.state === "pending" ? "Waiting for the controller to confirm\u2026"
        : v.config.state === "synced" ? "Confirmed by the controller."
        : v.config.state === "rolled_back" ? "The controller rolled this change back." : "";
    }
  }

  // The live stream is open only while the page is shown. Chromium keeps at most 6 HTTP/1.1
  // connections per host, and a page kept in the back/forward cache would otherwise keep its
  // stream open: after a few clicks between tabs every new page waited for a free connection.
  // So the stream is closed when the page is hidden or left (pagehide, visibilitychange) and
  // opened again when it is shown (pageshow, also after a return from the cache).
  var live = null;

  function followDevice(id) {
    if (!window.EventSource) return;
    function open() {
      if (live || document.visibilityState === "hidden") return;
      live = new EventSource("/devices/" + id + "/events");
      live.addEventListener("device", function (e) {
        try { updateDevice(JSON.parse(e.data)); } catch (err) { /* ignore a bad event */ }
      });
    }
    function close() {
      if (live) { live.close(); live = null; }
    }
    window.addEventListener("pagehide", close);
    window.addEventListener("pageshow", open);
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "hidden") close(); else open();
    });
    open();
  }

  // For the browser test: whether the live stream is open.
  window.tekLive = function () { return live !== null && live.readyState !== 2; };

  function refreshDashboard() {
    fetch("/api/devices", { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (list) {
        var online = 0;
        list.forEach(function (v) {
          if (v.online) online++;
          updateDots(v);
          var row = document.querySelector('tr[data-device="' + v.id + '"]');
          if (!row) return;
          var r = v.readings || {};
          set(row, "last_seen", ago(v.last_seen));
          set(row, "transport", transport(v.transport));
          set(row, "power", num(r.power_w, 0, "W"));
          set(row, "water", num(r.water_c, 2, "\u00b0C"));
          set(row, "air", num(r.air_c, 2, "\u00b0C"));
        });
        var n = document.getElementById("online-count");
        if (n) n.textContent = String(online);
      })
      .catch(function () { /* signed out or server restarting: try again later */ });
  }

  // Forms. Every post form asks first when it has data-confirm (deletes, reboot), and is sent
  // in the background: on success the browser goes where the server redirects; on a refusal the
  // page stays as it is, with what was typed, and the server's message is shown next to the
  // field it names (else at the top of the form). Forms marked data-plain (those whose answer is
  // a page of their own: login, configuration, a new token) are posted normally.
  function fieldFor(form, msg) {
    var m = msg.toLowerCase();
    var best = null;
    form.querySelectorAll("input:not([type=hidden]), select, textarea").forEach(function (el) {
      if (best) return;
      var label = el.closest("label");
      var names = [el.name.replace(/_/g, " "), el.name];
      if (label) names.push(label.textContent.trim().split("\n")[0].trim().toLowerCase());
      names.forEach(function (n) {
        if (!best && n && (m.indexOf(n + ":") === 0 || m.indexOf(n + " ") === 0)) best = el;
      });
    });
    return best;
  }

  function clearErrors(form) {
    form.querySelectorAll(".field-error.js").forEach(function (e) { e.remove(); });
    form.querySelectorAll("[aria-invalid]").forEach(function (e) {
      e.removeAttribute("aria-invalid");
      e.removeAttribute("aria-describedby");
    });
  }

  var errorIds = 0;
  function showError(form, msg) {
    clearErrors(form);
    var el = fieldFor(form, msg);
    var note = document.createElement("span");
    note.className = "field-error js";
    note.setAttribute("role", "alert");
    note.id = "form-error-" + (++errorIds);
    note.textContent = msg;
    if (el) {
      el.setAttribute("aria-invalid", "true");
      el.setAttribute("aria-describedby", note.id);
      (el.closest("label") || el).insertAdjacentElement("afterend", note);
      el.focus();
    } else {
      form.insertAdjacentElement("afterbegin", note);
    }
  }

  function confirmText(form, submitter) {
    var t = form.getAttribute("data-confirm");
    if (t) return t;
    var action = form.querySelector("select[name=action]");
    if (action && action.value === "reboot") return "Reboot the controller now?";
    return null;
  }

  function enhanceForm(form) {
    form.addEventListener("submit", function (ev) {
      var ask = confirmText(form, ev.submitter);
      if (ask && !window.confirm(ask)) { ev.preventDefault(); return; }
      if (form.hasAttribute("data-plain") || !window.fetch || !window.URLSearchParams) return;
      ev.preventDefault();
      var data;
      try { data = new FormData(form, ev.submitter); } catch (e) { data = new FormData(form); }
      var button = ev.submitter;
      if (button) button.disabled = true;
      fetch(form.action, {
        method: "POST", credentials: "same-origin", body: new URLSearchParams(data),
        headers: { "Content-Type": "application/x-www-form-urlencoded" }
      }).then(function (r) {
        return r.text().then(function (t) {
          if (button) button.disabled = false;
          var doc = new DOMParser().parseFromString(t, "text/html");
          var bare = !doc.querySelector("header.top");
          var err = bare ? doc.querySelector("main.narrow p.error") : doc.querySelector(".flash.error");
          if (r.ok && r.redirected) { window.location.assign(r.url); return; }
          if (!r.ok && err) { showError(form, err.textContent.trim()); return; }
          // Anything else (a page of its own): post it the ordinary way.
          form.setAttribute("data-plain", "");
          form.removeAttribute("data-confirm");
          if (form.requestSubmit) form.requestSubmit(button || undefined); else form.submit();
        });
      }).catch(function () {
        if (button) button.disabled = false;
        showError(form, "The server could not be reached; nothing was changed. Try again.");
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form[method=post]").forEach(enhanceForm);
    if (document.getElementById("devices")) {
      refreshDashboard();
      setInterval(function () {
        if (document.visibilityState !== "hidden") refreshDashboard();
      }, 3000);
    }
    var meta = document.getElementById("device-meta");
    if (meta) followDevice(meta.getAttribute("data-device"));
  });
})();
