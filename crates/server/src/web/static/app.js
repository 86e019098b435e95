// tek web UI: live updates for the server-rendered pages. No framework, no build step.
// Dashboard: refreshes rows from GET /api/devices every 3 s.
// Device and Configure pages: follow GET /devices/{id}/events (Server-Sent Events).
"use strict";

(function () {
  // A device's configuration state as the server names it (`config.state`, `data-state`):
  // service::devices::ConfigStatus, held to these names by its tests.
  const CONFIG = { FACTORY: "factory", PENDING: "pending", SYNCED: "synced", ROLLED_BACK: "rolled_back" };

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
    if (v.config.state === CONFIG.PENDING) return "dot pending";
    if (v.config.state === CONFIG.ROLLED_BACK) return "dot failed";
    return v.online ? "dot online" : "dot offline";
  }

  function dotLabel(v) {
    if (v.config.state === CONFIG.PENDING) return "configuration change pending";
    if (v.config.state === CONFIG.ROLLED_BACK) return "configuration rolled back";
    return v.online ? "online" : "offline";
  }

  function configText(v) {
    var c = v.config;
    if (c.state === CONFIG.FACTORY) return "factory defaults";
    if (c.state === CONFIG.PENDING) return "v" + c.desired + " pending (confirmed: v" + c.applied + ")";
    if (c.state === CONFIG.ROLLED_BACK) return "v" + c.desired + " rolled back: the controller could not reach a server with it and " +
      (v.status ? "runs v" + v.status.config_version + " again" : "runs its previous configuration again");
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

  // A device's own channels (issue 18): the server formats each value ("231.4 V", "no value")
  // and error (service::device_channels); the page only puts the texts in place.
  function updateChannels(now) {
    var box = document.getElementById("channel-values");
    if (!box || !now) return;
    now.channels.forEach(function (c) {
      var row = box.querySelector('[data-channel="' + c.index + '"]');
      if (!row) return;
      var value = set(row, "value", c.text);
      if (value) value.classList.toggle("none", c.value === null);
      var error = set(row, "error", c.error ? c.error.text : "no errors reported");
      if (error) error.classList.toggle("none", !c.error);
    });
    var tf = box.querySelector('[data-field="time"]');
    var t = set(box, "time", now.time ? local(now.time, tf && tf.getAttribute("data-tz")) : "\u2013");
    if (t && now.time) t.setAttribute("data-time", String(now.time));
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
    updateChannels(v.channels);
    var meta = document.getElementById("device-meta");
    if (meta) {
      set(meta, "online", v.online ? "online" : "offline");
      set(meta, "last_seen", ago(v.last_seen));
      set(meta, "transport", v.transport ? transport(v.transport) : "transport unknown");
      if (v.status) set(meta, "address", v.status.ip + " (" + (v.status.dhcp ? "DHCP" : "fixed") + ")");
      if (v.status) set(meta, "radio", v.status.radio + ", signal " + (v.status.gsm_signal <= 31 ? v.status.gsm_signal + "/31" : "unknown"));
      var c = set(meta, "config", configText(v));
      if (c) c.setAttribute("data-state", v.config.state);
    }
    var wait = document.querySelector('[data-field="config-wait"]');
    if (wait) {
      wait.textContent = v.config.state === CONFIG.PENDING ? "Waiting for the controller to confirm\u2026"
        : v.config.state === CONFIG.SYNCED ? "Confirmed by the controller."
        : v.config.state === CONFIG.ROLLED_BACK ? "The controller rolled this change back." : "";
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
          // A device with its own channels: its roles' power and temperatures
          // (service::view::DeviceView::power_w and the rest, as the server draws the row).
          var r = v.readings || {}, own = v.channels || {};
          var or = function (a, b) { return a === null || a === undefined ? b : a; };
          set(row, "last_seen", ago(v.last_seen));
          set(row, "transport", transport(v.transport));
          set(row, "power", num(or(r.power_w, own.power_w), 0, "W"));
          set(row, "water", num(or(r.water_c, own.water_c), 2, "\u00b0C"));
          set(row, "air", num(or(r.air_c, own.air_c), 2, "\u00b0C"));
        });
        var n = document.getElementById("online-count");
        if (n) n.textContent = String(online);
        filterRows();
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

  // Interactive charts (device page): uPlot (vendored, /static/uplot.min.js) over
  // GET /api/devices/{id}/telemetry?points=600 (a device's own channels: one chart per channel
  // over GET /api/devices/{id}/channels/{index}/series?points=600, chartSpec), which the server reduces to buckets with the
  // mean, lowest and highest value each (peaks survive any range) and the share of records with
  // each relay on. The band around a line is the bucket's min..max; the strips under the power
  // line are the pump and heater relays. Hover: values in the legend; drag: zoom (then the
  // zoomed span is fetched again, so it gets its own 600 buckets); shift+drag or the Earlier /
  // Later buttons: pan (the new span is fetched); double-click or Now: the range chosen in the
  // menu, ending now. "Compare" adds the previous period of the same length, dashed.
  function chartData(res, line) {
    // Empty ends at the range's start and end, so the axis spans the whole requested range
    // whatever the data covers (one reading is a point, not a collapsed axis).
    // Only buckets with records come back: where one or more are missing (the controller was
    // off or offline, or the channel had no value), an empty point breaks the line instead of
    // drawing it across the gap.
    var b = res.buckets, step = res.step, xs = [res.from], mean = [null], lo = [null], hi = [null];
    var previous = null;
    b.forEach(function (k) {
      var x = Math.min(k.start + step / 2, res.to);
      if (x <= xs[xs.length - 1]) return;
      if (previous !== null && k.start - previous > step) {
        xs.push(previous + step); mean.push(null); lo.push(null); hi.push(null);
      }
      previous = k.start;
      xs.push(x);
      mean.push(k[line.mean]);
      lo.push(k[line.min]);
      hi.push(k[line.max]);
    });
    if (xs[xs.length - 1] < res.to) { xs.push(res.to); mean.push(null); lo.push(null); hi.push(null); }
    return [xs, mean, lo, hi];
  }

  // What a chart box draws, from its data attributes: where its series come from, its lines
  // (the bucket fields of each line's mean, lowest and highest value), unit and decimals. The
  // pool's power and temperature charts and any channel's chart are the same code.
  function chartSpec(box, id) {
    var kind = box.getAttribute("data-kind");
    var telemetry = "/api/devices/" + id + "/telemetry";
    if (kind === "power") {
      return { url: telemetry, unit: "W", decimals: 0, relays: true,
        lines: [{ label: "power", colour: "--power", mean: "power_w", min: "power_min", max: "power_max" }] };
    }
    if (kind === "channel") {
      return { url: "/api/devices/" + id + "/channels/" + box.getAttribute("data-channel") + "/series",
        unit: box.getAttribute("data-unit") || "", decimals: Number(box.getAttribute("data-decimals")) || 0,
        relays: false,
        lines: [{ label: box.getAttribute("data-name") || "value", colour: "--power", mean: "mean", min: "min", max: "max" }] };
    }
    return { url: telemetry, unit: "\u00b0C", decimals: 2, relays: false,
      lines: [{ label: "water", colour: "--water", mean: "water_c", min: "water_min", max: "water_max" },
              { label: "air", colour: "--air", mean: "air_c", min: "air_min", max: "air_max" }] };
  }

  function relayHook(res) {
    var step = res.step, b = res.buckets;
    return function (u) {
      var ctx = u.ctx, top = u.bbox.top + u.bbox.height, h = 6 * devicePixelRatio;
      [["pump_on", "rgba(31,157,85,", 0], ["heater_on", "rgba(214,69,69,", 1]].forEach(function (r) {
        b.forEach(function (k) {
          var on = k[r[0]];
          if (!on) return;
          var x0 = u.valToPos(k.start, "x", true), x1 = u.valToPos(k.start + step, "x", true);
          ctx.fillStyle = r[1] + (0.25 + 0.75 * on) + ")";
          ctx.fillRect(x0, top - (r[2] + 1) * (h + 2), Math.max(1, x1 - x0), h);
        });
      });
    };
  }

  function colour(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#555";
  }

  function buildChart(box, spec, cur, prev, span, tz, nav) {
    var unit = spec.unit, lines = spec.lines;
    var withUnit = function (label) { return unit ? label + " (" + unit + ")" : label; };
    var tables = [];
    lines.forEach(function (l) { tables.push(chartData(cur, l)); });
    if (prev) {
      lines.forEach(function (l) {
        var d = chartData(prev, l);
        tables.push([d[0].map(function (x) { return x + span; }), d[1]]);
      });
    }
    var data = tables.length > 1 ? uPlot.join(tables) : tables[0];
    var series = [{ label: "Time (" + (tz || "UTC") + ")" }];
    var bands = [];
    lines.forEach(function (l) {
      var c = colour(l.colour), n = series.length;
      series.push({ label: withUnit(l.label), stroke: c, width: 2, spanGaps: false,
        value: function (u, v) { return v == null ? "\u2013" : v.toFixed(spec.decimals); } });
      series.push({ label: l.label + " lowest", stroke: c, width: 0, alpha: 0.3 });
      series.push({ label: l.label + " highest", stroke: c, width: 0, alpha: 0.3 });
      bands.push({ series: [n + 2, n + 1], fill: c + "33" });
    });
    if (prev) {
      lines.forEach(function (l) {
        series.push({ label: l.label + ", previous period", stroke: colour(l.colour), width: 1.5, dash: [6, 4] });
      });
    }
    var opts = {
      width: Math.max(280, box.clientWidth), height: 260,
      tzDate: function (ts) { return tz ? uPlot.tzDate(new Date(ts * 1e3), tz) : new Date(ts * 1e3); },
      series: series, bands: bands,
      axes: [
        { stroke: colour("--fg"), grid: { stroke: colour("--line") }, ticks: { stroke: colour("--line") } },
        { label: unit, size: 60, stroke: colour("--fg"), grid: { stroke: colour("--line") }, ticks: { stroke: colour("--line") } }
      ],
      scales: { x: { time: true } },
      cursor: {
        // The zoom is done in the setSelect hook, which also fetches the span again.
        drag: { x: true, y: false, setScale: false },
        // Shift+drag pans (below) instead of selecting; double-click goes back to the chosen
        // range (uPlot's own would only show the whole of what is loaded).
        bind: {
          mousedown: function (u, targ, handler) {
            return function (e) { if (!e.shiftKey) handler(e); return null; };
          },
          dblclick: function () {
            return function () { nav.home(); return null; };
          }
        }
      },
      hooks: {
        draw: spec.relays ? [relayHook(cur)] : [],
        // A zoom by drag: fetch that span again at full detail.
        setSelect: [function (u) {
          if (u.select.width < 2) return;
          var a = u.posToVal(u.select.left, "x"), b = u.posToVal(u.select.left + u.select.width, "x");
          u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
          nav.zoom(a, b);
        }]
      }
    };
    box.textContent = "";
    var plot = new uPlot(opts, data, box);
    box.tekPlot = plot;
    plot.over.addEventListener("mousedown", function (e) {
      if (!e.shiftKey || e.button !== 0) return;
      e.preventDefault();
      nav.pan(plot, e.clientX);
    });
    window.addEventListener("resize", function () {
      plot.setSize({ width: Math.max(280, box.clientWidth), height: 260 });
    });
  }

  // "2026-12-05 14:30" in the chart's zone (the site's).
  function stamp(t, tz) {
    try {
      return new Date(t * 1e3).toLocaleString("sv-SE", { timeZone: tz || "UTC", year: "numeric",
        month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" });
    } catch (e) {
      return new Date(t * 1e3).toISOString().slice(0, 16).replace("T", " ") + " UTC";
    }
  }

  function charts() {
    var boxes = document.querySelectorAll(".uchart[data-device]");
    if (!boxes.length || !window.uPlot || !window.fetch) return;
    var first = boxes[0];
    var id = first.getAttribute("data-device"), tz = first.getAttribute("data-tz");
    var from = Number(first.getAttribute("data-from")), to = Number(first.getAttribute("data-to"));
    // The span chosen in the range menu; Now and double-click come back to it.
    var chosen = to - from;
    var compare = document.getElementById("compare");
    var label = document.getElementById("chart-range");
    var later = document.getElementById("pan-later");
    var shown = document.querySelector(".live-charts");
    var drawn = 0;
    function now() { return Math.floor(Date.now() / 1e3) + 1; }
    var specs = Array.prototype.map.call(boxes, function (box) { return chartSpec(box, id); });
    // Each source is fetched once per span, whichever charts draw from it.
    function load(f, t) {
      var answers = {};
      specs.forEach(function (spec) {
        if (!answers[spec.url]) {
          answers[spec.url] = fetch(spec.url + "?from=" + f + "&to=" + t + "&points=600",
            { credentials: "same-origin", headers: { Accept: "application/json" } })
            .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); });
        }
      });
      return Promise.all(specs.map(function (spec) { return answers[spec.url]; }));
    }
    function show() {
      if (label) label.textContent = stamp(from, tz) + " \u2013 " + stamp(to, tz);
      if (later) later.disabled = to >= now();
      if (shown) { shown.setAttribute("data-shown-from", from); shown.setAttribute("data-shown-to", to); }
    }
    function draw() {
      var span = to - from, want = [load(from, to)], mine = ++drawn;
      show();
      if (compare && compare.checked) want.push(load(from - span, from));
      Promise.all(want).then(function (res) {
        // An answer overtaken by a newer request is not drawn.
        if (mine !== drawn) return;
        document.body.classList.add("has-uplot");
        boxes.forEach(function (box, i) {
          if (box.tekPlot) box.tekPlot.destroy();
          box.tekPlot = null;
          buildChart(box, specs[i], res[0][i], res[1] && res[1][i], span, tz, nav);
        });
      }).catch(function () { /* the static charts stay */ });
    }
    var nav = {
      // Shows [f, t]: never past now, never shorter than a minute.
      go: function (f, t) {
        var n = now();
        if (t - f < 60) { var mid = (f + t) / 2; f = Math.floor(mid - 30); t = f + 60; }
        if (t > n) { f -= t - n; t = n; }
        if (f === from && t === to) return;
        from = f; to = t;
        draw();
      },
      by: function (fraction) {
        var d = Math.round((to - from) * fraction);
        nav.go(from + d, to + d);
      },
      home: function () { var n = now(); nav.go(n - chosen, n); },
      // At once on every chart from what is loaded, then fetched again for that span.
      zoom: function (a, b) {
        boxes.forEach(function (x) { if (x.tekPlot) x.tekPlot.setScale("x", { min: a, max: b }); });
        nav.go(Math.floor(a), Math.ceil(b));
      },
      // Shift+drag: every chart follows the pointer; on release, the new span is fetched.
      pan: function (plot, x0) {
        var f0 = from, t0 = to, perPx = (t0 - f0) / Math.max(1, plot.over.clientWidth), dt = 0;
        function move(e) {
          dt = Math.round((x0 - e.clientX) * perPx);
          boxes.forEach(function (b) { if (b.tekPlot) b.tekPlot.setScale("x", { min: f0 + dt, max: t0 + dt }); });
        }
        function up() {
          window.removeEventListener("mousemove", move);
          window.removeEventListener("mouseup", up);
          if (dt !== 0) nav.go(f0 + dt, t0 + dt);
        }
        window.addEventListener("mousemove", move);
        window.addEventListener("mouseup", up);
      }
    };
    [["pan-earlier", -0.5], ["pan-later", 0.5]].forEach(function (b) {
      var el = document.getElementById(b[0]);
      if (el) el.addEventListener("click", function () { nav.by(b[1]); });
    });
    var home = document.getElementById("pan-now");
    if (home) home.addEventListener("click", nav.home);
    if (compare) compare.addEventListener("change", draw);
    draw();
  }

  // Dashboard: search, filters (state, open alarms, site) and sorting by a column header.
  function cellKey(row, col) {
    var td = row.children[col];
    if (!td) return "";
    var s = td.getAttribute("data-sort");
    if (s !== null) return Number(s);
    var t = td.textContent.trim();
    var n = parseFloat(t.replace(/[^0-9.\-]/g, ""));
    return /^-?[0-9]/.test(t) && !isNaN(n) && col !== 1 ? n : t.toLowerCase();
  }

  function filterRows() {
    var table = document.getElementById("devices");
    if (!table) return;
    var q = (document.getElementById("q") || {}).value || "";
    var state = (document.getElementById("f-state") || {}).value || "";
    var site = (document.getElementById("f-site") || {}).value || "";
    q = q.trim().toLowerCase();
    var shown = 0, rows = table.tBodies[0].rows;
    for (var i = 0; i < rows.length; i++) {
      var r = rows[i], ok = true;
      if (q && r.children[1].textContent.toLowerCase().indexOf(q) < 0) ok = false;
      var dot = r.querySelector(".dot");
      var on = dot && /online/.test(dot.className);
      if (state === "online" && !on) ok = false;
      if (state === "offline" && on) ok = false;
      if (state === "alarm" && r.getAttribute("data-alarms") === "0") ok = false;
      if (site && r.getAttribute("data-site") !== site) ok = false;
      r.hidden = !ok;
      if (ok) shown++;
    }
    var n = document.getElementById("shown-count");
    if (n) n.textContent = shown + " of " + rows.length + " shown";
  }

  function sortBy(button) {
    var table = document.getElementById("devices");
    var th = button.closest("th"), col = Number(button.getAttribute("data-col"));
    var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
    table.querySelectorAll("th[aria-sort]").forEach(function (h) { h.setAttribute("aria-sort", "none"); });
    th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
    var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = cellKey(a, col), y = cellKey(b, col);
      if (typeof x !== typeof y) { x = String(x); y = String(y); }
      return (x < y ? -1 : x > y ? 1 : 0) * dir;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }

  function dashboardTools() {
    if (!document.getElementById("device-tools")) return;
    ["q", "f-state", "f-site"].forEach(function (id) {
      var el = document.getElementById(id);
      if (el) el.addEventListener("input", filterRows);
      if (el) el.addEventListener("change", filterRows);
    });
    document.querySelectorAll("#devices button.sort").forEach(function (b) {
      b.addEventListener("click", function () { sortBy(b); });
    });
    filterRows();
  }

  // A table or chart wider than the screen scrolls in its own box: keyboard users reach it too.
  function scrollableTables() {
    document.querySelectorAll("table, figure.chart").forEach(function (t) {
      if (t.scrollWidth > t.clientWidth + 1) t.tabIndex = 0; else t.removeAttribute("tabindex");
    });
  }

  // Site energy view (as operators know it from Home Assistant): bars per day of a week or a
  // month, or per month of a year, the previous period beside them, totals and cost.
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function ymd(d) { return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()); }
  function dayOf(s) { var p = s.split("-"); return new Date(Date.UTC(+p[0], +p[1] - 1, +p[2])); }

  function energyPeriod(mode, a) {
    var y = a.getUTCFullYear(), m = a.getUTCMonth(), from, to, label;
    if (mode === "week") {
      from = new Date(Date.UTC(y, m, a.getUTCDate() - (a.getUTCDay() + 6) % 7));
      to = new Date(from.getTime() + 7 * 864e5);
      label = "Week of " + ymd(from);
      return { by: "day", from: ymd(from), to: ymd(to), label: label, shift: function (k) { return new Date(a.getTime() + k * 7 * 864e5); } };
    }
    if (mode === "month") {
      from = new Date(Date.UTC(y, m, 1)); to = new Date(Date.UTC(y, m + 1, 1));
      return { by: "day", from: ymd(from), to: ymd(to), label: ymd(from).slice(0, 7), shift: function (k) { return new Date(Date.UTC(y, m + k, 1)); } };
    }
    return { by: "month", from: y + "-01", to: (y + 1) + "-01", label: String(y), shift: function (k) { return new Date(Date.UTC(y + k, 0, 1)); } };
  }

  // The site's breakdown by meter (web/site.rs `breakdown_section`) for the period the energy
  // view shows: the same rows, built from the API's `breakdown` (names as text, never markup).
  function drawBreakdown(b, label, cu) {
    var table = document.getElementById("energy-breakdown");
    if (!b || !table) return;
    var svgNs = "http://www.w3.org/2000/svg";
    document.getElementById("breakdown-period").textContent = label;
    document.getElementById("breakdown-total").textContent = b.total_kwh.toFixed(2) + " kWh";
    function td(cls, text) {
      var c = document.createElement("td");
      if (cls) c.className = cls;
      if (text !== undefined) c.textContent = text;
      return c;
    }
    function shareCell(share) {
      var c = td("share");
      if (share === null || share === undefined) { c.textContent = "\u2013"; return c; }
      var pct = Math.max(0, Math.min(100, share * 100));
      var svg = document.createElementNS(svgNs, "svg");
      svg.setAttribute("class", "bar");
      svg.setAttribute("viewBox", "0 0 100 8");
      svg.setAttribute("preserveAspectRatio", "none");
      svg.setAttribute("aria-hidden", "true");
      [["track", 100], ["fill", pct]].forEach(function (r) {
        var rect = document.createElementNS(svgNs, "rect");
        rect.setAttribute("class", r[0]);
        rect.setAttribute("width", r[1].toFixed(1));
        rect.setAttribute("height", "8");
        svg.appendChild(rect);
      });
      var t = document.createElement("span");
      t.className = "pct";
      t.textContent = pct.toFixed(0) + " %";
      c.appendChild(svg);
      c.appendChild(t);
      return c;
    }
    function money(v) { return v === null || v === undefined ? "\u2013" : v.toFixed(2) + " " + cu; }
    function row(tr, name, kwh, share, cost) {
      tr.appendChild(name);
      var k = td("num", kwh.toFixed(2) + " kWh");
      k.setAttribute("data-field", "kwh");
      tr.appendChild(k);
      tr.appendChild(shareCell(share));
      tr.appendChild(td("num", money(cost)));
      return tr;
    }
    var body = document.createElement("tbody");
    b.meters.forEach(function (m) {
      var tr = document.createElement("tr");
      tr.setAttribute("data-device", m.device);
      if (m.channel !== null) tr.setAttribute("data-channel", m.channel);
      var name = td("", m.name);
      if (!m.in_total) {
        var note = document.createElement("small");
        note.className = "meta";
        note.textContent = "(not in the total)";
        name.appendChild(document.createTextNode(" "));
        name.appendChild(note);
      }
      name.appendChild(document.createElement("br"));
      var small = document.createElement("small"), a = document.createElement("a");
      a.href = "/devices/" + m.device;
      a.textContent = m.device + " " + m.device_name;
      small.appendChild(a);
      name.appendChild(small);
      body.appendChild(row(tr, name, m.kwh, m.share, m.cost));
    });
    var un = document.createElement("tr");
    un.id = "untracked";
    body.appendChild(row(un, td("", "Untracked"), b.untracked.kwh, b.untracked.share, b.untracked.cost));
    table.replaceChild(body, table.tBodies[0]);
    var over = document.getElementById("breakdown-exceeded");
    document.getElementById("breakdown-excess").textContent = b.exceeded_kwh.toFixed(2) + " kWh";
    over.hidden = !(b.exceeded_kwh > 0);
  }

  function energyView() {
    var box = document.getElementById("energy-view");
    if (!box || !window.uPlot || !window.fetch) return;
    var site = box.getAttribute("data-site"), today = dayOf(box.getAttribute("data-today"));
    var mode = "month", anchor = today, plot = null;
    function load(p) {
      return fetch("/api/sites/" + site + "/energy?by=" + p.by + "&from=" + p.from + "&to=" + p.to,
        { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); });
    }
    function money(v, cur) { return v === null || v === undefined ? "" : ", " + v.toFixed(2) + " " + cur; }
    function draw() {
      var p = energyPeriod(mode, anchor), q = energyPeriod(mode, p.shift(-1));
      Promise.all([load(p), load(q)]).then(function (res) {
        var cur = res[0], prev = res[1], n = cur.periods.length, cu = cur.currency || "";
        var xs = [], a = [], b = [], labels = [];
        for (var i = 0; i < n; i++) {
          xs.push(i);
          a.push(cur.periods[i].kwh);
          b.push(i < prev.periods.length ? prev.periods[i].kwh : null);
          var l = cur.periods[i].period;
          labels.push(p.by === "month" ? l.slice(5) : (mode === "week" ? l.slice(5) : l.slice(8)));
        }
        box.hidden = false;
        document.getElementById("ev-label").textContent = p.label;
        document.getElementById("ev-summary").textContent = p.label + ": " + cur.total.kwh.toFixed(2) + " kWh" +
          money(cur.total.cost, cu) + " \u00b7 previous " + q.label + ": " + prev.total.kwh.toFixed(2) + " kWh" + money(prev.total.cost, cu);
        box.querySelectorAll("button.period").forEach(function (btn) {
          btn.setAttribute("aria-pressed", String(btn.getAttribute("data-mode") === mode));
        });
        var el = document.getElementById("ev-chart");
        if (plot) plot.destroy();
        var bars = uPlot.paths && uPlot.paths.bars;
        plot = new uPlot({
          width: Math.max(280, el.clientWidth), height: 260,
          scales: { x: { time: false, range: [-0.5, n - 0.5] } },
          axes: [
            { stroke: colour("--fg"), grid: { show: false }, ticks: { stroke: colour("--line") },
              splits: function () { return xs; }, values: function (u, sp) { return sp.map(function (i) { return labels[i] || ""; }); } },
            { label: "kWh", size: 60, stroke: colour("--fg"), grid: { stroke: colour("--line") } }
          ],
          series: [
            { label: "Period", value: function (u, i) { return i == null ? "\u2013" : labels[i]; } },
            { label: p.label + " (kWh)", stroke: colour("--power"), fill: colour("--power") + "cc",
              paths: bars ? bars({ size: [0.4, 40], align: 1 }) : undefined, points: { show: false } },
            { label: q.label + " (kWh)", stroke: colour("--grey"), fill: colour("--grey") + "99",
              paths: bars ? bars({ size: [0.4, 40], align: -1 }) : undefined, points: { show: false } }
          ]
        }, [xs, a, b], el);
        box.tekPlot = plot;
        drawBreakdown(cur.breakdown, p.label, cu);
      }).catch(function () { /* the static charts stay */ });
    }
    box.querySelectorAll("button.period").forEach(function (btn) {
      btn.addEventListener("click", function () { mode = btn.getAttribute("data-mode"); anchor = today; draw(); });
    });
    document.getElementById("ev-prev").addEventListener("click", function () { anchor = energyPeriod(mode, anchor).shift(-1); draw(); });
    document.getElementById("ev-next").addEventListener("click", function () { anchor = energyPeriod(mode, anchor).shift(1); draw(); });
    window.addEventListener("resize", function () {
      var el = document.getElementById("ev-chart");
      if (plot) plot.setSize({ width: Math.max(280, el.clientWidth), height: 260 });
    });
    draw();
  }

  document.addEventListener("DOMContentLoaded", function () {
    energyView();
    scrollableTables();
    window.addEventListener("resize", scrollableTables);
    charts();
    dashboardTools();
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
