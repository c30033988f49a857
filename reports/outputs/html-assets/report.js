// @ts-check
/**
 * report.html's own script: reads the chart JSON that html.ts writes into the page and
 * draws each chart with uPlot into its `[data-chart]` container, redrawing on resize.
 *
 * Why plain JavaScript checked by TypeScript (JSDoc types, tsconfig.browser.json with
 * the DOM lib) rather than a .ts file: the file that is type-checked and linted is the
 * file that ships, byte for byte. html.ts reads it at render time and inlines it the way
 * it inlines uPlot, so there is no transpile step at render time (TypeScript is only a
 * dev dependency) and the build only copies this folder into dist/.
 *
 * It runs as a classic script after uPlot's, whose `uPlot` global it uses (typed from
 * the uplot package); its own top-level names are globals of a page that has no other
 * script. It must not contain the text `</` + `script`; html.ts escapes it anyway.
 */

/** @typedef {import('../chart-data.js').ChartData} ChartData */
/** @typedef {import('../chart-data.js').ChartMarker} ChartMarker */
/** @typedef {import('../chart-data.js').ChartSpec} ChartSpec */
/** @typedef {import('../chart-data.js').ChartUnit} ChartUnit */

/** @type {Readonly<Record<string, string>>} */
const markerColours = { phase: '#6b7280', fault: '#dc2626' };

/** @param {number} digits */
const nf = (digits) => new Intl.NumberFormat('en-US', { maximumFractionDigits: digits });
const n0 = nf(0);
const n1 = nf(1);
const n2 = nf(2);
const n3 = nf(3);

/** @param {number} v */
function ms(v) {
  const a = Math.abs(v);
  return `${(a < 1 ? n3 : a < 10 ? n2 : a < 100 ? n1 : n0).format(v)} ms`;
}

/** How each unit reads on an axis and in a legend. @type {Record<ChartUnit, (v: number) => string>} */
const formats = {
  count: (v) => n0.format(v),
  rate: (v) => `${(Math.abs(v) < 10 ? n1 : n0).format(v)}/s`,
  ms,
  ratio: (v) => `${n2.format(v)}\u00d7`,
  percent: (v) => `${n0.format(v)}%`,
};

/**
 * Every y axis starts at 0 and leaves a fifth of headroom; an empty chart shows 0..1.
 * @type {uPlot.Range.Function}
 */
const yRange = (_u, _min, max) => {
  // uPlot passes null for a scale with no data, whatever its types say.
  if (max == null || !Number.isFinite(max) || max <= 0) return [0, 1];
  return [0, max * 1.2];
};

// Marker labels sit in a band above the plot, in up to MARKER_ROWS staggered rows,
// so they never hide data; vertical dashed lines cross the plot at each instant.
const MARKER_ROWS = 3;
const MARKER_ROW_PX = 13;

/**
 * Draws every marker on `u`: a dashed line across the plot and its label above it.
 * @param {uPlot} u
 * @param {ChartMarker[]} markers
 */
function drawMarkers(u, markers) {
  const ctx = u.ctx;
  const dpr = uPlot.pxRatio;
  const left = u.bbox.left;
  const right = left + u.bbox.width;
  const top = u.bbox.top;
  const bottom = top + u.bbox.height;
  const rowH = MARKER_ROW_PX * dpr;
  /** Where the last label in each row ends, in canvas pixels. @type {number[]} */
  const rowEnds = [];
  ctx.save();
  ctx.font = `${11 * dpr}px system-ui, sans-serif`;
  ctx.textAlign = 'left';
  ctx.textBaseline = 'bottom';
  for (const m of markers) {
    const x = Math.round(u.valToPos(m.t, 'x', true)) + 0.5;
    if (!Number.isFinite(x) || x < left - 1 || x > right + 1) continue;
    const colour = markerColours[m.kind] || '#6b7280';
    const w = ctx.measureText(m.label).width;
    // Text starts at the line, or ends at it when it would run off the right edge.
    const x0 = x + 3 * dpr + w > right + 8 * dpr ? x - 3 * dpr - w : x + 3 * dpr;
    let row = 0;
    while (row < MARKER_ROWS - 1 && (rowEnds[row] ?? Number.NEGATIVE_INFINITY) > x0) row++;
    rowEnds[row] = Math.max(rowEnds[row] ?? Number.NEGATIVE_INFINITY, x0 + w + 6 * dpr);
    const y = top - 2 * dpr - row * rowH;
    ctx.strokeStyle = colour;
    ctx.lineWidth = dpr;
    ctx.setLineDash([4 * dpr, 3 * dpr]);
    ctx.beginPath();
    ctx.moveTo(x, y - rowH + 2 * dpr);
    ctx.lineTo(x, bottom);
    ctx.stroke();
    ctx.fillStyle = colour;
    ctx.fillText(m.label, x0, y);
  }
  ctx.restore();
}

/**
 * @param {ChartMarker[]} markers
 * @returns {uPlot.Plugin}
 */
function markerPlugin(markers) {
  return { hooks: { draw: [(u) => drawMarkers(u, markers)] } };
}

/**
 * The x axis: percentile ticks from the spec, or seconds since the start.
 * @param {ChartSpec} spec
 * @returns {uPlot.Axis}
 */
function xAxis(spec) {
  const axis = { stroke: '#374151', grid: { stroke: '#eef0f3' }, ticks: { stroke: '#d1d5db' } };
  const ticks = spec.xTicks;
  if (ticks) {
    return {
      ...axis,
      splits: () => ticks.map((t) => t.x),
      values: () => ticks.map((t) => t.label),
      label: 'percentile',
    };
  }
  return {
    ...axis,
    values: (_u, splits) => splits.map((v) => `${n1.format(v)} s`),
    label: 'seconds since start',
  };
}

/**
 * The y axes, the first on the left with a grid, and each one's scale.
 * @param {ChartSpec} spec
 * @returns {{ axes: uPlot.Axis[], scales: uPlot.Scales }}
 */
function yAxes(spec) {
  /** @type {uPlot.Scales} */
  const scales = {};
  const axes = spec.yAxes.map((a, i) => {
    const fmt = formats[a.unit];
    scales[a.scale] = { range: yRange };
    /** @type {uPlot.Axis} */
    const axis = {
      scale: a.scale,
      side: i === 0 ? 3 : 1,
      label: a.label,
      size: 70,
      stroke: '#374151',
      grid: { show: i === 0, stroke: '#eef0f3' },
      ticks: { stroke: '#d1d5db' },
      // uPlot passes null for splits it leaves blank.
      values: (_u, splits) => splits.map((v) => (v == null ? '' : fmt(v))),
    };
    return axis;
  });
  return { axes, scales };
}

/**
 * The x series (its legend shows the spec's label for the point) and one per line.
 * @param {ChartSpec} spec
 * @returns {uPlot.Series[]}
 */
function series(spec) {
  /** @type {Partial<Record<string, ChartUnit>>} */
  const unitOf = {};
  for (const a of spec.yAxes) unitOf[a.scale] = a.unit;
  /** @type {uPlot.Series[]} */
  const all = [
    {
      label: spec.xTicks ? 'percentile' : 'time',
      value: (_u, _v, _si, idx) => (idx == null ? '' : spec.xLabels[idx] || ''),
    },
  ];
  for (const s of spec.series) {
    const fmt = formats[unitOf[s.scale] ?? 'count'];
    all.push({
      label: s.label,
      scale: s.scale,
      stroke: s.color,
      width: 2,
      dash: s.dash,
      spanGaps: false,
      // uPlot passes null for a gap, whatever its types say.
      value: (_u, v) => (v == null ? '\u2013' : fmt(v)),
    });
  }
  return all;
}

/**
 * uPlot's options for one chart.
 * @param {ChartSpec} spec
 * @param {number} width
 * @param {ChartMarker[]} markers
 * @returns {uPlot.Options}
 */
function options(spec, width, markers) {
  const y = yAxes(spec);
  return {
    width,
    height: 280,
    scales: { x: { time: false, range: () => spec.xRange }, ...y.scales },
    axes: [xAxis(spec), ...y.axes],
    series: series(spec),
    padding: [spec.markers ? MARKER_ROWS * MARKER_ROW_PX + 6 : 12, null, null, null],
    cursor: { drag: { x: false, y: false } },
    plugins: spec.markers ? [markerPlugin(markers)] : [],
  };
}

/**
 * Draws `spec` into `box` and keeps it as wide as the box; a failure is shown in the box.
 * @param {ChartSpec} spec
 * @param {HTMLElement} box
 * @param {ChartMarker[]} markers
 */
function draw(spec, box, markers) {
  try {
    /** @type {uPlot.AlignedData} */
    const aligned = [spec.x, ...spec.series.map((s) => s.values)];
    const plot = new uPlot(options(spec, Math.max(280, box.clientWidth), markers), aligned, box);
    if (typeof ResizeObserver === 'function') {
      let last = box.clientWidth;
      new ResizeObserver(() => {
        const w = Math.max(280, box.clientWidth);
        if (w !== last) {
          last = w;
          plot.setSize({ width: w, height: 280 });
        }
      }).observe(box);
    }
  } catch (err) {
    box.textContent = `chart failed: ${err}`;
    box.className += ' error';
    console.error(`pushbench: chart ${spec.name} failed`, err);
  }
}

/** Draws every chart of the page's chart data into its `[data-chart]` container. */
function drawCharts() {
  const json = document.getElementById('pushbench-charts')?.textContent;
  if (!json) throw new Error('pushbench: the page has no chart data (#pushbench-charts)');
  /** @type {ChartData} */
  const data = JSON.parse(json);
  for (const spec of data.charts) {
    const box = document.querySelector(`[data-chart="${spec.name}"]`);
    if (box instanceof HTMLElement) draw(spec, box, data.markers);
  }
}

drawCharts();
