// Self-RAG serving on a realistic shape (issue 26): the 1B Q4_0 fixture (`selfrag fixture --kind 1b
// --quant q4_0`: random weights, TinyLlama 1.1B's shape, the Self-RAG vocabulary), selfrag's server
// against llama-server built like for like (the engine's compiled CPU variant, flags and compiler:
// bench/peer/buildLlamaServer.ts, ensureLikeForLikeLlamaServer), both with SLOTS slots of CONTEXT
// tokens and the same threads, driven over HTTP as in serving.bench.ts (bench/servingSystems.ts):
//   - single: QUESTIONS_SINGLE questions one at a time;
//   - burst: 12 questions at once (3 passages, 32 tokens each): the issue's workload.
// Beside wall time and latencies, the work each side did: tokens through llama_decode (ours: the
// engine's counter; llama-server: the prompt tokens it did not take from its cache plus the generated
// tokens it decoded, from each response's timings) and decode steps. And the two ceilings a run
// cannot beat on this machine:
//   - compute: tokens evaluated / the prompt rate (llama-bench pp64, same build, same threads);
//   - bandwidth: decode steps x the weight bytes a step reads (every tensor but the token
//     embedding, of which a step reads one row per token) / the measured read bandwidth
//     (bench/peer/readBandwidth.c, same threads).
// Both retrieve for every question (mode "always"), on the same questions per run; the systems
// alternate run by run; timings feed ratios and the report; nothing asserts.
// Environment: SELFRAG_BENCH_REPS (3), SELFRAG_BENCH_THREADS (1).
import fs from "node:fs";
import os from "node:os";
import {spawnSync} from "node:child_process";
import {SelfRagModel} from "../lib/SelfRagModel.js";
import {SelfRagServer} from "../lib/serving/SelfRagServer.js";
import {ensureFixture1b} from "./benchModel.js";
import {environment, median, sampleMeasurement, writeResult, type BenchResult, type Comparison, type Measurement} from "./common.js";
import {ensureLikeForLikeLlamaServer, ensureLlamaBench} from "./peer/buildLlamaServer.js";
import {LlamaServerPeer} from "./peer/LlamaServerPeer.js";
import {measureReadBandwidth, weightBytesPerStep} from "./peer/readBandwidth.js";
import type {PeerWork} from "./peer/topKSelfRag.js";
import {peerSystem, percentile, runWorkload, selfragSystem, shortRequest, type Request, type System} from "./servingSystems.js";

const SLOTS = 12;
const CONTEXT = 512;
const NDOCS = 3;
const QUESTIONS_SINGLE = 4;
const REPS = Math.max(1, Number(process.env.SELFRAG_BENCH_REPS ?? 3));
const THREADS = Math.max(1, Number(process.env.SELFRAG_BENCH_THREADS ?? 1));
// Both retrieve for every question: the peer cannot see [Retrieval] in its top 20 on random weights
// (serving.bench.ts's header), and on this model our threshold rule would skip some questions.
const SETTINGS = {ndocs: NDOCS, long: {beamWidth: 2, maxDepth: 3}, mode: "always" as const};
const TARGETS = {throughput: 1.2, p50: 0.8};

const WORKLOADS: Record<string, {label: string, requests: Request[], sequential?: boolean}> = {
    single: {label: `one question at a time (${QUESTIONS_SINGLE}, 32 tokens)`, sequential: true,
        requests: Array.from({length: QUESTIONS_SINGLE}, (_, i) => shortRequest(i, 32, 0.2, 0.5))},
    burst: {label: "12 questions at once (3 passages, 32 tokens)", requests: Array.from({length: 12}, (_, i) => shortRequest(i, 32, 0.2, 0.5))}
};

/** What one run of a workload cost a system. */
interface Work {
    tokens: number;
    steps: number;
    cached?: number;
}

/** llama-bench's pp64 rate (t/s) with the like-for-like build: the prompt rate the compute ceiling divides by. */
function promptRate(binary: string, model: string): number {
    const result = spawnSync(binary, ["-m", model, "-p", "64", "-n", "0", "-t", String(THREADS), "-r", "3", "-o", "json"], {encoding: "utf8"});
    if (result.status !== 0) throw new Error(`llama-bench failed (${result.status}): ${result.stderr.slice(-1000)}`);
    const rows = JSON.parse(result.stdout) as {n_prompt: number, avg_ts: number}[];
    const row = rows.find((r) => r.n_prompt === 64);
    if (row == null) throw new Error(`llama-bench printed no pp64 row: ${result.stdout.slice(0, 300)}`);
    return row.avg_ts;
}

export async function run(): Promise<BenchResult> {
    const modelFile = await ensureFixture1b();
    const server = await ensureLikeForLikeLlamaServer();
    const llamaBench = await ensureLlamaBench();
    const weights = weightBytesPerStep(modelFile);
    const rates: number[] = [promptRate(llamaBench.binary, modelFile)];
    const bandwidths: number[] = [measureReadBandwidth(THREADS)];

    const model = await SelfRagModel.load({modelPath: modelFile, contextSize: CONTEXT, sequences: SLOTS, threads: THREADS, gpu: false});
    const ours = await SelfRagServer.listen({model, port: 0});
    const peer = await LlamaServerPeer.start({model: modelFile, binary: server.binary, parallel: SLOTS, ctxPerSlot: CONTEXT, threads: THREADS});
    const peerWork: PeerWork = {requests: 0, promptEvaluated: 0, promptCached: 0, predicted: 0};
    const systems: Record<string, System> = {
        selfrag: selfragSystem(Number(new URL(ours.url).port), SETTINGS),
        "llama-server": peerSystem(peer, SETTINGS, peerWork)
    };
    const walls = new Map<string, number[]>();
    const latencies = new Map<string, number[]>();
    const works = new Map<string, Work[]>();
    const push = <T>(map: Map<string, T[]>, id: string, ...values: T[]) => (map.get(id) ?? map.set(id, []).get(id)!).push(...values);
    try {
        for (const system of Object.values(systems)) await runWorkload(system, {requests: WORKLOADS.burst.requests.slice(0, 3)}, "[warm-up] ");
        for (let rep = 0; rep < REPS; rep++) {
            for (const [workloadId, workload] of Object.entries(WORKLOADS)) {
                // Alternate who goes first: a slow stretch of the shared machine falls on both alike.
                const order = (rep + (workloadId === "burst" ? 1 : 0)) % 2 === 0 ? ["selfrag", "llama-server"] : ["llama-server", "selfrag"];
                for (const systemId of order) {
                    const id = `${systemId}:${workloadId}`;
                    const stats = model.context.stats;
                    const peerBefore = {...peerWork};
                    const metricsBefore = systemId === "llama-server" ? await peer.metrics() : undefined;
                    // The same questions for both systems in a run; each system sees a question once.
                    const {wallMs, outcomes} = await runWorkload(systems[systemId], workload, `[${workloadId} ${rep + 1}] `);
                    if (systemId === "selfrag") {
                        const after = model.context.stats;
                        push(works, id, {tokens: after.tokensEvaluated - stats.tokensEvaluated, steps: after.steps - stats.steps});
                    } else {
                        const metrics = await peer.metrics();
                        // A request's last generated token is never decoded (the server stops before it).
                        const requests = peerWork.requests - peerBefore.requests;
                        push(works, id, {
                            tokens: peerWork.promptEvaluated - peerBefore.promptEvaluated + peerWork.predicted - peerBefore.predicted - requests,
                            cached: peerWork.promptCached - peerBefore.promptCached,
                            steps: (metrics.n_decode_total ?? NaN) - (metricsBefore!.n_decode_total ?? NaN)
                        });
                    }
                    push(walls, id, wallMs);
                    push(latencies, id, ...outcomes.map((o) => o.latencyMs));
                    process.stderr.write(`serving 1b: ${id} #${rep + 1}: ${(wallMs / 1000).toFixed(1)} s, p50 ` +
                        `${(percentile(outcomes.map((o) => o.latencyMs), 50) / 1000).toFixed(1)} s, ${works.get(id)!.at(-1)!.tokens} tokens\n`);
                }
            }
        }
    } finally {
        await peer.close();
        await ours.close();
        await model.dispose();
    }
    rates.push(promptRate(llamaBench.binary, modelFile));
    bandwidths.push(measureReadBandwidth(THREADS));
    const rate = median(rates);
    const bandwidth = median(bandwidths);

    const measurements: Measurement[] = [];
    const comparisons: Comparison[] = [];
    const table: string[] = [];
    const perRequest = (id: string) => median(walls.get(id)!) / WORKLOADS[id.split(":")[1]].requests.length;
    const lat = (id: string, p: number) => percentile(latencies.get(id) ?? [], p);
    const workOf = (id: string) => {
        const runs = works.get(id)!;
        return {tokens: median(runs.map((w) => w.tokens)), steps: median(runs.map((w) => w.steps)),
            cached: runs[0].cached == null ? undefined : median(runs.map((w) => w.cached!))};
    };
    for (const [workloadId, workload] of Object.entries(WORKLOADS)) {
        for (const systemId of Object.keys(systems)) {
            const id = `${systemId}:${workloadId}`;
            measurements.push(sampleMeasurement(id, `${systemId}: ${workload.label} (wall time per request)`, "request",
                walls.get(id)!.map((ms) => ms / workload.requests.length)));
            const work = workOf(id);
            const wall = median(walls.get(id)!) / 1000;
            const compute = work.tokens / rate;
            const bandwidthFloor = work.steps * weights.bytes / (bandwidth * 1e9);
            table.push(`| ${workload.label} | ${systemId} | ${wall.toFixed(2)} | ${(lat(id, 50) / 1000).toFixed(2)} | ${(lat(id, 99) / 1000).toFixed(2)} | ` +
                `${work.tokens}${work.cached != null ? ` (+${work.cached} cached)` : ""} | ${work.steps} | ${compute.toFixed(2)} | ${bandwidthFloor.toFixed(2)} | ` +
                `${(Math.max(compute, bandwidthFloor) / wall).toFixed(2)} |`);
        }
        const ourId = `selfrag:${workloadId}`;
        const peerId = `llama-server:${workloadId}`;
        comparisons.push(
            {label: `${workload.label}: throughput, selfrag / llama-server`, value: perRequest(peerId) / perRequest(ourId), unit: "x",
                ...(workloadId === "burst" ? {target: {kind: "min" as const, value: TARGETS.throughput}} : {})},
            {label: `${workload.label}: p50 latency, selfrag / llama-server`, value: lat(ourId, 50) / lat(peerId, 50), unit: "x",
                ...(workloadId === "burst" ? {target: {kind: "max" as const, value: TARGETS.p50}} : {})},
            {label: `${workload.label}: p99 latency, selfrag / llama-server`, value: lat(ourId, 99) / lat(peerId, 99), unit: "x"},
            {label: `${workload.label}: tokens evaluated, selfrag / llama-server`, value: workOf(ourId).tokens / workOf(peerId).tokens, unit: "x"});
    }
    const {variant} = llamaBench;
    const result: BenchResult = {
        name: "serving-1b",
        title: "Self-RAG serving on the 1B Q4_0 shape: selfrag's server vs llama-server built like for like",
        environment: environment("auto"),
        measurements,
        comparisons,
        notes: [
            `Model: selfrag fixture --kind 1b --quant q4_0 (random weights, TinyLlama 1.1B shape, Self-RAG vocabulary), ` +
            `${(fs.statSync(modelFile).size / 1e6).toFixed(0)} MB; a decode step reads ${(weights.bytes / 1e6).toFixed(0)} MB of weights` +
            `${weights.tied ? " (output tied to the embedding)" : " (all but the token embedding)"}.`,
            `${SLOTS} slots of ${CONTEXT} tokens on each side, ${NDOCS} passages per question, ${THREADS} thread(s), on ${os.cpus().length} logical CPUs; ` +
            `${REPS} runs of every workload, the systems alternating; figures are medians over runs, latencies pooled.`,
            `llama-server: built from node-llama-cpp's llama.cpp source with the engine's compiled CPU variant's flags (${variant}; ` +
            "bench/peer/buildLlamaServer.ts), --parallel, --cont-batching, driven by the top-20 Self-RAG client (bench/peer/topKSelfRag.ts) " +
            "in mode \"always\"; its tokens = prompt tokens not taken from its cache + generated tokens decoded (each response's timings); " +
            "steps = its llama_decode calls (/metrics n_decode_total).",
            `Ceilings: prompt rate ${rates.map((r) => r.toFixed(1)).join(" / ")} t/s (llama-bench pp64, ${THREADS} thread(s), before / after), ` +
            `read bandwidth ${bandwidths.map((b) => b.toFixed(1)).join(" / ")} GB/s (bench/peer/readBandwidth.c, ${THREADS} thread(s), before / after). ` +
            "compute = tokens / prompt rate; bandwidth = steps x weight bytes / bandwidth; the last column is the larger of the two over the wall time " +
            "(1.00 = at the machine's limit).",
            "",
            "| Workload | System | Wall (s) | p50 (s) | p99 (s) | Tokens evaluated | Decode steps | Compute ceiling (s) | Bandwidth ceiling (s) | Ceiling / wall |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
            ...table,
            "",
            "Machines are shared and noisy: compare ratios, not absolute times."
        ]
    };
    writeResult(result);
    return result;
}
