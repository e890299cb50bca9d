"use strict";
/* A small SVG line chart over a time axis. Written here rather than fetched because the status
   page must work offline, from loopback, with nothing but the files tfms ships. */

const SVG_NS = "http://www.w3.org/2000/svg";

function svgNode(name, attrs, parent) {
  const node = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  if (parent) parent.appendChild(node);
  return node;
}

/* The smallest 1, 2 or 5 times a power of ten at or above `value`: readable axis maxima. */
function niceCeiling(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const m of [1, 2, 5, 10]) if (m * power >= value) return m * power;
  return 10 * power;
}

function clockLabel(seconds) {
  return new Date(seconds * 1000).toLocaleTimeString([], { hour12: false });
}

/* The path of one series; a null `y` breaks the line, `step` holds each value until the next. */
function pathOf(points, sx, sy, step, extendTo) {
  let d = "";
  let previous = null;
  for (const p of points) {
    if (p.y === null || p.y === undefined) { previous = null; continue; }
    const x = sx(p.x), y = sy(p.y);
    if (previous === null) d += `M${x.toFixed(1)},${y.toFixed(1)}`;
    else if (step) d += `H${x.toFixed(1)}V${y.toFixed(1)}`;
    else d += `L${x.toFixed(1)},${y.toFixed(1)}`;
    previous = p;
  }
  if (step && previous !== null && extendTo !== undefined) d += `H${sx(extendTo).toFixed(1)}`;
  return d;
}

/**
 * An <svg class="chart ..."> of `series`: [{label, points: [{x, y, title}], step, markers}].
 * `opts`: width, height, xMin, xMax, yMax (default: a nice ceiling of the data), unit,
 * compact (no axes or labels: a sparkline), className, extend (steps run on to xMax).
 * Every marker is a <circle class="point">; `data-points` counts them.
 */
function drawChart(series, opts) {
  const width = opts.width || 640, height = opts.height || 200;
  const m = opts.compact ? { l: 2, r: 2, t: 2, b: 2 } : { l: 48, r: 12, t: 10, b: 22 };
  const all = series.flatMap((s) => s.points);
  const xs = all.map((p) => p.x);
  const ys = all.map((p) => p.y).filter((y) => y !== null && y !== undefined);
  const xMin = opts.xMin ?? Math.min(...xs, 0);
  let xMax = opts.xMax ?? Math.max(...xs, 1);
  if (xMax <= xMin) xMax = xMin + 1;
  const yMax = opts.yMax ?? niceCeiling(Math.max(...ys, 0));
  const sx = (x) => m.l + ((x - xMin) / (xMax - xMin)) * (width - m.l - m.r);
  const sy = (y) => height - m.b - (Math.min(y, yMax) / yMax) * (height - m.t - m.b);

  const svg = svgNode("svg", {
    class: `chart ${opts.className || ""}`.trim(), width, height, viewBox: `0 0 ${width} ${height}`,
    role: "img", "aria-label": series.map((s) => s.label).join(", "),
  });
  if (!opts.compact) {
    for (let i = 0; i <= 4; i++) {
      const value = (yMax * i) / 4, y = sy(value);
      svgNode("line", { class: i ? "grid" : "axis", x1: m.l, x2: width - m.r, y1: y, y2: y }, svg);
      const label = svgNode("text", { x: m.l - 4, y: y + 4, "text-anchor": "end" }, svg);
      label.textContent = `${+value.toFixed(2)}${opts.unit || ""}`;
    }
    for (let i = 0; i <= 3; i++) {
      const t = xMin + ((xMax - xMin) * i) / 3;
      const label = svgNode("text", {
        x: sx(t), y: height - 6, "text-anchor": i === 0 ? "start" : i === 3 ? "end" : "middle",
      }, svg);
      label.textContent = clockLabel(t);
    }
    svgNode("line", { class: "axis", x1: m.l, x2: m.l, y1: m.t, y2: height - m.b }, svg);
  }
  let count = 0;
  series.forEach((s, i) => {
    const d = pathOf(s.points, sx, sy, s.step, opts.extend ? xMax : undefined);
    if (d) svgNode("path", { class: `line s${i}`, d, "data-series": s.label }, svg);
    if (!s.markers) return;
    for (const p of s.points) {
      if (p.y === null || p.y === undefined) continue;
      const dot = svgNode("circle", {
        class: `point s${i}`, cx: sx(p.x).toFixed(1), cy: sy(p.y).toFixed(1), r: 3.5,
        "data-x": p.x, "data-y": p.y, "data-series": s.label,
      }, svg);
      svgNode("title", {}, dot).textContent = p.title || `${clockLabel(p.x)}: ${p.y}${opts.unit || ""}`;
      count++;
    }
  });
  svg.setAttribute("data-points", String(count));
  return svg;
}

function legendOf(series) {
  const legend = document.createElement("div");
  legend.className = "legend";
  series.forEach((s, i) => {
    const item = document.createElement("span");
    const swatch = document.createElement("i");
    swatch.className = `s${i}`;
    item.append(swatch, s.label);
    legend.appendChild(item);
  });
  return legend;
}
