// VerifyGuard console: the few behaviours plain HTML lacks. No inline scripts (CSP).
"use strict";

// A rule's mode select saves as soon as it changes (its Save button stays for keyboards
// and for browsers without JavaScript).
document.querySelectorAll("form.autosave select").forEach(function (select) {
  select.addEventListener("change", function () {
    select.form.requestSubmit();
  });
});

// The decisions feed: poll its rows every 2 s and swap them in when a new one arrived.
(function () {
  var body = document.getElementById("feed-rows");
  if (!body) return;
  var status = document.getElementById("feed-status");
  var first = function (root) {
    var row = root.querySelector("tr[data-id]");
    return row ? row.getAttribute("data-id") : null;
  };
  var poll = function () {
    if (document.hidden) return;
    fetch(body.getAttribute("data-poll"), { credentials: "same-origin" })
      .then(function (response) {
        if (response.redirected || !response.ok) throw new Error("feed " + response.status);
        return response.text();
      })
      .then(function (html) {
        var template = document.createElement("template");
        template.innerHTML = "<table><tbody>" + html + "</tbody></table>";
        var rows = template.content.querySelector("tbody");
        if (first(rows) !== first(body)) {
          body.replaceChildren.apply(body, Array.from(rows.children));
          status.textContent = "Updated " + new Date().toLocaleTimeString() + ".";
        }
      })
      .catch(function () {
        status.textContent = "Live updates paused: reload the page.";
      });
  };
  setInterval(poll, 2000);
})();

// The overview: refresh its panels every 30 s, unless focus is in them (a block form being
// filled in); an opened "View as table" stays open.
(function () {
  var panels = document.getElementById("overview-live");
  if (!panels) return;
  var status = document.getElementById("overview-status");
  var poll = function () {
    if (document.hidden || panels.contains(document.activeElement)) return;
    fetch(panels.getAttribute("data-poll"), { credentials: "same-origin" })
      .then(function (response) {
        if (response.redirected || !response.ok) throw new Error("overview " + response.status);
        return response.text();
      })
      .then(function (html) {
        var open = panels.querySelector("details[open]") !== null;
        var template = document.createElement("template");
        template.innerHTML = html;
        panels.replaceChildren.apply(panels, Array.from(template.content.childNodes));
        var details = panels.querySelector("details");
        if (details) details.open = open;
        status.textContent = "Updated " + new Date().toLocaleTimeString() + ".";
      })
      .catch(function () {
        status.textContent = "Live updates paused: reload the page.";
      });
  };
  setInterval(poll, 30000);
})();

// Backtests: while one runs, poll the list's rows every 2 s (and stop once none runs); a
// running backtest's own page reloads every 2 s until it has ended.
(function () {
  var body = document.getElementById("backtest-rows");
  if (body && body.getAttribute("data-running") === "1") {
    var status = document.getElementById("backtest-status");
    var timer = setInterval(function () {
      if (document.hidden) return;
      fetch(body.getAttribute("data-poll"), { credentials: "same-origin" })
        .then(function (response) {
          if (response.redirected || !response.ok) throw new Error("rows " + response.status);
          return response.text();
        })
        .then(function (html) {
          var template = document.createElement("template");
          template.innerHTML = "<table><tbody>" + html + "</tbody></table>";
          var rows = template.content.querySelector("tbody");
          body.replaceChildren.apply(body, Array.from(rows.children));
          status.textContent = "Updated " + new Date().toLocaleTimeString() + ".";
          if (!body.querySelector('tr[data-status="running"]')) clearInterval(timer);
        })
        .catch(function () {
          clearInterval(timer);
          status.textContent = "Live updates paused: reload the page.";
        });
    }, 2000);
  }
  var progress = document.getElementById("backtest-progress");
  if (progress && progress.getAttribute("data-running") === "1") {
    setTimeout(function () {
      window.location.reload();
    }, 2000);
  }
})();
