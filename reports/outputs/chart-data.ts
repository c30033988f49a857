/**
 * The chart data report.html carries as JSON: what html-charts.ts builds in Node and
 * html-assets/report.js draws in the browser. Types only and no imports, so the browser
 * script type-checks (tsconfig.browser.json) against these same declarations without
 * pulling Node code into its program.
 */

/** How a chart's y values are formatted on its axis and in its legend. */
export type ChartUnit = 'count' | 'rate' | 'ms' | 'ratio' | 'percent';

/** One line of a chart: its values are aligned with the chart's `x`; null draws a gap. */
export interface ChartSeries {
  label: string;
  color: string;
  values: (number | null)[];
  /** Which y axis: `y` (left) or `y2` (right). */
  scale: 'y' | 'y2';
  dash?: number[];
}

/** A chart as the page draws it; `name` is its container's `data-chart` attribute. */
export interface ChartSpec {
  name: string;
  title: string;
  x: number[];
  /** The legend's text for each x. */
  xLabels: string[];
  xRange: [number, number];
  /** Explicit x ticks (the percentile axis); otherwise uPlot chooses, in seconds. */
  xTicks?: { x: number; label: string }[];
  yAxes: { scale: 'y' | 'y2'; unit: ChartUnit; label: string }[];
  series: ChartSeries[];
  /** Draw the report's markers (phase changes, faults) as labelled vertical lines. */
  markers: boolean;
}

/** A labelled instant drawn on timeline charts; `t` is seconds since the run started. */
export interface ChartMarker {
  t: number;
  /** `phase` and `fault` have their own colours; any other kind is drawn grey. */
  kind: string;
  label: string;
}

/** The `pushbench-charts` JSON block of report.html. */
export interface ChartData {
  charts: ChartSpec[];
  markers: ChartMarker[];
}
