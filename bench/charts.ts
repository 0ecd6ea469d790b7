// SVG charts of the benchmark results, written next to their tables in bench/results/: the
// speedups against the peers (every bench), serving throughput and latency, retrieval recall
// against QPS. Plain SVG written here (bars, points, axes): no dependency, the same bytes for the
// same results, and it renders anywhere an <img> does (GitHub's README included; a white
// background so it stays legible in dark mode). `writeResult` redraws every chart after each
// bench; `node dist/bench/charts.js` (`npm run charts`) redraws them from the saved JSON without
// running a bench. Every mark carries data attributes (data-series, data-value, ...) for tests.
import fs from "node:fs";
import path from "node:path";
import {fileURLToPath, pathToFileURL} from "node:url";
import type {BenchResult, Comparison} from "./common.js";

export interface Chart {
    /** File name under bench/results. */
    file: string;
    svg: string;
}

/** A saved result: what `writeResult` wrote, with `figures` where a bench adds them. */
export type SavedResult = BenchResult & {figures?: Record<string, unknown>};

// ---------------------------------------------------------------------------------------------
// Which numbers each chart shows.

/**
 * The headline ratios of every bench, as "how many times better selfrag does": peer time /
 * selfrag time (or selfrag throughput / peer throughput). `invert` turns a selfrag / peer time
 * ratio around. A comparison missing from a result is left out.
 */
const SPEEDUPS: Record<string, {match: RegExp, label: string, invert?: boolean}[]> = {
    "reflection-kernel": [
        {match: /^TypeScript loop \/ selfrag kernel, rows=1$/, label: "fused kernel vs TypeScript log-softmax (per row)"},
        {match: /^node-llama-cpp overhead \(filtered - plain\) \/ selfrag kernel rows=1$/, label: "fused kernel vs node-llama-cpp extraction (per row)"},
        {match: /^end to end per token: node-llama-cpp filtered \/ selfrag evaluate$/, label: "decode + extraction vs node-llama-cpp (per token)"}
    ],
    "short-form": [
        {match: /^naive \/ selfrag, per question$/, label: "short form vs naive node-llama-cpp (per question)"}
    ],
    "long-form": [
        {match: /^one level: wall time, re-encoding \/ shared-prefix$/, label: "long form, one level vs re-encoding every context"},
        {match: /^deep tree: wall time, re-encoding \/ shared-prefix$/, label: "long form, deep tree vs re-encoding every context"}
    ],
    "serving": [
        {match: /^\(b\) throughput, selfrag \/ static$/, label: "serving (b) arrivals: throughput vs static batching"},
        {match: /^\(e\) one question at a time.*: throughput, selfrag \/ llama-server$/, label: "serving, one at a time: throughput vs llama-server"},
        {match: /^\(e\) \(a\).*: throughput, selfrag \/ llama-server$/, label: "serving (a) 12 mixed: throughput vs llama-server"},
        {match: /^\(e\) \(b\).*: throughput, selfrag \/ llama-server$/, label: "serving (b) arrivals: throughput vs llama-server"},
        {match: /^\(e\) \(c\).*: throughput, selfrag \/ llama-server$/, label: "serving (c) 48 at once: throughput vs llama-server"}
    ],
    "retrieval": [
        {match: /^clustered, calibrated: QPS \/ QPS exact$/, label: "retrieval, clustered, calibrated: QPS vs exact search"},
        {match: /^random, calibrated: QPS \/ QPS exact$/, label: "retrieval, random, calibrated: QPS vs exact search"}
    ],
    "startup": [
        {match: /^naive node-llama-cpp whole process \/ selfrag ask$/, label: "cold start: ask vs naive node-llama-cpp process"},
        {match: /^whole-process selfrag ask \/ C\+\+ program \(same work\)$/, label: "cold start: ask vs a C++ program on llama.h", invert: true}
    ]
};

/** Bench order in the summary chart. */
const BENCH_ORDER = ["reflection-kernel", "short-form", "long-form", "serving", "retrieval", "startup"];

const SYSTEMS = ["selfrag", "static", "llama-server"];
const WORKLOADS: Record<string, string> = {
    single: "one at a time", equal: "(a) 12, equal options", mixed: "(a) 12, mixed options",
    arrivals: "(b) 48 arriving", saturation: "(c) 48 at once"
};

/** The ratios the summary chart shows, bench by bench. */
export function speedupBars(results: readonly SavedResult[]): Bar[] {
    const bars: Bar[] = [];
    const ordered = [...results].sort((a, b) => rank(a.name) - rank(b.name));
    for (const result of ordered) {
        for (const pick of SPEEDUPS[result.name] ?? []) {
            const found: Comparison | undefined = result.comparisons.find((c) => c.unit === "x" && pick.match.test(c.label));
            if (found == null || !(found.value > 0)) continue;
            bars.push({label: pick.label, value: pick.invert ? 1 / found.value : found.value, group: result.name,
                target: found.target == null ? undefined : pick.invert ? 1 / found.target.value : found.target.value});
        }
    }
    return bars;
}

function rank(name: string): number {
    const i = BENCH_ORDER.indexOf(name);
    return i < 0 ? BENCH_ORDER.length : i;
}

/** Serving: requests per second (the measurements are wall time per request) per workload and system. */
export function servingThroughput(result: SavedResult): GroupedData {
    return grouped(result, (id) => {
        const m = result.measurements.find((x) => x.id === id);
        return m == null ? undefined : {value: 1e6 / m.medianUs};
    });
}

/** Serving: p50 latency with the p99 as a whisker, in seconds, from `figures.latencyMs` or else the notes. */
export function servingLatency(result: SavedResult): GroupedData {
    const latencies = new Map<string, {p50: number, p99: number}>();
    const saved = result.figures?.latencyMs as Record<string, {p50: number, p99: number}> | undefined;
    if (saved != null) for (const [id, l] of Object.entries(saved)) latencies.set(id, l);
    else {
        for (const note of result.notes) {
            const m = /^([a-z-]+:[a-z]+): p50 ([\d.]+) ms, p99 ([\d.]+) ms/.exec(note);
            if (m != null) latencies.set(m[1], {p50: Number(m[2]), p99: Number(m[3])});
        }
    }
    return grouped(result, (id) => {
        const l = latencies.get(id);
        return l == null ? undefined : {value: l.p50 / 1000, whisker: l.p99 / 1000};
    });
}

function grouped(result: SavedResult, read: (id: string) => {value: number, whisker?: number} | undefined): GroupedData {
    const ids = result.measurements.map((m) => m.id.split(":")).filter((p) => p.length === 2);
    const workloads = [...new Set(ids.map(([, w]) => w))].sort((a, b) => order(Object.keys(WORKLOADS), a) - order(Object.keys(WORKLOADS), b));
    const systems = [...new Set(ids.map(([s]) => s))].sort((a, b) => order(SYSTEMS, a) - order(SYSTEMS, b));
    return {
        groups: workloads.map((w) => WORKLOADS[w] ?? w),
        series: systems.map((system) => ({name: system, values: workloads.map((w) => read(`${system}:${w}`) ?? null)}))
    };
}

function order(list: readonly string[], item: string): number {
    const i = list.indexOf(item);
    return i < 0 ? list.length : i;
}

/**
 * Retrieval: recall@10 against queries per second, one line per data set and vector type over
 * ef, with exact search and the calibrated choice as their own points.
 */
export function recallQps(result: SavedResult): ScatterSeries[] {
    const recall = (result.figures?.recall ?? {}) as Record<string, number>;
    const qps = (id: string) => {
        const m = result.measurements.find((x) => x.id === id);
        return m == null ? undefined : 1e6 / m.medianUs;
    };
    const lines = new Map<string, ScatterPoint[]>();
    const calibrated: ScatterPoint[] = [];
    for (const [id, value] of Object.entries(recall)) {
        const x = qps(id);
        if (x == null) continue;
        const [dataset, dtype, ef] = id.split(".");
        if (dtype === "auto") calibrated.push({x, y: value, label: `${dataset}, calibrated`});
        else {
            const name = `${dataset}, HNSW ${dtype}`;
            lines.set(name, [...(lines.get(name) ?? []), {x, y: value, label: ef.replace(/^ef/, "ef ")}]);
        }
    }
    const exact = [...new Set(Object.keys(recall).map((id) => id.split(".")[0]))]
        .flatMap((dataset) => {
            const x = qps(`${dataset}.exact`);
            return x == null ? [] : [{x, y: 1, label: `${dataset}, exact`}];
        });
    return [
        ...[...lines.entries()].map(([name, points]) => ({name, points: points.sort((a, b) => b.x - a.x), line: true})),
        {name: "exact search", points: exact, line: false, shape: "square" as const},
        {name: "calibrated (what index build picks)", points: calibrated, line: false, shape: "diamond" as const}
    ].filter((s) => s.points.length > 0);
}

/** Every chart the saved results make. */
export function chartsOf(results: readonly SavedResult[]): Chart[] {
    const charts: Chart[] = [];
    const when = results.map((r) => r.environment.date.slice(0, 10)).sort();
    const machine = results[0] != null ? `${results[0].environment.cpu}, ${results[0].environment.logicalCpus} logical CPUs` : "";
    const bars = speedupBars(results);
    if (bars.length > 0) {
        charts.push({file: "speedups.svg", svg: speedupChart({
            title: "selfrag against its peers (x times faster; left of 1x: slower)",
            subtitle: `npm run bench, medians; ${machine}; ${when[0]}${when.length > 1 && when[when.length - 1] !== when[0] ? ` to ${when[when.length - 1]}` : ""}`,
            bars
        })});
    }
    const serving = results.find((r) => r.name === "serving");
    if (serving != null) {
        const subtitle = `${serving.environment.cpu}, ${serving.environment.logicalCpus} logical CPUs; bench fixture, 12 slots; ${serving.environment.date.slice(0, 10)}`;
        charts.push({file: "serving-throughput.svg", svg: groupedBarChart({
            title: "Serving throughput (requests/s, higher is better)", subtitle, data: servingThroughput(serving), unit: "req/s", digits: 2
        })});
        const latency = servingLatency(serving);
        if (latency.series.some((s) => s.values.some((v) => v != null))) {
            charts.push({file: "serving-latency.svg", svg: groupedBarChart({
                title: "Serving latency (s): bar p50, whisker p99 (lower is better)", subtitle, data: latency, unit: "s", digits: 1
            })});
        }
    }
    const retrieval = results.find((r) => r.name === "retrieval");
    if (retrieval != null) {
        const target = retrieval.comparisons.find((c) => /recall@10/.test(c.label) && c.target != null)?.target?.value;
        charts.push({file: "retrieval-recall-qps.svg", svg: scatterChart({
            title: "Retrieval: recall@10 against queries per second (100k x 384)",
            subtitle: `${retrieval.environment.cpu}, ${retrieval.environment.logicalCpus} logical CPUs; held-out queries; ${retrieval.environment.date.slice(0, 10)}`,
            series: recallQps(retrieval), xLabel: "queries per second (log scale)", yLabel: "recall@10 vs exact", target
        })});
    }
    return charts;
}

/** Reads every bench/results/*.json in `dir` and (re)writes its charts there; returns the files written. */
export function writeCharts(dir: string): string[] {
    const results = fs.readdirSync(dir).filter((f) => f.endsWith(".json")).sort()
        .map((f) => JSON.parse(fs.readFileSync(path.join(dir, f), "utf8")) as SavedResult)
        .filter((r) => typeof r.name === "string" && Array.isArray(r.measurements) && Array.isArray(r.comparisons));
    return chartsOf(results).map((chart) => {
        const file = path.join(dir, chart.file);
        fs.writeFileSync(file, chart.svg);
        return file;
    });
}

// ---------------------------------------------------------------------------------------------
// Drawing.

export interface Bar {
    label: string;
    value: number;
    /** The bench it comes from (rows of one bench share a colour band). */
    group?: string;
    /** The ratio the project states as its target, drawn as a tick. */
    target?: number;
}

export interface GroupedData {
    groups: string[];
    series: {name: string, values: ({value: number, whisker?: number} | null)[]}[];
}

export interface ScatterPoint {
    x: number;
    y: number;
    label?: string;
}

export interface ScatterSeries {
    name: string;
    points: ScatterPoint[];
    line: boolean;
    shape?: "circle" | "square" | "diamond";
}

const FONT = `font-family="system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif"`;
const PALETTE = ["#0969da", "#8c959f", "#bc4c00", "#8250df", "#1a7f37", "#cf222e"];
const INK = "#1f2328";
const MUTED = "#656d76";
const GRID = "#d8dee4";

/** Horizontal bars on a log axis from 1x: right for faster, left for slower; a tick at the stated target. */
export function speedupChart(options: {title: string, subtitle?: string, bars: readonly Bar[]}): string {
    const {bars} = options;
    const labelWidth = Math.round(Math.min(420, 14 + Math.max(...bars.map((b) => textWidth(b.label)))));
    const width = labelWidth + 420;
    const rowHeight = 24;
    const top = 64;
    const plotLeft = labelWidth + 8;
    const plotRight = width - 70;
    const values = bars.flatMap((b) => [b.value, ...(b.target != null ? [b.target] : [])]);
    const lo = Math.min(0.5, Math.min(...values) / 1.3);
    const hi = Math.max(2, Math.max(...values) * 1.3);
    const x = (v: number) => plotLeft + (Math.log(v) - Math.log(lo)) / (Math.log(hi) - Math.log(lo)) * (plotRight - plotLeft);
    const height = top + bars.length * rowHeight + 40;
    const out = header(width, height, options.title, options.subtitle);
    const ticks = logTicks(lo, hi);
    for (const t of ticks) {
        out.push(`<line x1="${r(x(t))}" y1="${top - 6}" x2="${r(x(t))}" y2="${top + bars.length * rowHeight}" stroke="${t === 1 ? MUTED : GRID}" stroke-width="${t === 1 ? 1.5 : 1}"/>`,
            `<text x="${r(x(t))}" y="${top + bars.length * rowHeight + 16}" text-anchor="middle" font-size="11" fill="${MUTED}">${tickLabel(t)}x</text>`);
    }
    let band = 0;
    bars.forEach((bar, i) => {
        if (i > 0 && bar.group !== bars[i - 1].group) band++;
        const y = top + i * rowHeight;
        if (band % 2 === 1) out.push(`<rect x="0" y="${y}" width="${width}" height="${rowHeight}" fill="#f6f8fa"/>`);
        const x0 = x(1);
        const x1 = x(bar.value);
        const faster = bar.value >= 1;
        out.push(`<text x="${labelWidth}" y="${y + 16}" text-anchor="end" font-size="12" fill="${INK}">${xml(bar.label)}</text>`,
            `<rect class="bar" data-label="${xml(bar.label)}" data-group="${xml(bar.group ?? "")}" data-value="${bar.value}" x="${r(Math.min(x0, x1))}" y="${y + 5}" ` +
            `width="${r(Math.max(1, Math.abs(x1 - x0)))}" height="${rowHeight - 10}" fill="${faster ? "#2da44e" : "#bc4c00"}"><title>${xml(bar.label)}: ${fixed(bar.value)}x</title></rect>`,
            `<text x="${r(faster ? x1 + 5 : x0 + 5)}" y="${y + 16}" font-size="11" fill="${INK}">${fixed(bar.value)}x</text>`);
        if (bar.target != null) {
            out.push(`<line class="target" x1="${r(x(bar.target))}" y1="${y + 2}" x2="${r(x(bar.target))}" y2="${y + rowHeight - 2}" stroke="${INK}" stroke-width="2" stroke-dasharray="2 2"><title>target ${fixed(bar.target)}x</title></line>`);
        }
    });
    if (bars.some((b) => b.target != null)) {
        out.push(`<text x="${plotRight}" y="${height - 8}" text-anchor="end" font-size="11" fill="${MUTED}">dashed tick: the target the project states</text>`);
    }
    return footer(out);
}

/** Vertical bars grouped by workload, one colour per series, optional whiskers (p99 over a p50 bar). */
export function groupedBarChart(options: {title: string, subtitle?: string, data: GroupedData, unit: string, digits: number}): string {
    const {data} = options;
    const width = 760;
    const height = 360;
    const top = 86;
    const left = 56;
    const right = width - 16;
    const bottom = height - 44;
    const max = Math.max(...data.series.flatMap((s) => s.values.flatMap((v) => v == null ? [] : [v.value, v.whisker ?? 0])));
    const ticks = niceTicks(0, max);
    const yMax = ticks[ticks.length - 1];
    const y = (v: number) => bottom - v / yMax * (bottom - top);
    const out = header(width, height, options.title, options.subtitle);
    data.series.forEach((s, i) => {
        const lx = left + i * 130;
        out.push(`<rect x="${lx}" y="52" width="11" height="11" fill="${PALETTE[i % PALETTE.length]}"/>`,
            `<text x="${lx + 16}" y="62" font-size="12" fill="${INK}">${xml(s.name)}</text>`);
    });
    for (const t of ticks) {
        out.push(`<line x1="${left}" y1="${r(y(t))}" x2="${right}" y2="${r(y(t))}" stroke="${GRID}"/>`,
            `<text x="${left - 6}" y="${r(y(t) + 4)}" text-anchor="end" font-size="11" fill="${MUTED}">${tickLabel(t)}</text>`);
    }
    const groupWidth = (right - left) / data.groups.length;
    const barWidth = Math.min(34, (groupWidth - 16) / data.series.length);
    data.groups.forEach((group, g) => {
        const gx = left + g * groupWidth + (groupWidth - barWidth * data.series.length) / 2;
        out.push(`<text x="${r(left + (g + 0.5) * groupWidth)}" y="${bottom + 18}" text-anchor="middle" font-size="12" fill="${INK}">${xml(group)}</text>`);
        data.series.forEach((s, i) => {
            const v = s.values[g];
            if (v == null) return;
            const bx = gx + i * barWidth;
            const tip = `${s.name}, ${group}: ${v.value.toFixed(options.digits)} ${options.unit}${v.whisker != null ? ` (p99 ${v.whisker.toFixed(options.digits)})` : ""}`;
            out.push(`<rect class="bar" data-series="${xml(s.name)}" data-group="${xml(group)}" data-value="${v.value}" x="${r(bx + 1)}" y="${r(y(v.value))}" ` +
                `width="${r(barWidth - 2)}" height="${r(bottom - y(v.value))}" fill="${PALETTE[i % PALETTE.length]}"><title>${xml(tip)}</title></rect>`);
            if (v.whisker != null) {
                const cx = r(bx + barWidth / 2);
                out.push(`<path class="whisker" data-series="${xml(s.name)}" data-group="${xml(group)}" data-value="${v.whisker}" ` +
                    `d="M${cx} ${r(y(v.value))}V${r(y(v.whisker))}M${r(bx + barWidth / 2 - 5)} ${r(y(v.whisker))}H${r(bx + barWidth / 2 + 5)}" stroke="${INK}" stroke-width="1.2" fill="none"/>`);
            } else {
                out.push(`<text x="${centre(bx, barWidth)}" y="${r(y(v.value) - 4)}" text-anchor="middle" font-size="10" fill="${MUTED}">${v.value.toFixed(options.digits)}</text>`);
            }
        });
    });
    out.push(`<line x1="${left}" y1="${bottom}" x2="${right}" y2="${bottom}" stroke="${MUTED}"/>`);
    return footer(out);
}

/** Points (and lines through a series' points) on a log x axis and a linear y axis from 0 to 1; a dashed target line. */
export function scatterChart(options: {title: string, subtitle?: string, series: readonly ScatterSeries[], xLabel: string, yLabel: string,
    target?: number}): string {
    const width = 760;
    const left = 60;
    const right = width - 20;
    // The legend, wrapped into rows above the plot.
    const legend: {series: number, x: number, row: number}[] = [];
    let lx = left;
    let row = 0;
    options.series.forEach((s, i) => {
        const w = 26 + textWidth(s.name, 7);
        if (lx + w > right && lx > left) {
            lx = left;
            row++;
        }
        legend.push({series: i, x: lx, row});
        lx += w;
    });
    const top = 86 + row * 18;
    const height = top + 334;
    const bottom = height - 52;
    const xs = options.series.flatMap((s) => s.points.map((p) => p.x));
    const lo = Math.min(...xs) / 1.6;
    const hi = Math.max(...xs) * 1.6;
    const x = (v: number) => left + (Math.log(v) - Math.log(lo)) / (Math.log(hi) - Math.log(lo)) * (right - left);
    const y = (v: number) => bottom - v * (bottom - top);
    const out = header(width, height, options.title, options.subtitle);
    for (const item of legend) {
        const s = options.series[item.series];
        const ly = 57 + item.row * 18;
        out.push(marker(s.shape ?? "circle", item.x + 5, ly, PALETTE[item.series % PALETTE.length], ""),
            `<text x="${item.x + 14}" y="${ly + 5}" font-size="12" fill="${INK}">${xml(s.name)}</text>`);
    }
    for (const t of [0, 0.2, 0.4, 0.6, 0.8, 1]) {
        out.push(`<line x1="${left}" y1="${r(y(t))}" x2="${right}" y2="${r(y(t))}" stroke="${GRID}"/>`,
            `<text x="${left - 6}" y="${r(y(t) + 4)}" text-anchor="end" font-size="11" fill="${MUTED}">${t.toFixed(1)}</text>`);
    }
    for (const t of logTicks(lo, hi)) {
        out.push(`<line x1="${r(x(t))}" y1="${top}" x2="${r(x(t))}" y2="${bottom}" stroke="${GRID}"/>`,
            `<text x="${r(x(t))}" y="${bottom + 16}" text-anchor="middle" font-size="11" fill="${MUTED}">${tickLabel(t)}</text>`);
    }
    if (options.target != null) {
        out.push(`<line class="target" x1="${left}" y1="${r(y(options.target))}" x2="${right}" y2="${r(y(options.target))}" stroke="${INK}" stroke-dasharray="4 3"/>`,
            `<text x="${left + 4}" y="${r(y(options.target) + 13)}" font-size="11" fill="${INK}">target ${options.target}</text>`);
    }
    out.push(`<text x="${(left + right) / 2}" y="${height - 14}" text-anchor="middle" font-size="12" fill="${INK}">${xml(options.xLabel)}</text>`,
        `<text transform="translate(16 ${(top + bottom) / 2}) rotate(-90)" text-anchor="middle" font-size="12" fill="${INK}">${xml(options.yLabel)}</text>`);
    // Point labels above a line, or below it when another line runs just above (clustered f16 over i8).
    const meanY = (s: ScatterSeries) => s.points.reduce((a, p) => a + p.y, 0) / Math.max(1, s.points.length);
    const below = (s: ScatterSeries) => options.series.some((o) => o !== s && o.line && meanY(o) > meanY(s) && meanY(o) - meanY(s) < 0.1);
    options.series.forEach((s, i) => {
        const colour = PALETTE[i % PALETTE.length];
        const labelDy = below(s) ? 14 : -7;
        if (s.line && s.points.length > 1) {
            out.push(`<polyline class="line" data-series="${xml(s.name)}" points="${s.points.map((p) => `${r(x(p.x))},${r(y(p.y))}`).join(" ")}" fill="none" stroke="${colour}" stroke-width="1.5"/>`);
        }
        for (const p of s.points) {
            const tip = `${s.name}${p.label != null ? `, ${p.label}` : ""}: recall ${p.y.toFixed(3)} at ${fixed(p.x)} QPS`;
            out.push(marker(s.shape ?? "circle", x(p.x), y(p.y), colour,
                `class="point" data-series="${xml(s.name)}" data-x="${p.x}" data-y="${p.y}"`, tip));
            if (p.label != null && s.line) {
                out.push(`<text x="${r(x(p.x) + 6)}" y="${r(y(p.y) + labelDy)}" font-size="10" fill="${MUTED}">${xml(p.label)}</text>`);
            }
        }
    });
    return footer(out);
}

function marker(shape: "circle" | "square" | "diamond", cx: number, cy: number, colour: string, attributes: string, tip?: string): string {
    const title = tip != null ? `<title>${xml(tip)}</title>` : "";
    const close = (tag: string) => title !== "" ? `>${title}</${tag}>` : "/>";
    if (shape === "square") return `<rect ${attributes} x="${r(cx - 4.5)}" y="${r(cy - 4.5)}" width="9" height="9" fill="${colour}"${close("rect")}`;
    if (shape === "diamond") {
        return `<path ${attributes} d="M${r(cx)} ${r(cy - 6)}L${r(cx + 6)} ${r(cy)}L${r(cx)} ${r(cy + 6)}L${r(cx - 6)} ${r(cy)}Z" fill="${colour}" stroke="#fff"${close("path")}`;
    }
    return `<circle ${attributes} cx="${r(cx)}" cy="${r(cy)}" r="4.5" fill="${colour}" stroke="#fff"${close("circle")}`;
}

function header(width: number, height: number, title: string, subtitle: string | undefined): string[] {
    return [
        `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ${FONT} role="img" aria-label="${xml(title)}">`,
        `<title>${xml(title)}</title>`,
        `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
        `<text x="16" y="24" font-size="15" font-weight="600" fill="${INK}">${xml(title)}</text>`,
        ...(subtitle != null ? [`<text x="16" y="42" font-size="11" fill="${MUTED}">${xml(subtitle)}</text>`] : [])
    ];
}

function footer(out: string[]): string {
    return [...out, "</svg>"].join("\n") + "\n";
}

/** 1, 2, 5 x 10^k within [lo, hi]. */
function logTicks(lo: number, hi: number): number[] {
    const ticks: number[] = [];
    for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
        for (const m of [1, 2, 5]) {
            const t = m * 10 ** e;
            if (t >= lo && t <= hi) ticks.push(Number(t.toPrecision(3)));
        }
    }
    return ticks;
}

/** Round ticks from lo up to at least hi (about 5 of them). */
function niceTicks(lo: number, hi: number): number[] {
    const raw = (hi - lo) / 5 || 1;
    const power = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= raw)!;
    const ticks: number[] = [];
    for (let t = lo; t < hi + step - 1e-9; t += step) ticks.push(Number(t.toPrecision(6)));
    return ticks;
}

function tickLabel(t: number): string {
    return t >= 1000 ? `${t / 1000}k` : String(t);
}

function fixed(value: number): string {
    const abs = Math.abs(value);
    return value.toFixed(abs >= 100 ? 0 : abs >= 10 ? 1 : 2);
}

function centre(x: number, width: number): string {
    return r(x + width / 2);
}

function r(value: number): string {
    return String(Math.round(value * 10) / 10);
}

/** About how wide a label is at 12 px in a sans-serif font. */
function textWidth(text: string, perChar = 6.3): number {
    return text.length * perChar;
}

function xml(text: string): string {
    return text.replace(/[&<>"]/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;"})[c]!);
}

// `node dist/bench/charts.js [DIR]`: redraw the charts of the saved results (default bench/results).
if (process.argv[1] != null && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
    const dir = process.argv[2] ?? path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "bench", "results");
    for (const file of writeCharts(dir)) console.log(`wrote ${path.relative(process.cwd(), file)}`);
}
