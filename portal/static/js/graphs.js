// Usage graphs (templates/usage/_graphs.html), drawn with uPlot (static/vendor/uplot).
//
// Each [data-graphs] section names its history (JSON: times and one column per metric, at the
// resolution of the range asked for) and a websocket that sends each new sample while the page
// is open. The last hour shows every sample as it comes; a day or a week adds samples into the
// open 5-minute or 1-hour slot, as the node's own history does.
//
// Under the portal's CSP nothing here is inline: uPlot sizes its elements through the CSSOM
// (element.style), which CSP allows, and colours come from CSS (.graph-palette) read back with
// getComputedStyle, so both themes apply.
(function () {
  "use strict";

  var HEIGHT = 150;
  var SPANS = { hour: 3600, day: 86400, week: 604800 };
  var FINAL_CLOSES = [4401, 4404]; // not logged in; no such object (or not theirs)

  // What each kind of object shows: [metric, label] per line, and how its figures read.
  var CHARTS = {
    instance: [
      { key: "cpu", title: "CPU", unit: "core", lines: [["cpu", "CPU"]] },
      { key: "memory", title: "Memory on the host", unit: "bytes", lines: [["memory", "Resident"]] },
      { key: "disk", title: "Disk", unit: "rate", lines: [["disk_read", "Read"], ["disk_write", "Write"]] },
      { key: "net", title: "Network", unit: "rate", lines: [["net_rx", "In"], ["net_tx", "Out"]] },
    ],
    node: [
      { key: "cpu", title: "CPU", unit: "share", lines: [["cpu", "CPU"]] },
      { key: "memory", title: "Memory in use", unit: "bytes", lines: [["memory", "Used"]] },
      { key: "load", title: "Load", unit: "plain", lines: [["load", "1 minute"]] },
      { key: "guests", title: "Guests", unit: "count", lines: [["guests", "Running"]] },
      { key: "disk", title: "Disk", unit: "rate", lines: [["disk_read", "Read"], ["disk_write", "Write"]] },
      { key: "net", title: "Network", unit: "rate", lines: [["net_rx", "In"], ["net_tx", "Out"]] },
    ],
  };

  function bytes(v) {
    var units = ["B", "KiB", "MiB", "GiB", "TiB"];
    var i = 0;
    v = Math.abs(v);
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (v >= 100 || i === 0 ? v.toFixed(0) : v.toFixed(1)) + " " + units[i];
  }

  // How a figure reads, and the least the y axis reaches (so an idle line stays low).
  function unitOf(name, cpus) {
    switch (name) {
      case "core": return { fmt: function (v) { return (100 * v).toFixed(0) + " %"; }, floor: 1 };
      case "share": return { fmt: function (v) { return (100 * v / cpus).toFixed(0) + " %"; }, floor: cpus };
      case "bytes": return { fmt: bytes, floor: 0 };
      case "rate": return { fmt: function (v) { return bytes(v) + "/s"; }, floor: 1024 };
      case "count": return { fmt: function (v) { return v.toFixed(0); }, floor: 1, whole: true };
      default: return { fmt: function (v) { return v.toFixed(2); }, floor: 1 };
    }
  }

  function palette(section) {
    // Computed colours resolve light-dark() and the theme; a canvas needs plain ones.
    var box = document.createElement("span");
    box.className = "graph-palette";
    box.setAttribute("aria-hidden", "true");
    var names = ["line-1", "line-2", "axis", "grid"];
    names.forEach(function (n) {
      var i = document.createElement("i");
      i.className = "graph-palette__" + n;
      box.appendChild(i);
    });
    section.appendChild(box);
    var found = {};
    names.forEach(function (n, index) { found[n] = getComputedStyle(box.children[index]).color; });
    box.remove();
    return found;
  }

  function translucent(color, alpha) {
    var m = /rgba?\(([^)]+)\)/.exec(color);
    if (!m) return color;
    var parts = m[1].split(",").slice(0, 3).join(",");
    return "rgba(" + parts + "," + alpha + ")";
  }

  function Graphs(section) {
    this.section = section;
    this.kind = section.dataset.kind;
    this.cpus = parseInt(section.dataset.cpus, 10) || 1;
    this.grid = section.querySelector("[data-graphs-grid]");
    this.stateEl = section.querySelector("[data-graphs-state]");
    this.range = "hour";
    this.data = null; // [times, column per metric...] in this.metrics order
    this.metrics = [];
    this.counts = []; // samples in the open slot, per metric (day and week)
    this.charts = [];
    this.pending = []; // samples that came before the history
    this.livePoints = 0;
    this.socket = null;
    this.retry = 0;
    this.liveState = "";
    this.build();
    this.load("hour");
    this.connect();
    this.watchSize();
    this.watchTheme();
    this.section.addEventListener("click", this.onClick.bind(this));
  }

  Graphs.prototype.build = function () {
    var self = this;
    this.specs = CHARTS[this.kind] || [];
    this.metrics = [];
    this.specs.forEach(function (spec) {
      spec.lines.forEach(function (line) {
        if (self.metrics.indexOf(line[0]) < 0) self.metrics.push(line[0]);
      });
      var figure = document.createElement("figure");
      figure.className = "graph";
      figure.dataset.chart = spec.key;
      var caption = document.createElement("figcaption");
      var title = document.createElement("span");
      title.className = "graph__title";
      title.textContent = spec.title;
      var now = document.createElement("output");
      now.className = "graph__now";
      now.dataset.now = "";
      now.textContent = "–";
      caption.append(title, " ", now);
      var plot = document.createElement("div");
      plot.className = "graph__plot";
      figure.append(caption, plot);
      self.grid.appendChild(figure);
      spec.figure = figure;
      spec.plot = plot;
      spec.now = now;
    });
  };

  Graphs.prototype.onClick = function (e) {
    var button = e.target.closest("[data-range]");
    if (!button || !this.section.contains(button)) return;
    this.section.querySelectorAll("[data-range]").forEach(function (b) {
      b.setAttribute("aria-pressed", String(b === button));
    });
    this.load(button.dataset.range);
  };

  Graphs.prototype.setState = function (text) {
    this.stateEl.textContent = text;
  };

  Graphs.prototype.load = function (range) {
    var self = this;
    var started = performance.now();
    this.range = range;
    this.section.dataset.loading = range;
    this.setState("Loading…");
    fetch(this.section.dataset.history + "?range=" + encodeURIComponent(range), {
      credentials: "same-origin", headers: { Accept: "application/json" },
    }).then(function (response) {
      return response.json().then(function (body) {
        if (!response.ok) throw new Error(body && body.error ? body.error : "HTTP " + response.status);
        return body;
      });
    }).then(function (history) {
      if (self.range !== range) return; // another range was asked for meanwhile
      var fetched = performance.now();
      self.data = [history.times.slice()].concat(self.metrics.map(function (m) {
        return (history.metrics[m] || []).slice();
      }));
      self.counts = self.metrics.map(function () { return 1; });
      self.step = history.step;
      var queued = self.pending;
      self.pending = [];
      queued.forEach(function (s) { self.addSample(s, false); });
      self.draw();
      var drawn = performance.now();
      // For people: when the figures were read. For the browser tests: how long it took.
      self.section.dataset.range = range;
      self.section.dataset.points = String(self.data[0].length);
      self.section.dataset.fetchMs = (fetched - started).toFixed(1);
      self.section.dataset.drawMs = (drawn - fetched).toFixed(1);
      self.section.dataset.readyAt = drawn.toFixed(1);
      delete self.section.dataset.loading;
      self.setState(self.liveState);
    }).catch(function (error) {
      if (self.range !== range) return;
      delete self.section.dataset.loading;
      self.setState("No graphs: " + error.message);
    });
  };

  Graphs.prototype.draw = function () {
    var self = this;
    var colors = palette(this.section);
    this.charts.forEach(function (chart) { chart.destroy(); });
    this.charts = [];
    var width = Math.max(this.specs.length ? this.specs[0].plot.clientWidth : 300, 200);
    this.specs.forEach(function (spec) {
      var unit = unitOf(spec.unit, self.cpus);
      var columns = spec.lines.map(function (line) { return self.data[1 + self.metrics.indexOf(line[0])]; });
      var series = [{}].concat(spec.lines.map(function (line, i) {
        var stroke = i === 0 ? colors["line-1"] : colors["line-2"];
        return {
          label: line[1], stroke: stroke, width: 1.5,
          fill: i === 0 ? translucent(stroke, 0.12) : undefined,
          value: function (u, v) { return v == null ? "–" : unit.fmt(v); },
        };
      }));
      var axis = { stroke: colors.axis, grid: { stroke: colors.grid, width: 1 },
                   ticks: { stroke: colors.grid, width: 1 } };
      var chart = new uPlot({
        width: width, height: HEIGHT, series: series,
        scales: { y: { range: function (u, min, max) { return [0, Math.max(unit.floor, (max || 0) * 1.1)]; } } },
        axes: [axis, Object.assign({}, axis, {
          size: 70, values: function (u, ticks) { return ticks.map(unit.fmt); },
          // Whole things (guests) get whole ticks only.
          incrs: unit.whole ? [1, 2, 5, 10, 20, 50, 100, 200, 500] : undefined,
        })],
        legend: { live: true },
        cursor: { drag: { x: false, y: false } },
      }, [self.data[0]].concat(columns), spec.plot);
      spec.chart = chart;
      spec.format = unit.fmt;
      self.charts.push(chart);
      self.showNow(spec);
    });
  };

  Graphs.prototype.showNow = function (spec) {
    var self = this;
    var parts = spec.lines.map(function (line) {
      var column = self.data[1 + self.metrics.indexOf(line[0])];
      for (var i = column.length - 1; i >= 0; i--) {
        if (column[i] != null) return (spec.lines.length > 1 ? line[1] + " " : "") + spec.format(column[i]);
      }
      return null;
    }).filter(function (p) { return p !== null; });
    spec.now.textContent = parts.length ? parts.join(" · ") : "–";
    var first = self.data[1 + self.metrics.indexOf(spec.lines[0][0])];
    spec.figure.dataset.last = first.length && first[first.length - 1] != null
      ? String(first[first.length - 1]) : "";
  };

  // A sample from the websocket: {t, values}. In the hour it is a point of its own; in a day
  // or a week it goes into the open slot (a new one when its time has come).
  Graphs.prototype.addSample = function (sample, redraw) {
    var xs = this.data[0];
    var last = xs.length - 1;
    var t = sample.t;
    if (this.range === "hour") {
      if (last >= 0 && t <= xs[last]) return;
      this.push(t, sample.values);
    } else {
      var slot = Math.floor(t / this.step) * this.step;
      if (last >= 0 && xs[last] === slot) {
        var self = this;
        this.metrics.forEach(function (m, i) {
          var v = sample.values[m];
          if (v == null) return;
          var column = self.data[1 + i];
          var old = column[last];
          column[last] = old == null ? v : old + (v - old) / (self.counts[i] + 1);
          self.counts[i] += 1;
        });
      } else if (last < 0 || slot > xs[last]) {
        this.push(slot, sample.values);
        this.counts = this.metrics.map(function () { return 1; });
      }
    }
    // Keep the range: drop what fell off its start.
    var start = xs[xs.length - 1] - SPANS[this.range];
    while (xs.length && xs[0] < start) {
      this.data.forEach(function (column) { column.shift(); });
    }
    if (redraw) this.update();
  };

  Graphs.prototype.push = function (x, values) {
    this.data[0].push(x);
    this.metrics.forEach(function (m, i) {
      var v = values[m];
      this.data[1 + i].push(v == null ? null : v);
    }, this);
  };

  Graphs.prototype.update = function () {
    var self = this;
    this.specs.forEach(function (spec) {
      if (!spec.chart) return;
      var columns = spec.lines.map(function (line) { return self.data[1 + self.metrics.indexOf(line[0])]; });
      spec.chart.setData([self.data[0]].concat(columns));
      self.showNow(spec);
    });
    this.section.dataset.points = String(this.data[0].length);
  };

  Graphs.prototype.connect = function () {
    var self = this;
    var url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + this.section.dataset.live;
    var socket = new WebSocket(url);
    this.socket = socket;
    socket.onmessage = function (e) {
      var message;
      try { message = JSON.parse(e.data); } catch (err) { return; }
      if (message.type === "state") {
        self.liveState = message.live ? "Live" : "Not live: " + message.reason;
        if (!self.section.dataset.loading) self.setState(self.liveState);
      } else if (message.type === "sample") {
        self.retry = 0;
        self.livePoints += 1;
        self.section.dataset.livePoints = String(self.livePoints);
        self.section.dataset.lastSample = String(message.t);
        // How long after it was taken the sample showed here (one clock: the browser's and
        // the node's, on the machines where the tests run).
        self.section.dataset.lateness = (Date.now() / 1000 - message.t).toFixed(3);
        if (self.data === null || self.section.dataset.loading) self.pending.push(message);
        else self.addSample(message, true);
      }
    };
    socket.onclose = function (e) {
      if (self.socket !== socket) return;
      if (FINAL_CLOSES.indexOf(e.code) >= 0) {
        self.liveState = "Not live";
        self.setState(self.liveState);
        return;
      }
      var delay = Math.min(1000 * Math.pow(2, self.retry++), 15000);
      setTimeout(function () { self.connect(); }, delay);
    };
  };

  Graphs.prototype.watchSize = function () {
    var self = this;
    if (!("ResizeObserver" in window)) return;
    var width = this.grid.clientWidth;
    new ResizeObserver(function () {
      if (self.grid.clientWidth === width) return;
      width = self.grid.clientWidth;
      self.specs.forEach(function (spec) {
        if (spec.chart) spec.chart.setSize({ width: Math.max(spec.plot.clientWidth, 200), height: HEIGHT });
      });
    }).observe(this.grid);
  };

  Graphs.prototype.watchTheme = function () {
    // The colours are baked into each chart: draw again when the theme changes.
    var self = this;
    var redraw = function () { if (self.data) self.draw(); };
    new MutationObserver(redraw).observe(document.documentElement, { attributes: true, attributeFilter: ["data-theme"] });
    window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", redraw);
  };

  // Graphs in a tab not shown yet (the instance page's) start when it is shown: nothing is
  // fetched or followed for a tab nobody looks at.
  function start() {
    if (typeof uPlot === "undefined") return;
    document.querySelectorAll("[data-graphs]").forEach(function (section) {
      if (!section.graphs && !section.closest("[hidden]")) section.graphs = new Graphs(section);
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
  document.addEventListener("sfcloud:tabshown", start);
})();
