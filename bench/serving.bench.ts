// Serving many callers, on the `bench` fixture model (random weights, ~53M parameters, f32), 12
// slots, 3 passages per question, one thread, three systems measured in one run:
//   - selfrag: SelfRagServer over real sockets (continuous batching: one step loop, per-question
//     flows, any options in the same steps);
//   - static: the former policy (option-keyed groups, one at a time, waves waiting for their
//     slowest question), re-implemented on the same engine in this process (bench/baselines);
//   - llama-server: llama.cpp's own server built from the same llama.cpp source (continuous
//     batching, 12 slots), driven by a Self-RAG client that scores from the top-20 log-probs
//     (bench/peer), as FlashRAG does.
// Every HTTP request sends `Connection: close` to both servers (llama-server's fixed pool of HTTP
// threads waits on idle keep-alive connections). The peer runs in mode "always": on random
// weights [Retrieval] / [No Retrieval] are outside its top 20, so its adaptive rule would never
// retrieve and would do a third of the work; ours retrieves for every question here (p ~ 0.5 >
// every threshold used), so both do the same work.
// Workloads: one question at a time; (a) 12 concurrent requests with 12 different thresholds,
// weights and budgets (and the same 12 with equal options, for the decode-call ratio); (b) 48
// requests arriving over time (seeded Poisson), one in four long form, mixed budgets; (c) 48
// short-form requests at once (saturation). Timings feed ratios and the report; nothing asserts.
import os from "node:os";
import {Bench} from "tinybench";
import {mulberry32} from "../lib/random.js";
import {SelfRagModel} from "../lib/SelfRagModel.js";
import {SelfRagServer} from "../lib/serving/SelfRagServer.js";
import {StaticBatchScheduler} from "./baselines/StaticBatchScheduler.js";
import {ensureBenchModel, MODEL_FILE} from "./benchModel.js";
import {environment, writeResult, type BenchResult, type Comparison, type Measurement} from "./common.js";
import {LlamaServerPeer} from "./peer/LlamaServerPeer.js";
import {peerSystem, percentile, runWorkload, selfragSystem, shortRequest, TOPICS, type Request, type System} from "./servingSystems.js";

const SEQUENCES = 12;
const NDOCS = 3;
const CONTEXT = 512;
const REPS = Number(process.env.SELFRAG_BENCH_REPS ?? 3);
const ARRIVAL_RATE = 6; // requests per second, above what any of the three sustains

// Mean 32, and ordered so that the four "lanes" of three slots each (12 slots, 3 per question)
// end up with equal total budgets when each lane takes the next question as it frees up: the
// decode-call ratio of (a) then measures what different options cost the batching, not the
// makespan of an unbalanced job list.
const BUDGETS_A = [26, 30, 34, 38, 38, 34, 30, 26, 31, 33, 30, 34];
const BUDGETS_B = [16, 24, 32, 48];

const WORKLOADS: Record<string, {label: string, requests: Request[], sequential?: boolean}> = {
    single: {label: "one question at a time (12, 32 tokens)", sequential: true,
        requests: Array.from({length: 12}, (_, i) => shortRequest(i, 32, 0.2, 0.5))},
    equal: {label: "(a) 12 concurrent, equal options", requests: Array.from({length: 12}, (_, i) => shortRequest(i, 32, 0.2, 0.5))},
    mixed: {label: "(a) 12 concurrent, 12 different thresholds/weights/budgets",
        requests: Array.from({length: 12}, (_, i) => shortRequest(i, BUDGETS_A[i], 0.1 + 0.01 * i, 0.3 + 0.05 * i))},
    arrivals: {label: "(b) 48 arriving over time, 1 in 4 long form, mixed budgets", requests: arrivals()},
    saturation: {label: "(c) 48 at once, mixed budgets",
        requests: Array.from({length: 48}, (_, i) => shortRequest(i, BUDGETS_B[i % 4], 0.1 + 0.002 * i, 0.5))}
};

function arrivals(): Request[] {
    const random = mulberry32(20261130);
    let at = 0;
    return Array.from({length: 48}, (_, i) => {
        at += -Math.log(1 - random()) / ARRIVAL_RATE * 1000;
        const request = shortRequest(i, BUDGETS_B[i % 4], 0.1 + 0.002 * i, 0.3 + 0.01 * i, at);
        return i % 4 === 3 ? {...request, long: true, maxNewTokens: 24, question: `Tell me about ${TOPICS[i % TOPICS.length]}. (${i})`} : request;
    });
}

const LONG = {beamWidth: 2, maxDepth: 3};
const SETTINGS = {ndocs: NDOCS, long: LONG};

function staticSystem(scheduler: StaticBatchScheduler): System {
    return async (r) => {
        const started = performance.now();
        const options = {ndocs: NDOCS, maxNewTokens: r.maxNewTokens, threshold: r.threshold, weights: {utility: r.utility}};
        const result = (r.long
            ? await scheduler.answerLong({question: r.question, passages: r.passages}, {...options, ...LONG})
            : await scheduler.answer({question: r.question, passages: r.passages}, options)) as {answer: string};
        return {answer: result.answer, latencyMs: performance.now() - started};
    };
}

export async function run(): Promise<BenchResult> {
    await ensureBenchModel();
    // One thread each: on 2 shared vCPUs a second llama.cpp thread stalls on its spinning barrier (see shortForm.bench.ts).
    const model = await SelfRagModel.load({modelPath: MODEL_FILE, contextSize: CONTEXT, sequences: SEQUENCES, threads: 1, gpu: false});
    const server = await SelfRagServer.listen({model, port: 0});
    const port = Number(new URL(server.url).port);
    const staticScheduler = new StaticBatchScheduler(model);
    const peer = await LlamaServerPeer.start({model: MODEL_FILE, parallel: SEQUENCES, ctxPerSlot: CONTEXT, threads: 1});
    const systems: Record<string, System> = {selfrag: selfragSystem(port, SETTINGS), static: staticSystem(staticScheduler),
        "llama-server": peerSystem(peer, SETTINGS)};
    const latencies = new Map<string, number[]>();
    const firstEvents = new Map<string, number[]>();
    const decodeCalls = new Map<string, number[]>();
    const occupancy = new Map<string, number[]>();
    const saturated = new Map<string, number[]>();
    const measurements: Measurement[] = [];
    try {
        // Warm every system (first-request costs, the peer's prompt cache state) and check that
        // ours answers as the static baseline does: same engine, same answers.
        for (const system of Object.values(systems)) await runWorkload(system, {requests: WORKLOADS.equal.requests.slice(0, 4)});
        const ours = await runWorkload(systems.selfrag, WORKLOADS.mixed, "[check] ");
        const theirs = await runWorkload(systems.static, WORKLOADS.mixed, "[check] ");
        if (JSON.stringify(ours.outcomes.map((o) => o.answer)) !== JSON.stringify(theirs.outcomes.map((o) => o.answer))) {
            throw new Error("selfrag and the static baseline disagree on the answers");
        }

        // One task per (run, workload, system), added run by run so the systems alternate: a
        // neighbour's load drifting over minutes then biases none of them.
        const bench = new Bench({name: "serving", iterations: 1, time: 0, warmupIterations: 0, warmupTime: 0, throws: true});
        for (let rep = 1; rep <= REPS; rep++) for (const [workloadId, workload] of Object.entries(WORKLOADS)) {
            for (const [systemId, system] of Object.entries(systems)) {
                if (workloadId === "equal" && systemId === "llama-server") continue; // only needed for our decode-call ratio
                const id = `${systemId}:${workloadId}`;
                bench.add(`${systemId}: ${workload.label} #${rep}`, async () => {
                    const stats = model.context.stats;
                    // Under saturation (requests waiting for slots), occupancy is read from the start
                    // until the last request has its slots; the drain after it is not saturation.
                    let saturatedUntil: typeof stats | undefined;
                    const queued = () => (systemId === "selfrag" ? server.scheduler.stats.queued : staticScheduler.pending);
                    const watch = setInterval(() => {
                        if (saturatedUntil == null && queued() === 0 && model.context.stats.steps > stats.steps + 5) saturatedUntil = model.context.stats;
                    }, 2);
                    const {wallMs, outcomes} = await runWorkload(system, workload).finally(() => clearInterval(watch));
                    const after = model.context.stats;
                    if (systemId !== "llama-server" && saturatedUntil != null) {
                        (saturated.get(id) ?? saturated.set(id, []).get(id)!).push(
                            (saturatedUntil.busySlotSteps - stats.busySlotSteps) / Math.max(1, saturatedUntil.slotSteps - stats.slotSteps));
                    }
                    if (systemId !== "llama-server") {
                        (decodeCalls.get(id) ?? decodeCalls.set(id, []).get(id)!).push(after.decodeCalls - stats.decodeCalls);
                        (occupancy.get(id) ?? occupancy.set(id, []).get(id)!).push(
                            (after.busySlotSteps - stats.busySlotSteps) / Math.max(1, after.slotSteps - stats.slotSteps));
                    }
                    (latencies.get(id) ?? latencies.set(id, []).get(id)!).push(...outcomes.map((o) => o.latencyMs));
                    const first = outcomes.filter((o) => o.firstEventMs != null).map((o) => o.firstEventMs!);
                    if (first.length > 0) (firstEvents.get(id) ?? firstEvents.set(id, []).get(id)!).push(...first);
                    // Time per request: the inverse of throughput.
                    return {overriddenDuration: wallMs / workload.requests.length, overriddenIterationCost: wallMs};
                });
            }
        }
        await bench.run();
        const perRun = new Map<string, number[]>();
        for (const task of bench.tasks) {
            const [systemId] = task.name.split(": ");
            const workloadId = Object.entries(WORKLOADS).find(([, w]) => task.name.includes(`: ${w.label} #`))![0];
            const latency = task.result.state === "completed" ? task.result.latency : undefined;
            if (latency == null) throw new Error(`benchmark task "${task.name}" did not complete (${task.result.state})`);
            const id = `${systemId}:${workloadId}`;
            (perRun.get(id) ?? perRun.set(id, []).get(id)!).push(latency.mean * 1000);
        }
        for (const [id, values] of perRun) {
            const [systemId, workloadId] = id.split(":");
            const mean = values.reduce((a, b) => a + b, 0) / values.length;
            const sd = Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / Math.max(1, values.length - 1));
            measurements.push({id, label: `${systemId}: ${WORKLOADS[workloadId].label} (wall time per request)`, unit: "request",
                medianUs: percentile(values, 50), meanUs: mean, rmePercent: values.length > 1 ? 100 * 1.96 * sd / Math.sqrt(values.length) / mean : 0,
                samples: values.length});
        }
    } finally {
        await peer.close();
        await server.close();
        await model.dispose();
    }

    const perRequest = (id: string) => measurements.find((m) => m.id === id)!.medianUs;
    const lat = (id: string, p: number) => percentile(latencies.get(id) ?? [], p);
    const median = (values: readonly number[] | undefined) => percentile(values ?? [], 50);
    const comparisons: Comparison[] = [
        {label: "(a) decode calls, 12 different options / 12 equal options (selfrag)",
            value: median(decodeCalls.get("selfrag:mixed")) / median(decodeCalls.get("selfrag:equal")), unit: "x", target: {kind: "max", value: 1.1}},
        {label: "(a) decode calls, 12 different options / 12 equal options (static)",
            value: median(decodeCalls.get("static:mixed")) / median(decodeCalls.get("static:equal")), unit: "x"},
        {label: "(b) throughput, selfrag / static", value: perRequest("static:arrivals") / perRequest("selfrag:arrivals"), unit: "x",
            target: {kind: "min", value: 1.5}},
        {label: "(b) p50 latency, static / selfrag", value: lat("static:arrivals", 50) / lat("selfrag:arrivals", 50), unit: "x", target: {kind: "min", value: 1}},
        {label: "(b) p99 latency, static / selfrag", value: lat("static:arrivals", 99) / lat("selfrag:arrivals", 99), unit: "x", target: {kind: "min", value: 1}},
        {label: "(c) slot occupancy while requests wait for slots (selfrag)", value: median(saturated.get("selfrag:saturation")), unit: "x",
            target: {kind: "min", value: 0.9}},
        {label: "(c) slot occupancy while requests wait for slots (static)", value: median(saturated.get("static:saturation")), unit: "x"},
        {label: "(c) slot occupancy over the whole run, drain included (selfrag)", value: median(occupancy.get("selfrag:saturation")), unit: "x"},
        {label: "(d) time to first streamed event / time to the full answer, p50 (selfrag, arrivals)",
            value: median(firstEvents.get("selfrag:arrivals")) / lat("selfrag:arrivals", 50), unit: "x"}
    ];
    for (const workload of ["single", "mixed", "arrivals", "saturation"]) {
        const name = WORKLOADS[workload].label;
        comparisons.push(
            {label: `(e) ${name}: throughput, selfrag / llama-server`, value: perRequest(`llama-server:${workload}`) / perRequest(`selfrag:${workload}`),
                unit: "x", target: {kind: "min", value: 1}},
            {label: `(e) ${name}: p50 latency, llama-server / selfrag`, value: lat(`llama-server:${workload}`, 50) / lat(`selfrag:${workload}`, 50),
                unit: "x", target: {kind: "min", value: 1}},
            {label: `(e) ${name}: p99 latency, llama-server / selfrag`, value: lat(`llama-server:${workload}`, 99) / lat(`selfrag:${workload}`, 99),
                unit: "x", target: {kind: "min", value: 1}});
    }
    const latencyTable = [...latencies.keys()].map((id) =>
        `${id}: p50 ${lat(id, 50).toFixed(0)} ms, p99 ${lat(id, 99).toFixed(0)} ms` +
        (decodeCalls.has(id) ? `, decode calls ${median(decodeCalls.get(id))}, occupancy ${median(occupancy.get(id)).toFixed(3)}` : "") +
        (saturated.has(id) ? ` (${median(saturated.get(id)).toFixed(3)} while requests waited)` : "") +
        (firstEvents.has(id) ? `, first event p50 ${median(firstEvents.get(id)).toFixed(0)} ms` : ""));
    // p50 / p99 per system and workload for the latency chart (bench/charts.ts), in ms.
    const latencyMs = Object.fromEntries([...latencies.keys()].map((id) => [id, {p50: lat(id, 50), p99: lat(id, 99)}]));
    const result: BenchResult & {figures: {latencyMs: Record<string, {p50: number, p99: number}>}} = {
        name: "serving",
        title: "Serving: continuous batching (selfrag) vs the former static batching vs llama-server with a top-20 Self-RAG client",
        environment: environment("auto"),
        measurements,
        comparisons,
        notes: [
            `Model: the bench fixture (random weights, ~53M parameters, f32). ${SEQUENCES} slots of ${CONTEXT} tokens, ${NDOCS} passages ` +
            `per question, 1 thread, on ${os.cpus().length} logical CPUs; ${REPS} runs of every workload, the systems alternating run by run; ` +
            "latencies pooled over the runs.",
            "Measurement medians are wall time per request (the inverse of throughput); latencies are per request, submission to answer.",
            `Long form (arrivals): beam ${LONG.beamWidth}, max depth ${LONG.maxDepth}, 24 tokens per segment. Arrivals: seeded Poisson at ` +
            `${ARRIVAL_RATE}/s. selfrag requests are streamed (first event = the retrieval decision).`,
            ...latencyTable,
            "static = option-keyed groups run one at a time in waves (the former RequestScheduler + answerBatch), on the same engine.",
            "llama-server: built from node-llama-cpp's llama.cpp source (bench/peer), --parallel 12 --cont-batching -t 1, mode \"always\" " +
            "(see the header of bench/serving.bench.ts); it scores from top-20 log-probs, selfrag from the full distribution.",
            "Machines are shared and noisy: compare ratios, not absolute times."
        ],
        figures: {latencyMs}
    };
    writeResult(result);
    return result;
}
