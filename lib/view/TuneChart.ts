// The chart of a `selfrag tune` run: every replayed setting as a point (retrieval rate across,
// metric up), the Pareto front as a line, the best setting (and the best under a retrieval budget)
// marked. Plain SVG in the style of the bench charts (bench/charts.ts: same font, palette, white
// background, data attributes on every mark for tests); kept in lib because the CLI writes it and
// bench/ is not part of the package.
import type {TuneResult, TuneSetting} from "../eval/Tune.js";

const FONT = `font-family="system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif"`;
const INK = "#1f2328";
const MUTED = "#656d76";
const GRID = "#d8dee4";
const FRONT = "#0969da";
const BEST = "#bc4c00";
const BUDGET = "#8250df";

/** The SVG of a tune result (at most `maxPoints` settings drawn, spread over the grid; the front always). */
export function tuneChart(result: TuneResult, options: {title?: string, maxPoints?: number} = {}): string {
    const width = 760;
    const height = 440;
    const left = 64;
    const right = width - 24;
    const top = 84;
    const bottom = height - 56;
    const scoredMetric = (s: TuneSetting) => s.metric ?? 0;
    const metrics = result.settings.map(scoredMetric);
    const lo = Math.max(0, Math.floor(Math.min(...metrics) * 10) / 10);
    const hi = Math.min(1, Math.max(lo + 0.1, Math.ceil(Math.max(...metrics) * 10) / 10));
    const x = (v: number) => left + v * (right - left);
    const y = (v: number) => bottom - (v - lo) / (hi - lo) * (bottom - top);
    const title = options.title ?? `selfrag tune: ${result.metric} against retrieval rate`;
    const subtitle = `${result.settings.length} settings replayed over ${result.questions} questions; best ${label(result.best)}`;
    const out = [
        `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ${FONT} role="img" aria-label="${xml(title)}">`,
        `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
        `<text x="16" y="26" font-size="16" font-weight="600" fill="${INK}">${xml(title)}</text>`,
        `<text x="16" y="46" font-size="12" fill="${MUTED}">${xml(subtitle)}</text>`
    ];
    const legend: [string, string][] = [["#8c959f", "setting"], [FRONT, "Pareto front"], [BEST, "best"]];
    if (result.bestUnderBudget != null) legend.push([BUDGET, "best under the budget"]);
    legend.forEach(([colour, name], i) => {
        out.push(`<circle cx="${left + i * 150 + 5}" cy="64" r="4.5" fill="${colour}"/>`, `<text x="${left + i * 150 + 14}" y="68" font-size="12" fill="${INK}">${name}</text>`);
    });
    for (let k = 0; k <= 5; k++) {
        const v = lo + (hi - lo) * k / 5;
        out.push(`<line x1="${left}" y1="${r(y(v))}" x2="${right}" y2="${r(y(v))}" stroke="${GRID}"/>`,
            `<text x="${left - 6}" y="${r(y(v) + 4)}" text-anchor="end" font-size="11" fill="${MUTED}">${v.toFixed(2)}</text>`);
        const u = k / 5;
        out.push(`<line x1="${r(x(u))}" y1="${top}" x2="${r(x(u))}" y2="${bottom}" stroke="${GRID}"/>`,
            `<text x="${r(x(u))}" y="${bottom + 16}" text-anchor="middle" font-size="11" fill="${MUTED}">${u.toFixed(1)}</text>`);
    }
    out.push(`<text x="${(left + right) / 2}" y="${height - 16}" text-anchor="middle" font-size="12" fill="${INK}">retrieval rate</text>`,
        `<text transform="translate(18 ${(top + bottom) / 2}) rotate(-90)" text-anchor="middle" font-size="12" fill="${INK}">${xml(result.metric)}</text>`);
    const maxPoints = options.maxPoints ?? 2000;
    const step = Math.max(1, Math.ceil(result.settings.length / maxPoints));
    for (let i = 0; i < result.settings.length; i += step) {
        const s = result.settings[i];
        out.push(`<circle class="setting" data-x="${s.retrievalRate}" data-y="${scoredMetric(s)}" cx="${r(x(s.retrievalRate))}" cy="${r(y(scoredMetric(s)))}" ` +
            `r="2.5" fill="#8c959f" fill-opacity="0.5"/>`);
    }
    // The front as a staircase: a setting's metric holds until the next front point.
    const front = result.front;
    if (front.length > 0) {
        const points = front.flatMap((s, i) => {
            const here = `${r(x(s.retrievalRate))},${r(y(scoredMetric(s)))}`;
            return i + 1 < front.length ? [here, `${r(x(front[i + 1].retrievalRate))},${r(y(scoredMetric(s)))}`] : [here];
        });
        out.push(`<polyline class="front" points="${points.join(" ")}" fill="none" stroke="${FRONT}" stroke-width="1.5"/>`);
        for (const s of front) {
            out.push(`<circle class="front-point" data-x="${s.retrievalRate}" data-y="${scoredMetric(s)}" cx="${r(x(s.retrievalRate))}" ` +
                `cy="${r(y(scoredMetric(s)))}" r="4" fill="${FRONT}" stroke="#fff"><title>${xml(label(s))}</title></circle>`);
        }
    }
    const mark = (s: TuneSetting, colour: string, cls: string) => {
        const cx = x(s.retrievalRate);
        const cy = y(scoredMetric(s));
        out.push(`<path class="${cls}" data-x="${s.retrievalRate}" data-y="${scoredMetric(s)}" d="M${r(cx)} ${r(cy - 7)}L${r(cx + 7)} ${r(cy)}L${r(cx)} ${r(cy + 7)}L${r(cx - 7)} ${r(cy)}Z" ` +
            `fill="${colour}" stroke="#fff"><title>${xml(label(s))}</title></path>`,
        `<text x="${r(Math.min(cx + 9, right - 150))}" y="${r(cy - 9)}" font-size="11" fill="${colour}">${xml(label(s))}</text>`);
    };
    if (result.bestUnderBudget != null && result.bestUnderBudget !== result.best) mark(result.bestUnderBudget, BUDGET, "budget");
    mark(result.best, BEST, "best");
    out.push(`<line x1="${left}" y1="${bottom}" x2="${right}" y2="${bottom}" stroke="${MUTED}"/>`, "</svg>");
    return out.join("\n") + "\n";
}

function label(s: TuneSetting): string {
    return `threshold ${s.threshold}, ${s.metric != null ? s.metric.toFixed(3) : "no score"} at ${(100 * s.retrievalRate).toFixed(0)}% retrieval`;
}

function r(v: number): number {
    return Math.round(v * 10) / 10;
}

function xml(text: string): string {
    return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}
