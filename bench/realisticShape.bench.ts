// The engine's prompt and generation speed on a realistic shape, against llama.cpp's own llama-bench,
// like for like (issue 26):
//   - model: `selfrag fixture --kind 1b --quant q4_0` (random weights, TinyLlama 1.1B's shape, Self-RAG
//     vocabulary, 620 MB), written once into bench/.cache;
//   - engine: the pp and tg rows of `selfrag bench` (lib/bench/ModelBench.ts: one sequence, pp = the
//     prompt prefilled from an empty sequence, tg = greedy steps through EOS after a 16-token prompt), gpu off;
//   - peer: llama-bench built from node-llama-cpp's llama.cpp source with the engine's compiled CPU
//     variant, flags and compiler (bench/peer/buildLlamaServer.ts, ensureLlamaBench), `-p P -n G -t T -r R`;
//   - interleaved: per thread count, ROUNDS rounds, each one engine run (one model load, a warm-up and
//     R repetitions) and one llama-bench run (its own warm-up and R repetitions), the order alternating
//     round by round; each round gives one mean rate per side, the figures are the medians over rounds.
// The table's last column sets the engine's time per generated token beside its time per prompt token
// (batched, so the compute floor a generated token cannot go below): how far tg is from compute-bound.
// Environment: SELFRAG_BENCH_ROUNDS (5), SELFRAG_BENCH_REPS (3), SELFRAG_BENCH_THREADS ("1,2"),
// SELFRAG_BENCH_PROMPT (64), SELFRAG_BENCH_GEN (32).
import {spawn} from "node:child_process";
import path from "node:path";
import {runModelBench} from "../lib/bench/ModelBench.js";
import {ensureFixture1b} from "./benchModel.js";
import {environment, median, writeResult, type BenchResult, type Comparison, type Measurement} from "./common.js";
import {compiledCpuVariant, ensureLlamaBench} from "./peer/buildLlamaServer.js";
import {measureReadBandwidth, weightBytesPerStep} from "./peer/readBandwidth.js";

const ROUNDS = Math.max(1, Number(process.env.SELFRAG_BENCH_ROUNDS ?? 5));
const REPS = Math.max(1, Number(process.env.SELFRAG_BENCH_REPS ?? 3));
const THREADS = (process.env.SELFRAG_BENCH_THREADS ?? "1,2").split(",").map(Number);
const PROMPT = Number(process.env.SELFRAG_BENCH_PROMPT ?? 64);
const GEN = Number(process.env.SELFRAG_BENCH_GEN ?? 32);
const TARGET = 0.95;

interface Rates {
    pp: number;
    tg: number;
}

interface LlamaBenchRow {
    n_prompt: number;
    n_gen: number;
    n_threads: number;
    avg_ts: number;
    stddev_ts: number;
    samples_ts?: number[];
    cpu_info?: string;
    backends?: string;
    build_commit?: string;
    build_number?: number;
    n_batch?: number;
    n_ubatch?: number;
    flash_attn?: boolean | number;
    type_k?: string;
}

function runCapture(command: string, args: readonly string[]): Promise<{stdout: string, stderr: string}> {
    return new Promise((resolve, reject) => {
        const child = spawn(command, args, {stdio: ["ignore", "pipe", "pipe"]});
        const out: Buffer[] = [];
        const err: Buffer[] = [];
        child.stdout.on("data", (c: Buffer) => out.push(c));
        child.stderr.on("data", (c: Buffer) => err.push(c));
        child.on("error", reject);
        child.on("close", (code, signal) => {
            const stdout = Buffer.concat(out).toString("utf8");
            const stderr = Buffer.concat(err).toString("utf8");
            if (code !== 0) reject(new Error(`${path.basename(command)} failed (${signal ?? `exit ${code}`}):\n${stderr.slice(-2000)}`));
            else resolve({stdout, stderr});
        });
    });
}

async function peerRun(binary: string, model: string, threads: number): Promise<{rates: Rates, rows: LlamaBenchRow[]}> {
    const {stdout} = await runCapture(binary, ["-m", model, "-p", String(PROMPT), "-n", String(GEN), "-t", String(threads), "-r", String(REPS), "-o", "json"]);
    const rows = JSON.parse(stdout) as LlamaBenchRow[];
    const pp = rows.find((r) => r.n_prompt === PROMPT && r.n_gen === 0);
    const tg = rows.find((r) => r.n_gen === GEN && r.n_prompt === 0);
    if (pp == null || tg == null) throw new Error(`llama-bench printed no pp${PROMPT}/tg${GEN} rows: ${stdout.slice(0, 500)}`);
    return {rates: {pp: pp.avg_ts, tg: tg.avg_ts}, rows};
}

let engineBackend: string | undefined;

async function engineRun(model: string, threads: number): Promise<Rates> {
    const result = await runModelBench({modelPath: model, threads: [threads], gpu: false, rows: ["engine"], sequences: [1], prompts: [PROMPT],
        generate: GEN, repetitions: REPS, ndocs: 1, beamWidth: 1});
    engineBackend = result.header.cpuBackend;
    const pp = result.rows.find((r) => r.test === `pp${PROMPT}`);
    const tg = result.rows.find((r) => r.test === `tg${GEN}`);
    if (pp == null || tg == null) throw new Error("runModelBench returned no pp/tg rows");
    return {pp: pp.mean, tg: tg.mean};
}

/** A rate (t/s) per round as a Measurement in microseconds per token (median over rounds). */
function tokenMeasurement(id: string, label: string, rates: readonly number[]): Measurement {
    const us = rates.map((r) => 1e6 / r);
    const n = us.length;
    const mean = us.reduce((a, b) => a + b, 0) / n;
    const sd = n > 1 ? Math.sqrt(us.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1)) : 0;
    return {id, label, unit: "token", medianUs: median(us), meanUs: mean, rmePercent: n > 1 ? 100 * 2 * sd / Math.sqrt(n) / mean : 0, samples: n};
}

export async function run(): Promise<BenchResult> {
    const model = await ensureFixture1b();
    const {binary, variant} = await ensureLlamaBench();
    const backend = compiledCpuVariant();
    const measurements: Measurement[] = [];
    const comparisons: Comparison[] = [];
    const notes: string[] = [];
    let peerInfo: LlamaBenchRow | undefined;
    const table: string[] = [];
    // The bandwidth ceiling of generation: a step reads every weight once (the token embedding one row).
    const weights = weightBytesPerStep(model);
    const bandwidth = new Map<number, number>();
    for (const threads of THREADS) {
        const engine: Rates[] = [];
        const peer: Rates[] = [];
        for (let round = 0; round < ROUNDS; round++) {
            // Alternate who goes first: a slow stretch of the machine falls on both sides alike.
            const order = round % 2 === 0 ? ["engine", "peer"] : ["peer", "engine"];
            for (const side of order) {
                if (side === "engine") engine.push(await engineRun(model, threads));
                else {
                    const p = await peerRun(binary, model, threads);
                    peer.push(p.rates);
                    peerInfo ??= p.rows[0];
                }
            }
            process.stderr.write(`realistic shape: ${threads} thread(s), round ${round + 1}/${ROUNDS}: engine pp${PROMPT} ${engine.at(-1)!.pp.toFixed(2)} ` +
                `tg${GEN} ${engine.at(-1)!.tg.toFixed(2)} t/s, llama-bench pp ${peer.at(-1)!.pp.toFixed(2)} tg ${peer.at(-1)!.tg.toFixed(2)} t/s\n`);
        }
        bandwidth.set(threads, measureReadBandwidth(threads));
        const e = {pp: median(engine.map((r) => r.pp)), tg: median(engine.map((r) => r.tg))};
        const ceiling = bandwidth.get(threads)! * 1e9 / weights.bytes;
        const p = {pp: median(peer.map((r) => r.pp)), tg: median(peer.map((r) => r.tg))};
        measurements.push(
            tokenMeasurement(`engine:pp${PROMPT}:${threads}`, `engine pp${PROMPT}, ${threads} thread(s)`, engine.map((r) => r.pp)),
            tokenMeasurement(`llama-bench:pp${PROMPT}:${threads}`, `llama-bench pp${PROMPT}, ${threads} thread(s)`, peer.map((r) => r.pp)),
            tokenMeasurement(`engine:tg${GEN}:${threads}`, `engine tg${GEN}, ${threads} thread(s)`, engine.map((r) => r.tg)),
            tokenMeasurement(`llama-bench:tg${GEN}:${threads}`, `llama-bench tg${GEN}, ${threads} thread(s)`, peer.map((r) => r.tg)));
        comparisons.push(
            {label: `pp${PROMPT}, ${threads} thread(s): engine / llama-bench (t/s, medians)`, value: e.pp / p.pp, unit: "x", target: {kind: "min", value: TARGET}},
            {label: `tg${GEN}, ${threads} thread(s): engine / llama-bench (t/s, medians)`, value: e.tg / p.tg, unit: "x", target: {kind: "min", value: TARGET}});
        table.push(`| ${threads} | ${e.pp.toFixed(2)} | ${p.pp.toFixed(2)} | ${(e.pp / p.pp).toFixed(3)}x | ${e.tg.toFixed(2)} | ${p.tg.toFixed(2)} | ` +
            `${(e.tg / p.tg).toFixed(3)}x | ${(1000 / e.tg).toFixed(1)} ms vs ${(1000 / e.pp).toFixed(1)} ms | ${ceiling.toFixed(1)} t/s ` +
            `(${bandwidth.get(threads)!.toFixed(1)} GB/s): tg at ${(e.tg / ceiling).toFixed(2)} of it |`);
        notes.push(`${threads} thread(s), per-round means (t/s): engine pp ${engine.map((r) => r.pp.toFixed(2)).join(", ")}; llama-bench pp ` +
            `${peer.map((r) => r.pp.toFixed(2)).join(", ")}; engine tg ${engine.map((r) => r.tg.toFixed(2)).join(", ")}; llama-bench tg ` +
            `${peer.map((r) => r.tg.toFixed(2)).join(", ")}.`);
    }
    notes.unshift(
        `Model: selfrag fixture --kind 1b --quant q4_0 (random weights, TinyLlama 1.1B shape: 2048 wide, 22 layers, 32 heads, 4 KV heads, FFN 5632, ` +
        `Self-RAG vocabulary of 32,016), ${model}; a decode step reads ${(weights.bytes / 1e6).toFixed(0)} MB of weights.`,
        `Read bandwidth (bench/peer/readBandwidth.c, best of 5 passes over 1 GiB, measured after each thread count's rounds): ` +
        `${[...bandwidth].map(([t, b]) => `${b.toFixed(1)} GB/s with ${t} thread(s)`).join(", ")}.`,
        `Like for like: llama-bench from node-llama-cpp's llama.cpp source (build ${peerInfo?.build_number ?? "?"}, ${peerInfo?.build_commit ?? "?"}), ` +
        `built with the engine's compiled CPU backend's options (build/cpu-backend/backend.json: variant ${backend.variant}, ${backend.features.join(" ")}; ` +
        `${backend.compiler}): GGML_NATIVE=OFF with exactly the variant's feature options on (the same -m flags and GGML_<feature> definitions as the variant build, not -march=native), GGML_BACKEND_DL, ` +
        `GGML_OPENMP=OFF, one CPU module (libggml-cpu.so) beside the binary. Engine CPU backend: ${engineBackend ?? "?"}; llama-bench backends: ` +
        `${peerInfo?.backends ?? "?"}, CPU ${peerInfo?.cpu_info ?? "?"}.`,
        `Engine rows: lib/bench/ModelBench.ts (selfrag bench's pp/tg), one sequence, gpu off. llama-bench: -p ${PROMPT} -n ${GEN} -t T -r ${REPS} ` +
        `(defaults: n_batch ${peerInfo?.n_batch ?? "?"}, n_ubatch ${peerInfo?.n_ubatch ?? "?"}, flash_attn ${String(peerInfo?.flash_attn ?? "?")}, ` +
        `KV ${peerInfo?.type_k ?? "?"}).`,
        `Interleaved: ${ROUNDS} rounds per thread count, each one engine run (model load, warm-up, ${REPS} repetitions) and one llama-bench run ` +
        `(warm-up, ${REPS} repetitions), order alternating; each round gives one mean rate per side; figures are medians over rounds.`,
        "",
        `| Threads | engine pp${PROMPT} (t/s) | llama-bench pp${PROMPT} | pp ratio | engine tg${GEN} (t/s) | llama-bench tg${GEN} | tg ratio | ` +
        "engine ms per generated token vs per prompt token (compute floor) | tg bandwidth ceiling (read bandwidth / weight bytes per step) |",
        "|---:|---:|---:|---:|---:|---:|---:|---|---|",
        ...table,
        "");
    const result: BenchResult = {
        name: "realistic-shape", title: `Engine pp${PROMPT}/tg${GEN} against llama-bench on the 1B Q4_0 fixture (like for like)`,
        environment: environment("auto"), measurements, comparisons, notes
    };
    writeResult(result);
    return result;
}
