// The channel editor (web/template_editor.rs), enhanced: each channel row shows only the fields
// of its source, and a field the user has changed is checked as they type or leave it by
// POST /templates/check (the same translation and service check as saving), its error shown
// next to it. Without this script every field is shown and errors come back with the page.
(function () {
  "use strict";
  var form = document.getElementById("template-editor");
  if (!form || !window.fetch || !window.URLSearchParams) return;
  form.classList.add("js");

  function syncSource(row) {
    var select = row.querySelector("select[name$=_source]");
    if (select) row.setAttribute("data-source", select.value);
  }
  form.querySelectorAll("fieldset.channel").forEach(syncSource);

  // Fields the user changed in this page: only their errors are shown as they type, so a row
  // not filled in yet is not shouted at.
  var touched = {};
  var timer = null;
  var seq = 0;

  function clearNote(field) {
    var old = document.getElementById(field + "-error");
    if (old) old.remove();
    var el = form.elements[field];
    if (el && el.removeAttribute) {
      el.removeAttribute("aria-invalid");
      el.removeAttribute("aria-describedby");
    }
  }

  function showNote(field, message) {
    var el = form.elements[field];
    if (!el || !el.closest) return;
    var note = document.createElement("span");
    note.className = "field-error";
    note.id = field + "-error";
    note.textContent = message;
    el.setAttribute("aria-invalid", "true");
    el.setAttribute("aria-describedby", note.id);
    el.insertAdjacentElement("afterend", note);
  }

  function check() {
    var mine = ++seq;
    var data = new URLSearchParams(new FormData(form));
    data.set("action", "check");
    fetch("/templates/check", {
      method: "POST", credentials: "same-origin", body: data,
      headers: { "Content-Type": "application/x-www-form-urlencoded", Accept: "application/json" }
    }).then(function (r) { return r.ok ? r.json() : null; }).then(function (answer) {
      // A slower answer to an older state of the form is dropped.
      if (!answer || mine !== seq) return;
      var byField = {};
      answer.errors.forEach(function (e) { byField[e.field] = e.message; });
      Object.keys(touched).forEach(function (field) {
        clearNote(field);
        if (byField[field]) showNote(field, byField[field]);
      });
    }).catch(function () { /* offline: the save shows the errors */ });
  }

  function changed(ev) {
    var el = ev.target;
    if (!el.name || el.name === "csrf") return;
    touched[el.name] = true;
    var row = el.closest("fieldset.channel");
    if (row && /_source$/.test(el.name)) syncSource(row);
    // A preset, register or expression changes what the other fields mean: recheck them too.
    if (row) {
      row.querySelectorAll("input, select").forEach(function (f) {
        if (f.value !== "") touched[f.name] = true;
      });
    }
    clearTimeout(timer);
    timer = setTimeout(check, ev.type === "input" ? 400 : 0);
  }
  form.addEventListener("input", changed);
  form.addEventListener("change", changed);
})();
