// sutro-local console: live refresh of the job page and the jobs list. No dependencies.
"use strict";

function setField(root, name, value) {
  root.querySelectorAll('[data-field="' + name + '"]').forEach(function (el) { el.textContent = value; });
}

function pollJob(el) {
  var url = el.getAttribute("data-poll");
  var timer = setInterval(function () {
    fetch(url, { credentials: "same-origin", cache: "no-store" }).then(function (r) {
      if (r.status === 401) { window.location.reload(); return null; }
      return r.ok ? r.json() : null;
    }).then(function (d) {
      if (!d) return;
      ["rows", "input_tokens", "output_tokens", "tok_s", "cost", "elapsed"].forEach(function (k) { setField(document, k, d[k]); });
      setField(document, "pct", d.pct + "%");
      document.querySelectorAll(".progress-big progress").forEach(function (b) { b.value = d.pct; });
      var badge = el.querySelector(".badge");
      if (badge && badge.textContent !== d.status) {
        badge.textContent = d.status;
        badge.className = "badge st-" + d.status.toLowerCase();
      }
      // terminal: reload once to show the results preview, downloads and final timings
      if (d.terminal) { clearInterval(timer); window.location.reload(); }
    }).catch(function () { /* server restarting: keep polling */ });
  }, 1000);
}

function pollJobs(el) {
  var url = el.getAttribute("data-src");
  var timer = setInterval(function () {
    fetch(url, { credentials: "same-origin", cache: "no-store" }).then(function (r) {
      if (!r.ok) return;
      var active = r.headers.get("X-Sutro-Active") === "1";
      return r.text().then(function (html) {
        el.innerHTML = html;
        if (!active) clearInterval(timer);
      });
    }).catch(function () {});
  }, 2000);
}

document.addEventListener("DOMContentLoaded", function () {
  var job = document.querySelector("[data-poll]");
  if (job) pollJob(job);
  var jobs = document.querySelector("#jobs[data-live]");
  if (jobs) pollJobs(jobs);
  document.querySelectorAll("form[data-confirm]").forEach(function (f) {
    f.addEventListener("submit", function (e) {
      if (!window.confirm(f.getAttribute("data-confirm"))) e.preventDefault();
    });
  });
});
