/**
 * Percentiles, ratios, Markdown tables and a dependency-free SVG chart for the benchmark results.
 */

export interface Summary {
  n: number;
  mean: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

/** Nearest-rank percentile of an ascending array (the value at rank ceil(p/100 * n)). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export function summarize(samples: readonly number[]): Summary {
  const sorted = [...samples].sort((a, b) => a - b);
  const mean = sorted.reduce((a, b) => a + b, 0) / (sorted.length || 1);
  return { n: sorted.length, mean, p50: percentile(sorted, 50), p95: percentile(sorted, 95), p99: percentile(sorted, 99), max: sorted.at(-1) ?? NaN };
}

/**
 * True once the nearest-rank p-th percentile of `planned` samples must exceed `limit` whatever the
 * remaining samples are: more than planned - rank samples are already above it.
 */
export function percentileSurelyAbove(samples: readonly number[], planned: number, p: number, limit: number): boolean {
  const rank = Math.max(1, Math.ceil((p / 100) * planned));
  return samples.filter((s) => s > limit).length > planned - rank;
}

export function median(xs: readonly number[]): number {
  return percentile([...xs].sort((a, b) => a - b), 50);
}

/** `value / baseline`, NaN when the baseline is missing or zero. */
export function ratio(value: number, baseline: number | undefined): number {
  return baseline === undefined || baseline === 0 || !Number.isFinite(baseline) ? NaN : value / baseline;
}

export const fmtMs = (ms: number): string => (!Number.isFinite(ms) ? '–' : ms < 1 ? ms.toFixed(3) : ms < 100 ? ms.toFixed(2) : ms.toFixed(0));
export const fmtRatio = (r: number): string => (Number.isFinite(r) ? `${r.toFixed(2)}×` : '–');
export const fmtBytes = (b: number): string => (!Number.isFinite(b) ? '–' : b >= 1 << 20 ? `${(b / (1 << 20)).toFixed(1)} MiB` : `${(b / 1024).toFixed(1)} KiB`);
export const passFail = (ok: boolean): string => (ok ? 'PASS' : 'FAIL');

export type Align = 'l' | 'r';

/** A GitHub-flavoured Markdown table; `align` defaults to left for the first column, right for the rest. */
export function markdownTable(headers: readonly string[], rows: readonly (readonly string[])[], align?: readonly Align[]): string {
  const a = align ?? headers.map((_, i) => (i === 0 ? 'l' : 'r'));
  const esc = (cell: string) => cell.replaceAll('|', '\\|');
  return [
    `| ${headers.map(esc).join(' | ')} |`,
    `|${a.map((x) => (x === 'r' ? '--:' : ':--')).join('|')}|`,
    ...rows.map((row) => `| ${row.map(esc).join(' | ')} |`),
  ].join('\n');
}

export interface ChartGroup {
  /** e.g. "getById 100k" */
  label: string;
  bars: { series: string; p50: number; p95: number; p99: number }[];
}

const PALETTE = ['#2563eb', '#16a34a', '#f59e0b', '#dc2626', '#7c3aed', '#0891b2'];
const escXml = (s: string): string => s.replace(/[<>&"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c]!);

/**
 * Grouped bar chart: one group per query (and size), one bar per driver. Each bar is drawn in three
 * nested layers (p99 lightest, p95, p50 darkest) on a log scale, so sub-millisecond and 100 ms queries
 * share one readable axis. A dashed line marks `limitMs`.
 */
export function svgChart(title: string, groups: readonly ChartGroup[], limitMs?: number): string {
  const series = [...new Set(groups.flatMap((g) => g.bars.map((b) => b.series)))];
  const barW = 14, gap = 4, groupGap = 26, left = 64, top = 64, plotH = 300, bottom = 120, right = 80;
  const groupW = series.length * (barW + gap) - gap;
  const width = Math.max(640, left + groups.length * (groupW + groupGap) + right);
  const height = top + plotH + bottom;
  const values = groups.flatMap((g) => g.bars.flatMap((b) => [b.p50, b.p99])).filter((v) => v > 0 && Number.isFinite(v));
  if (limitMs) values.push(limitMs);
  const lo = Math.pow(10, Math.floor(Math.log10(Math.min(...values, 1))));
  const hi = Math.pow(10, Math.ceil(Math.log10(Math.max(...values, 1))));
  const y = (v: number): number => top + plotH - (Math.log10(Math.max(v, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo)) * plotH;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="${left}" y="20" font-size="14" font-weight="bold">${escXml(title)}</text>`,
  ];
  for (let d = lo; d <= hi; d *= 10) {
    out.push(`<line x1="${left}" x2="${width - 10}" y1="${y(d)}" y2="${y(d)}" stroke="#e5e7eb"/>`, `<text x="${left - 6}" y="${y(d) + 4}" text-anchor="end">${d >= 1 ? d : d.toPrecision(1)} ms</text>`);
  }
  if (limitMs) out.push(`<line x1="${left}" x2="${width - 10}" y1="${y(limitMs)}" y2="${y(limitMs)}" stroke="#dc2626" stroke-dasharray="6 4"/>`, `<text x="${left + 4}" y="${y(limitMs) - 4}" fill="#dc2626">${limitMs} ms budget (p99)</text>`);
  groups.forEach((g, gi) => {
    const x0 = left + 10 + gi * (groupW + groupGap);
    g.bars.forEach((b) => {
      const x = x0 + series.indexOf(b.series) * (barW + gap);
      const color = PALETTE[series.indexOf(b.series) % PALETTE.length]!;
      for (const [v, opacity, name] of [[b.p99, 0.3, 'p99'], [b.p95, 0.55, 'p95'], [b.p50, 1, 'p50']] as const) {
        if (!(v > 0)) continue;
        out.push(`<rect x="${x}" y="${y(v).toFixed(1)}" width="${barW}" height="${(top + plotH - y(v)).toFixed(1)}" fill="${color}" fill-opacity="${opacity}"><title>${escXml(`${g.label} ${b.series} ${name} ${fmtMs(v)} ms`)}</title></rect>`);
      }
    });
    const cx = x0 + groupW / 2;
    out.push(`<text transform="translate(${cx},${top + plotH + 10}) rotate(40)" text-anchor="start">${escXml(g.label)}</text>`);
  });
  series.forEach((s, i) => {
    const x = left + i * 210;
    out.push(`<rect x="${x}" y="28" width="10" height="10" fill="${PALETTE[i % PALETTE.length]}"/>`, `<text x="${x + 14}" y="37">${escXml(s)}</text>`);
  });
  out.push(`<text x="${left}" y="54" fill="#555">each bar: p50 (solid), p95, p99 (lightest); log scale</text>`, '</svg>');
  return out.join('\n');
}
