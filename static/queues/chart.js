/* Horizontal bar charts of the largest topics, drawn as SVG from the chart JSON.
   Names go in through textContent only, so a topic name can never become markup. */
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  var BAR = 18, GAP = 6, LABEL = 180, WIDTH = 520, VALUE = 80;

  function el(name, attrs, text) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attrs).forEach(function (key) { node.setAttribute(key, attrs[key]); });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function human(value, unit) {
    if (unit !== "bytes") return value.toLocaleString("en");
    var units = ["B", "KB", "MB", "GB", "TB"], i = 0;
    while (value >= 1024 && i < units.length - 1) { value /= 1024; i++; }
    return (i ? value.toFixed(1) : value) + " " + units[i];
  }

  function draw(svg, items, unit) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var height = Math.max(items.length, 1) * (BAR + GAP);
    svg.setAttribute("viewBox", "0 0 " + WIDTH + " " + height);
    svg.setAttribute("height", height);
    if (!items.length) {
      svg.appendChild(el("text", {x: 0, y: BAR - 4, "class": "queues-chart-empty"}, "nothing stored yet"));
      return;
    }
    var max = items[0].value, span = WIDTH - LABEL - VALUE;
    items.forEach(function (item, i) {
      var y = i * (BAR + GAP), width = Math.max(1, Math.round(span * item.value / max));
      var label = item.name.length > 26 ? item.name.slice(0, 25) + "…" : item.name;
      var row = el("g", {"class": "queues-chart-row"});
      row.appendChild(el("title", {}, item.name + ": " + human(item.value, unit)));
      row.appendChild(el("text", {x: LABEL - 6, y: y + BAR - 5, "text-anchor": "end"}, label));
      row.appendChild(el("rect", {x: LABEL, y: y, width: width, height: BAR, rx: 2}));
      row.appendChild(el("text", {x: LABEL + width + 4, y: y + BAR - 5}, human(item.value, unit)));
      svg.appendChild(row);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var box = document.getElementById("topic-chart");
    if (!box) return;
    fetch(box.dataset.url, {credentials: "same-origin", headers: {Accept: "application/json"}})
      .then(function (response) { return response.json(); })
      .then(function (data) {
        box.querySelectorAll("svg[data-series]").forEach(function (svg) {
          draw(svg, data[svg.dataset.series] || [], svg.dataset.unit);
        });
        box.classList.add("queues-chart-ready");
      });
  });
})();
