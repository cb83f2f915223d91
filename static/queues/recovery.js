/* While a check or recovery runs, poll its state (progress in bytes of segment files;
   any worker can answer, the state is a file) and reload the page when it ends, so the
   server renders the report. */
(function () {
  "use strict";
  function bytes(value) {
    var units = ["bytes", "KB", "MB", "GB", "TB"], i = 0;
    while (value >= 1024 && i < units.length - 1) { value /= 1024; i++; }
    return (i ? value.toFixed(1) : value) + " " + units[i];
  }

  document.addEventListener("DOMContentLoaded", function () {
    var panel = document.getElementById("run-panel");
    if (!panel || panel.dataset.state !== "running") return;
    var bar = panel.querySelector("progress"), text = panel.querySelector(".queues-run-progress");
    function poll() {
      fetch(panel.dataset.statusUrl, {credentials: "same-origin", headers: {Accept: "application/json"}})
        .then(function (response) { return response.json(); })
        .then(function (data) {
          var run = data.run;
          if (!run || run.id !== panel.dataset.runId || run.state !== "running") {
            window.location.reload();
            return;
          }
          var p = run.progress || {};
          if (p.total) { bar.max = p.total; bar.value = p.done; } else { bar.removeAttribute("value"); }
          text.textContent = bytes(p.done || 0) + (p.total ? " of " + bytes(p.total) : "") + (p.item ? " — " + p.item : "");
          window.setTimeout(poll, 1000);
        })
        .catch(function () { window.setTimeout(poll, 2000); });
    }
    window.setTimeout(poll, 500);
  });
})();
