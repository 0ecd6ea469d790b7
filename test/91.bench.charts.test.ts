// The benchmark charts (issue 12, "Charts"): bench/charts.ts draws SVG from the saved results.
// Each chart is parsed by a real XML parser (chromium's DOMParser; chromium as in
// 28-html-view) and opened as an image; its marks are counted and read back against the numbers
// in bench/results/*.json, recomputed here from the JSON.
import assert from "node:assert/strict";
import {execFile} from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import {fileURLToPath, pathToFileURL} from "node:url";
import {promisify} from "node:util";
import {chromium, type Browser, type Page} from "playwright-core";
import {chartsOf, groupedBarChart, speedupBars, speedupChart, writeCharts, type SavedResult} from "../bench/charts.js";
import {tempDir} from "../test-support/fixtures.js";

const run = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const resultsDir = path.join(root, "bench", "results");
const chromiumPath = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

interface Mark {tag: string, cls: string, data: Record<string, string>, attrs: Record<string, string>}
interface Parsed {error: string | null, root: string, width: string | null, height: string | null, marks: Mark[], texts: string[],
    scripts: number, external: string[]}

/** Parses SVG text with the browser's XML parser and lists its marks (elements with a class). */
async function parseSvg(page: Page, svg: string): Promise<Parsed> {
    return page.evaluate((text) => {
        const doc = new DOMParser().parseFromString(text, "image/svg+xml");
        const error = doc.querySelector("parsererror");
        const el = doc.documentElement;
        const all = [...doc.querySelectorAll("*")];
        return {
            error: error?.textContent ?? null,
            root: `${el.namespaceURI} ${el.localName}`,
            width: el.getAttribute("width"),
            height: el.getAttribute("height"),
            marks: all.filter((e) => e.getAttribute("class") != null).map((e) => ({
                tag: e.localName, cls: e.getAttribute("class")!,
                data: Object.fromEntries([...e.attributes].filter((a) => a.name.startsWith("data-")).map((a) => [a.name.slice(5), a.value])),
                attrs: Object.fromEntries([...e.attributes].map((a) => [a.name, a.value]))
            })),
            texts: [...doc.querySelectorAll("text")].map((t) => t.textContent ?? ""),
            scripts: doc.querySelectorAll("script, foreignObject, image").length,
            external: all.flatMap((e) => [...e.attributes].filter((a) => /href$/.test(a.name) || /url\(/.test(a.value)).map((a) => a.value))
        };
    }, svg);
}

function marks(parsed: Parsed, cls: string): Mark[] {
    return parsed.marks.filter((m) => m.cls === cls);
}

describe("benchmark charts (bench/charts.ts)", function () {
    let browser: Browser | undefined;
    let page: Page;
    let results: SavedResult[];

    before(async function () {
        if (!fs.existsSync(chromiumPath)) {
            if (process.env.CI) throw new Error(`chromium not found at ${chromiumPath} (.ci/run installs it: apt-get install chromium)`);
            console.warn(`    skipped: no chromium at ${chromiumPath} (apt-get install chromium, or set CHROMIUM_PATH)`);
            this.skip();
        }
        results = fs.readdirSync(resultsDir).filter((f) => f.endsWith(".json"))
            .map((f) => JSON.parse(fs.readFileSync(path.join(resultsDir, f), "utf8")) as SavedResult);
        browser = await chromium.launch({executablePath: chromiumPath, args: ["--no-sandbox"]});
        page = await browser.newPage();
    });
    after(async () => browser?.close());

    it("every chart of the saved results is well-formed, self-contained SVG that renders at its size", async () => {
        const charts = chartsOf(results);
        assert.deepEqual(charts.map((c) => c.file).sort(), ["retrieval-recall-qps.svg", "serving-latency.svg", "serving-throughput.svg", "speedups.svg"]);
        const dir = path.join(tempDir, "charts-render");
        fs.mkdirSync(dir, {recursive: true});
        for (const chart of charts) {
            const parsed = await parseSvg(page, chart.svg);
            assert.equal(parsed.error, null, `${chart.file} parses`);
            assert.equal(parsed.root, "http://www.w3.org/2000/svg svg");
            assert.equal(parsed.scripts, 0, `${chart.file}: no script, foreign object or image`);
            assert.deepEqual(parsed.external, [], `${chart.file}: no reference to anything outside`);
            // opened as a file, it renders at its declared size with nothing reported
            const file = path.join(dir, chart.file);
            fs.writeFileSync(file, chart.svg);
            const view = await browser!.newPage();
            const problems: string[] = [];
            view.on("console", (m) => problems.push(m.text()));
            view.on("pageerror", (e) => problems.push(e.message));
            await view.goto(pathToFileURL(file).href);
            const box = await view.locator("svg").boundingBox();
            assert.deepEqual([box?.width, box?.height], [Number(parsed.width), Number(parsed.height)], chart.file);
            assert.deepEqual(problems, []);
            await view.close();
        }
    });

    it("speedups: one bar per headline ratio, each the ratio in its bench's JSON, slower ones left of 1x", async () => {
        const chart = chartsOf(results).find((c) => c.file === "speedups.svg")!;
        const bars = marks(await parseSvg(page, chart.svg), "bar");
        assert.equal(bars.length, speedupBars(results).length);
        assert.ok(bars.length >= 10, `${bars.length} bars`);
        for (const bar of bars) {
            const result = results.find((r) => r.name === bar.data.group);
            assert.ok(result != null, `bench ${bar.data.group}`);
            const value = Number(bar.data.value);
            assert.ok(result.comparisons.some((c) => c.unit === "x" && (Math.abs(c.value - value) < 1e-12 || Math.abs(1 / c.value - value) < 1e-12)),
                `${bar.data.label} = ${value} is a ratio of ${bar.data.group}`);
        }
        const kernel = results.find((r) => r.name === "reflection-kernel")!.comparisons.find((c) => c.label === "TypeScript loop / selfrag kernel, rows=1")!;
        assert.equal(Number(bars.find((b) => /TypeScript/.test(b.data.label))!.data.value), kernel.value);
    });

    it("serving: a throughput bar per system and workload measured, a p50 bar and p99 whisker per latency reported", async () => {
        const serving = results.find((r) => r.name === "serving")!;
        const measured = serving.measurements.filter((m) => /^[a-z-]+:[a-z]+$/.test(m.id));
        const throughput = marks(await parseSvg(page, chartsOf(results).find((c) => c.file === "serving-throughput.svg")!.svg), "bar");
        assert.equal(throughput.length, measured.length);
        for (const m of measured) {
            const [system] = m.id.split(":");
            const bar = throughput.filter((b) => b.data.series === system).find((b) => Math.abs(Number(b.data.value) - 1e6 / m.medianUs) < 1e-9);
            assert.ok(bar != null, `a bar for ${m.id} at ${1e6 / m.medianUs} req/s`);
        }
        // latencies: from the figures, or the notes of a result saved before there were figures
        const figures = serving.figures?.latencyMs as Record<string, {p50: number, p99: number}> | undefined;
        const latencies = figures != null ? Object.entries(figures).map(([id, l]) => ({id, ...l}))
            : serving.notes.flatMap((n) => {
                const m = /^(\S+): p50 (\d+) ms, p99 (\d+) ms/.exec(n);
                return m == null ? [] : [{id: m[1], p50: Number(m[2]), p99: Number(m[3])}];
            });
        assert.equal(latencies.length, measured.length);
        const latency = await parseSvg(page, chartsOf(results).find((c) => c.file === "serving-latency.svg")!.svg);
        assert.deepEqual(marks(latency, "bar").map((b) => Number(b.data.value)).sort(), latencies.map((l) => l.p50 / 1000).sort());
        assert.deepEqual(marks(latency, "whisker").map((b) => Number(b.data.value)).sort(), latencies.map((l) => l.p99 / 1000).sort());
    });

    it("retrieval: a point per recall measured and per exact search, a line per data set and vector type", async () => {
        const retrieval = results.find((r) => r.name === "retrieval")!;
        const recall = retrieval.figures!.recall as Record<string, number>;
        const parsed = await parseSvg(page, chartsOf(results).find((c) => c.file === "retrieval-recall-qps.svg")!.svg);
        const points = marks(parsed, "point");
        const exact = retrieval.measurements.filter((m) => m.id.endsWith(".exact"));
        assert.equal(points.length, Object.keys(recall).length + exact.length);
        for (const [id, value] of Object.entries(recall)) {
            const qps = 1e6 / retrieval.measurements.find((m) => m.id === id)!.medianUs;
            assert.ok(points.some((p) => Number(p.data.y) === value && Math.abs(Number(p.data.x) - qps) < 1e-9), `point ${id}`);
        }
        const lines = new Set(Object.keys(recall).filter((id) => !id.endsWith(".auto")).map((id) => id.split(".").slice(0, 2).join(".")));
        assert.equal(marks(parsed, "line").length, lines.size);
        assert.equal(marks(parsed, "target").length, 1);
    });

    it("bars are drawn to scale: log from 1x for speedups, linear from 0 for grouped bars, none for a missing value", async () => {
        const speed = marks(await parseSvg(page, speedupChart({title: "t", bars: [{label: "a", value: 2}, {label: "b", value: 0.5}, {label: "c", value: 16}]})), "bar");
        const geometry = speed.map((b) => ({x: Number(b.attrs.x), width: Number(b.attrs.width)}));
        assert.ok(Math.abs(geometry[0].x - geometry[2].x) < 0.11, "faster bars start at 1x");
        assert.ok(Math.abs(geometry[1].x + geometry[1].width - geometry[0].x) < 0.11, "a slower bar ends at 1x");
        assert.ok(Math.abs(geometry[2].width / geometry[0].width - 4) < 0.01, "16x is 4 times as long as 2x on a log axis");
        assert.ok(Math.abs(geometry[1].width - geometry[0].width) < 0.2, "0.5x as long as 2x, leftwards");
        const grouped = marks(await parseSvg(page, groupedBarChart({title: "t", unit: "s", digits: 1, data: {groups: ["g1", "g2"], series: [
            {name: "s1", values: [{value: 1}, {value: 3}]}, {name: "s2", values: [null, {value: 1.5}]}]}})), "bar");
        assert.equal(grouped.length, 3);
        const height = (series: string, group: string) => Number(grouped.find((b) => b.data.series === series && b.data.group === group)!.attrs.height);
        assert.ok(Math.abs(height("s1", "g2") / height("s1", "g1") - 3) < 0.01);
        assert.ok(Math.abs(height("s2", "g2") / height("s1", "g1") - 1.5) < 0.01);
    });

    it("writeCharts and `node dist/bench/charts.js DIR` redraw the charts from saved JSON alone", async () => {
        const dir = path.join(tempDir, "charts-json");
        fs.mkdirSync(dir, {recursive: true});
        for (const f of fs.readdirSync(resultsDir).filter((f) => f.endsWith(".json"))) fs.copyFileSync(path.join(resultsDir, f), path.join(dir, f));
        const written = writeCharts(dir).map((f) => path.basename(f)).sort();
        assert.deepEqual(written, chartsOf(results).map((c) => c.file).sort());
        for (const f of written) fs.rmSync(path.join(dir, f));
        const {stdout} = await run(process.execPath, [path.join(root, "dist", "bench", "charts.js"), dir]);
        assert.equal(stdout.trim().split("\n").length, written.length);
        for (const chart of chartsOf(results)) assert.equal(fs.readFileSync(path.join(dir, chart.file), "utf8"), chart.svg, "the same bytes for the same results");
    });
});
