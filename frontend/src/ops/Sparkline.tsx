/** A tiny inline SVG line chart (no chart library): one series, scaled to its own range. */
import type { Series } from "./prometheus";

export function sparkPath(points: [number, number][], width: number, height: number): string {
  if (points.length === 0) return "";
  const xs = points.map((p) => p[0]);
  const ys = points.map((p) => p[1]);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  const [y0, y1] = [Math.min(0, ...ys), Math.max(...ys)];
  const sx = (x: number) => (x1 === x0 ? width : ((x - x0) / (x1 - x0)) * width);
  const sy = (y: number) => (y1 === y0 ? height : height - ((y - y0) / (y1 - y0)) * height);
  return points.map(([x, y], i) => `${i ? "L" : "M"}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(" ");
}

export function Sparkline({ series, label, width = 160, height = 32 }: { series?: Series; label: string; width?: number; height?: number }) {
  const d = series ? sparkPath(series.points, width, height) : "";
  return (
    <svg className="sparkline" width={width} height={height} viewBox={`0 0 ${width} ${height}`} role="img" aria-label={label}>
      {d ? <path d={d} fill="none" stroke="currentColor" strokeWidth={1.5} /> : <line x1={0} y1={height - 1} x2={width} y2={height - 1} stroke="currentColor" strokeDasharray="2 3" />}
    </svg>
  );
}
