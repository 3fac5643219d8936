// moss dashboard: live fragments and the operator's actions. No build step, no dependencies.
(function () {
  "use strict";

  function esc(text) {
    return String(text == null ? "" : text).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }

  // Parts of a page that update themselves.
  document.querySelectorAll("[data-live]").forEach(function (element) {
    var every = Number(element.dataset.every) || 2000;
    setInterval(function () {
      fetch(element.dataset.live, { headers: { Accept: "text/html" } })
        .then(function (response) { return response.ok ? response.text() : null; })
        .then(function (html) { if (html !== null) { element.innerHTML = html; } })
        .catch(function () {});
    }, every);
  });

  function refreshLetters() {
    var element = document.getElementById("letters");
    if (!element) { return Promise.resolve(); }
    var url = element.dataset.refresh + window.location.search;
    if (element.dataset.refresh === "/held-deletes") {
      // The held page: take the table out of the whole page.
      return fetch(url).then(function (r) { return r.text(); }).then(function (html) {
        var page = new DOMParser().parseFromString(html, "text/html");
        var fresh = page.getElementById("letters");
        if (fresh) { element.innerHTML = fresh.innerHTML; }
      });
    }
    return fetch(url).then(function (r) { return r.text(); }).then(function (html) { element.innerHTML = html; });
  }

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Moss-Action": "1" },
      body: JSON.stringify(body),
    }).then(function (response) {
      return response.json().then(
        function (json) { return { ok: response.ok, body: json }; },
        function () { return { ok: false, body: { error: "the dashboard answered " + response.status } }; }
      );
    });
  }

  function filterForm() {
    var form = document.getElementById("filters");
    var filter = {};
    if (form) {
      new FormData(form).forEach(function (value, name) { if (value) { filter[name] = value; } });
    }
    return filter;
  }

  var verbs = { replay: "Replay", purge: "Purge", approve: "Approve", reject: "Reject" };

  function preview(action, scope, id) {
    var panel = document.getElementById("action-panel");
    var request = { action: action };
    if (scope === "one") {
      request.ids = [id];
    } else if (scope === "selected") {
      request.ids = Array.prototype.map.call(document.querySelectorAll("input.pick:checked"), function (box) { return box.value; });
      if (request.ids.length === 0) {
        panel.innerHTML = '<p class="error">Tick the rows first.</p>';
        return;
      }
    } else {
      request.filter = filterForm();
      request.all = true;
    }
    panel.innerHTML = '<p class="muted">reading the dead queue…</p>';
    post("/api/preview", request).then(function (answer) {
      if (!answer.ok) {
        panel.innerHTML = '<p class="error" id="action-error">' + esc(answer.body.error) + "</p>";
        return;
      }
      var plan = answer.body;
      var rows = plan.items.map(function (item, index) {
        return "<tr><td class=num>" + (index + 1) + '</td><td class="mono">' + esc(item.id) + "</td><td>" + esc(item.type) +
          "</td><td>" + esc(item.who) + "</td><td>" + esc(item.error_class) + "</td><td>" + esc(item.routing_key || "") +
          "</td><td>" + esc(item.note || "") + "</td></tr>";
      }).join("");
      var danger = action === "purge" || action === "reject";
      panel.innerHTML = '<div class="preview" id="preview"><p><b>Dry run:</b> ' + esc(plan.summary) + ". Nothing has changed yet.</p>" +
        "<table><thead><tr><th>#</th><th>event id</th><th>type</th><th>user</th><th>class</th><th>to</th><th>note</th></tr></thead><tbody>" +
        rows + "</tbody></table>" +
        '<p><button id="confirm" class="' + (danger ? "danger" : "primary") + '" data-key="' + esc(plan.key) + '">' +
        verbs[action] + " " + plan.count + "</button> <button id=\"cancel\">Cancel</button></p></div>";
      document.getElementById("cancel").addEventListener("click", function () { panel.innerHTML = ""; });
      var button = document.getElementById("confirm");
      button.addEventListener("click", function () {
        if (button.disabled) { return; }
        button.disabled = true;
        if (danger && !window.confirm(verbs[action] + " " + plan.count + " for good? This cannot be undone.")) {
          button.disabled = false;
          return;
        }
        post("/api/confirm", { key: plan.key }).then(function (done) {
          if (!done.ok) {
            panel.innerHTML = '<p class="error" id="action-error">' + esc(done.body.error) + "</p>";
          } else {
            panel.innerHTML = '<p class="ok" id="action-result">' + esc(done.body.message) + " (by " + esc(done.body.by) + "; " +
              esc(done.body.recorded) + ")</p>";
          }
          return refreshLetters();
        });
      });
    });
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-action]");
    if (button) {
      event.preventDefault();
      preview(button.dataset.action, button.dataset.scope, button.dataset.id);
      return;
    }
    var all = event.target.closest("input.pick-all");
    if (all) {
      var table = all.closest("table");
      table.querySelectorAll("input.pick").forEach(function (box) { box.checked = all.checked; });
    }
  });
})();
