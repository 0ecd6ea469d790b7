// Shared pieces of the benchmarks: timing helpers on top of tinybench, the result shape every
// `*.bench.ts` module returns, and the writer for bench/results/<name>.{json,md}.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {fileURLToPath} from "node:url";
import type {FnReturnedObject, Task} from "tinybench";
import {writeCharts} from "./charts.js";

/** One timed quantity, in microseconds per `unit` (a logits row, a decoded token, ...). */
export interface Measurement {
    id: string;
    label: string;
    unit: string;
    /** Median of the samples: the figure the comparisons use (robust to noisy neighbours). */
    medianUs: number;
    meanUs: number;
    /** Relative margin of error of the mean, in percent. */
    rmePercent: number;
    samples: number;
}

/** A ratio or an absolute figure, optionally against a target the project states (reported, never asserted). */
export interface Comparison {
    label: string;
    value: number;
    unit: "x" | "us" | "tokens";
    /** "min": value should be >= target; "max": value should be <= target. */
    target?: {kind: "min" | "max", value: number};
}

export interface Environment {
    date: string;
    node: string;
    platform: string;
    cpu: string;
    logicalCpus: number;
    /** The ISA the fused kernel picks on this CPU when asked for "auto". */
    kernelIsa: string;
}

export interface BenchResult {
    /** File stem under bench/results/. */
    name: string;
    title: string;
    environment: Environment;
    measurements: Measurement[];
    comparisons: Comparison[];
    notes: string[];
    /** false: nothing was measured (no such device here) and bench/results was not written. */
    saved?: false;
}

/** bench/results in the source tree (this file runs as dist/bench/common.js). */
export const resultsDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "bench", "results");

export function environment(kernelIsa: string): Environment {
    return {
        date: new Date().toISOString(),
        node: process.version,
        platform: `${os.platform()} ${os.release()} ${os.arch()}`,
        cpu: os.cpus()[0]?.model.trim() ?? "unknown",
        logicalCpus: os.cpus().length,
        kernelIsa
    };
}

/**
 * How many calls of `fn` make one sample of about `targetUs`: microsecond-scale calls timed one
 * by one would mostly measure the timer.
 */
export function callsPerSample(fn: () => unknown, targetUs = 200): number {
    for (let i = 0; i < 3; i++) fn(); // let the JIT and the caches settle before estimating
    const probes = 5;
    const start = process.hrtime.bigint();
    for (let i = 0; i < probes; i++) fn();
    const perCallUs = Number(process.hrtime.bigint() - start) / 1e3 / probes;
    return Math.min(1000, Math.max(1, Math.ceil(targetUs / Math.max(perCallUs, 1e-3))));
}

/**
 * A tinybench task body that calls `fn` `calls` times per sample and records the time per unit
 * (`unitsPerCall` units per call, e.g. rows). The iteration cost tells tinybench the real wall
 * time of the sample so its time budget stays honest.
 */
export function batched(fn: () => unknown, calls: number, unitsPerCall = 1): () => FnReturnedObject {
    return () => {
        const start = process.hrtime.bigint();
        for (let i = 0; i < calls; i++) fn();
        const elapsedMs = Number(process.hrtime.bigint() - start) / 1e6;
        return {overriddenDuration: elapsedMs / (calls * unitsPerCall), overriddenIterationCost: elapsedMs};
    };
}

/** Reads a finished task's statistics as a Measurement; throws when the task failed. */
export function measurement(task: Task, id: string, unit: string): Measurement {
    const result = task.result;
    if (result.state === "errored") {
        throw new Error(`benchmark task "${task.name}" failed: ${result.error.message}`, {cause: result.error});
    }
    if (result.state !== "completed" && result.state !== "aborted-with-statistics") {
        throw new Error(`benchmark task "${task.name}" has no statistics (state ${result.state})`);
    }
    const latency = result.latency;
    return {
        id,
        label: task.name,
        unit,
        medianUs: latency.p50 * 1000,
        meanUs: latency.mean * 1000,
        rmePercent: latency.rme,
        samples: latency.samplesCount
    };
}

/** Two-sided 95% Student t for n - 1 degrees of freedom (n <= 31), then the normal value. */
const T95 = [12.71, 4.30, 3.18, 2.78, 2.57, 2.45, 2.36, 2.31, 2.26, 2.23, 2.20, 2.18, 2.16, 2.14, 2.13, 2.12, 2.11, 2.10, 2.09, 2.09,
    2.08, 2.07, 2.07, 2.06, 2.06, 2.06, 2.05, 2.05, 2.05, 2.04];

export function median(values: readonly number[]): number {
    const sorted = [...values].sort((a, b) => a - b);
    const mid = sorted.length >> 1;
    return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** A measurement from samples timed outside tinybench (one per process or per child run), in ms. */
export function sampleMeasurement(id: string, label: string, unit: string, samplesMs: readonly number[]): Measurement {
    const n = samplesMs.length;
    const mean = samplesMs.reduce((a, b) => a + b, 0) / n;
    const sd = n > 1 ? Math.sqrt(samplesMs.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1)) : 0;
    const rme = n > 1 ? ((T95[Math.min(n - 2, T95.length - 1)] ?? 1.96) * sd / Math.sqrt(n)) / mean * 100 : 0;
    return {id, label, unit, medianUs: median(samplesMs) * 1000, meanUs: mean * 1000, rmePercent: rme, samples: n};
}

/** Median of a measurement by id (the comparisons are built from these). */
export function medianOf(measurements: readonly Measurement[], id: string): number {
    const found = measurements.find((m) => m.id === id);
    if (found == null) throw new Error(`no measurement "${id}"`);
    return found.medianUs;
}

export function meetsTarget(c: Comparison): boolean | undefined {
    if (c.target == null) return undefined;
    return c.target.kind === "min" ? c.value >= c.target.value : c.value <= c.target.value;
}

/** Writes bench/results/<name>.json and .md and returns their paths. */
/**
 * `SELFRAG_BENCH_SHAPE=1b`: the benchmarks that decode on the bench fixture run on the 1B Q4_0
 * fixture instead (bench/benchModel.ts, MODEL_FILE), their results saved as `<name>-1b`.
 */
export const BENCH_SHAPE: "bench" | "1b" = process.env.SELFRAG_BENCH_SHAPE === "1b" ? "1b" : "bench";

/** The file stem a result is saved under: `<name>-1b` on the 1B shape, kept beside the f32 one. */
export function resultName(name: string): string {
    return BENCH_SHAPE === "1b" && !name.endsWith("-1b") ? `${name}-1b` : name;
}

export function writeResult(result: BenchResult): {json: string, markdown: string} {
    if (resultName(result.name) !== result.name) {
        result = {...result, name: resultName(result.name), title: `${result.title} (1B Q4_0 shape)`,
            notes: ["SELFRAG_BENCH_SHAPE=1b: run on the 1B Q4_0 fixture (selfrag fixture --kind 1b --quant q4_0: random weights, " +
                "TinyLlama 1.1B's shape, 620 MB) in place of the bench fixture; where the notes below name the bench fixture, read this model.",
            ...result.notes]};
    }
    fs.mkdirSync(resultsDir, {recursive: true});
    const json = path.join(resultsDir, `${result.name}.json`);
    const markdown = path.join(resultsDir, `${result.name}.md`);
    const withVerdicts = {...result, comparisons: result.comparisons.map((c) => ({...c, meetsTarget: meetsTarget(c)}))};
    fs.writeFileSync(json, JSON.stringify(withVerdicts, null, 2) + "\n");
    fs.writeFileSync(markdown, renderMarkdown(result));
    try {
        writeCharts(resultsDir); // every chart from every saved result, so the summary takes this one in
    } catch (error) {
        console.warn(`bench: charts not written: ${(error as Error).message}`); // the results are saved: do not fail the run for a chart
    }
    return {json, markdown};
}

export function renderMarkdown(result: BenchResult): string {
    const env = result.environment;
    const lines = [
        `# ${result.title}`,
        "",
        `- Date: ${env.date}`,
        `- Node: ${env.node} (${env.platform})`,
        `- CPU: ${env.cpu} (${env.logicalCpus} logical CPUs)`,
        `- Kernel ISA (auto): ${env.kernelIsa}`,
        "",
        "## Measurements",
        "",
        "| Measurement | Per | Median (us) | Mean (us) | ±RME | Samples |",
        "|---|---|---:|---:|---:|---:|",
        ...result.measurements.map((m) =>
            `| ${m.label} | ${m.unit} | ${fixed(m.medianUs)} | ${fixed(m.meanUs)} | ${m.rmePercent.toFixed(1)}% | ${m.samples} |`),
        "",
        "## Comparisons (from medians)",
        "",
        "| Comparison | Value | Target | Meets target |",
        "|---|---:|---:|:---:|",
        ...result.comparisons.map((c) => {
            const verdict = meetsTarget(c);
            const target = c.target == null ? "" : `${c.target.kind === "min" ? ">=" : "<="} ${c.target.value} ${c.unit}`;
            return `| ${c.label} | ${fixed(c.value)} ${c.unit} | ${target} | ${verdict == null ? "" : verdict ? "yes" : "no"} |`;
        })
    ];
    if (result.notes.length > 0) lines.push("", "## Notes", "", ...result.notes.map((n) => `- ${n}`));
    return lines.join("\n") + "\n";
}

/** About three significant digits, never in exponent notation, for tables. */
function fixed(value: number): string {
    if (!Number.isFinite(value)) return String(value);
    const abs = Math.abs(value);
    const decimals = abs >= 100 ? 0 : abs >= 10 ? 1 : abs >= 1 ? 2 : 3;
    return value.toFixed(decimals);
}
