// The ggml CPU backend `npm install` compiles for this machine (scripts/build-cpu-backend.mjs)
// against node-llama-cpp's prebuilt one, on the same work. One process loads one CPU backend, so
// each side is a child process (bench/cpuBackendChild.ts, timed there with tinybench); the two
// alternate round by round so a neighbour's load drifting over minutes biases neither. Reported as
// ratios of medians (prebuilt / compiled: above 1 means the compiled backend is faster).
import {spawnSync} from "node:child_process";
import path from "node:path";
import {compiledCpuBackend} from "../lib/engine/cpuBackend.js";
import {ensureBenchModel} from "./benchModel.js";
import {environment, median, sampleMeasurement, writeResult, type BenchResult, type Comparison, type Measurement} from "./common.js";
import {repoRoot} from "./peer/repoRoot.js";

const ROUNDS = Math.max(2, Number(process.env.SELFRAG_BENCH_ROUNDS ?? 5));
const TASKS = [
    {id: "prefill", label: "prefill 12 sequences x 64 tokens (one batch)", unit: "batch"},
    {id: "decode steps", label: "32 greedy steps of 12 sequences", unit: "32 steps"},
    {id: "short-form question", label: "answer(): 5 passages, 32 new tokens", unit: "question"}
];

interface ChildResult {
    cpuBackend?: {variant: string, build: string};
    medianMs: Record<string, number>;
}

function side(build: "compiled" | "prebuilt"): ChildResult {
    const script = path.join(repoRoot(), "dist", "bench", "cpuBackendChild.js");
    const env = {...process.env, SELFRAG_CPU_BACKEND: build === "prebuilt" ? "prebuilt" : "auto"};
    const result = spawnSync(process.execPath, [script], {encoding: "utf8", env, timeout: 600_000});
    if (result.status !== 0) throw new Error(`cpuBackendChild (${build}) exited with ${result.status}: ${result.stderr}`);
    const parsed = JSON.parse(result.stdout.trim().split("\n").at(-1)!) as ChildResult;
    if (parsed.cpuBackend?.build !== build) throw new Error(`asked for the ${build} backend, the child ran on ${JSON.stringify(parsed.cpuBackend)}`);
    return parsed;
}

export async function run(): Promise<BenchResult> {
    await ensureBenchModel();
    const compiled = compiledCpuBackend();
    const base = {name: "cpu-backend", title: "llama.cpp's CPU backend compiled at install vs node-llama-cpp's prebuilt one", environment: environment("auto")};
    if (compiled == null) {
        const result: BenchResult = {...base, measurements: [], comparisons: [],
            notes: ["No compiled CPU backend here (see build/variants.json, cpuBackend): nothing to compare."]};
        writeResult(result);
        return result;
    }
    const samples = new Map<string, number[]>();
    let variant = "";
    for (let round = 0; round < ROUNDS; round++) {
        for (const build of ["compiled", "prebuilt"] as const) {
            const result = side(build);
            variant = result.cpuBackend!.variant;
            for (const task of TASKS) {
                const key = `${build}:${task.id}`;
                (samples.get(key) ?? samples.set(key, []).get(key)!).push(result.medianMs[task.id]);
            }
        }
        process.stderr.write(`cpu-backend bench: round ${round + 1}/${ROUNDS} done\n`);
    }
    const measurements: Measurement[] = [];
    const comparisons: Comparison[] = [];
    for (const task of TASKS) {
        for (const build of ["compiled", "prebuilt"] as const) {
            measurements.push(sampleMeasurement(`${build}:${task.id}`, `${build} ${variant}: ${task.label}`, task.unit, samples.get(`${build}:${task.id}`)!));
        }
        comparisons.push({label: `${task.label}: time, prebuilt / compiled`,
            value: median(samples.get(`prebuilt:${task.id}`)!) / median(samples.get(`compiled:${task.id}`)!), unit: "x"});
    }
    const result: BenchResult = {...base, measurements, comparisons, notes: [
        `Model: the bench fixture (random weights, ~53M parameters, f32), 1 thread. ggml CPU variant "${variant}" both sides: the same source ` +
        "(node-llama-cpp's llama.cpp release), node-llama-cpp's prebuilt binary against the one `npm install` compiled here.",
        `${ROUNDS} rounds, the two sides alternating, each a fresh process timing every task 5 times with tinybench (1 warm-up); ` +
        "measurements are the medians of the per-process medians.",
        "Machines are shared and noisy: compare ratios, not absolute times."
    ]};
    writeResult(result);
    return result;
}
