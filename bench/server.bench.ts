// Serving many callers, in one process and one run, on the `bench` fixture model (random
// weights, ~53M parameters, f32): QUESTIONS short-form requests of 3 passages each, arriving at
// once.
//   - baseline: the requests answered one after another with model.answer() (what a server does
//     that serialises access to the model, e.g. behind a mutex);
//   - scheduler: the same requests through RequestScheduler (concurrent callers; requests queued
//     together run as one answerBatch: prompts prefilled together, every candidate of a wave in
//     shared decode steps);
//   - HTTP: the same through SelfRagServer over real sockets (fetch), to show what HTTP and JSON add.
// Answers are checked equal across the three before timing. Timings only feed ratios and the
// report; nothing asserts a timing.
import os from "node:os";
import {Bench} from "tinybench";
import type {Passage} from "../lib/selfrag/prompts.js";
import {RequestScheduler} from "../lib/serving/RequestScheduler.js";
import {SelfRagModel} from "../lib/SelfRagModel.js";
import {SelfRagServer} from "../lib/serving/SelfRagServer.js";
import {ensureBenchModel, MODEL_FILE} from "./benchModel.js";
import {environment, measurement, medianOf, writeResult, type BenchResult, type Measurement} from "./common.js";

const QUESTIONS = 12;
const NDOCS = 3;
/** Four questions per wave. */
const SEQUENCES = 12;
const MAX_NEW_TOKENS = 16;
const TIMING = {iterations: 3, time: 0, warmupIterations: 1, warmupTime: 0};

const TOPICS = ["Eiffel Tower", "Carmen", "Danube", "Marie Curie", "Mount Fuji", "Amazon River", "Ada Lovelace", "Great Wall",
    "Sahara", "Beethoven", "Nile", "Kilimanjaro"];

function passagesFor(topic: string): Passage[] {
    return [
        {title: topic, text: `${topic} is the subject of this passage, which gives its history, its place and the people linked to it.`},
        {title: `${topic} (history)`, text: `The history of ${topic} spans several centuries and is documented in many sources.`},
        {title: `${topic} (culture)`, text: `${topic} appears in literature, painting and film, and draws visitors every year.`}
    ];
}

const REQUESTS = Array.from({length: QUESTIONS}, (_, i) => ({
    question: {question: `What is known about ${TOPICS[i % TOPICS.length]}?`, passages: passagesFor(TOPICS[i % TOPICS.length])},
    options: {ndocs: NDOCS, maxNewTokens: MAX_NEW_TOKENS}
}));

export async function run(): Promise<BenchResult> {
    await ensureBenchModel();
    // One thread: on 2 shared vCPUs a second llama.cpp thread stalls on its spinning barrier (see shortForm.bench.ts).
    const model = await SelfRagModel.load({modelPath: MODEL_FILE, contextSize: 512, sequences: SEQUENCES, threads: 1, gpu: false});
    const scheduler = new RequestScheduler(model);
    const server = await SelfRagServer.listen({model, port: 0});
    const measurements: Measurement[] = [];
    const decodeCalls: Record<string, number> = {};
    try {
        const sequential = async () => {
            const out = [];
            for (const r of REQUESTS) out.push(await model.answer(r.question, r.options));
            return out.map((a) => a.answer);
        };
        const scheduled = async () => (await Promise.all(REQUESTS.map((r) => scheduler.answer(r.question, r.options)))).map((a) => a.answer);
        const overHttp = async () => (await Promise.all(REQUESTS.map(async (r) => {
            const res = await fetch(`${server.url}/v1/answer`, {method: "POST", body: JSON.stringify({...r.question, ...r.options})});
            if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
            return (await res.json() as {answer: string}).answer;
        })));

        // Same answers three ways, and the decode calls each way costs.
        const runs: [string, () => Promise<string[]>][] = [["sequential", sequential], ["scheduler", scheduled], ["http", overHttp]];
        let reference: string[] | undefined;
        for (const [id, fn] of runs) {
            const before = model.context.stats.decodeCalls;
            const answers = await fn();
            decodeCalls[id] = model.context.stats.decodeCalls - before;
            reference ??= answers;
            if (JSON.stringify(answers) !== JSON.stringify(reference)) throw new Error(`${id}: answers differ from one-by-one answers`);
        }

        const bench = new Bench({name: "serving", ...TIMING, throws: true});
        const labels: Record<string, string> = {
            sequential: `one by one: model.answer() x ${QUESTIONS}`,
            scheduler: `RequestScheduler: ${QUESTIONS} concurrent requests`,
            http: `SelfRagServer: ${QUESTIONS} concurrent HTTP requests`
        };
        for (const [id, fn] of runs) {
            bench.add(labels[id], async () => {
                const t0 = performance.now();
                await fn();
                const ms = performance.now() - t0;
                return {overriddenDuration: ms / QUESTIONS, overriddenIterationCost: ms};
            });
        }
        await bench.run();
        for (const [id] of runs) measurements.push(measurement(bench.getTask(labels[id])!, id, "request"));
    } finally {
        await server.close();
        await scheduler.close();
        await model.dispose();
    }
    const result: BenchResult = {
        name: "server",
        title: `Serving ${QUESTIONS} concurrent short-form requests: one by one vs RequestScheduler vs HTTP`,
        environment: environment("auto"),
        measurements,
        comparisons: [
            {label: "throughput, scheduler / one by one", value: medianOf(measurements, "sequential") / medianOf(measurements, "scheduler"), unit: "x"},
            {label: "throughput, HTTP server / one by one", value: medianOf(measurements, "sequential") / medianOf(measurements, "http"), unit: "x"},
            {label: "HTTP + JSON cost over the scheduler (time ratio)", value: medianOf(measurements, "http") / medianOf(measurements, "scheduler"), unit: "x"}
        ],
        notes: [
            `Workload: ${QUESTIONS} questions, ${NDOCS} passages each (one candidate per passage), ${MAX_NEW_TOKENS} new tokens per ` +
            `candidate, ${SEQUENCES} slots of 512 tokens (${SEQUENCES / NDOCS} questions per wave), threads 1, on ${os.cpus().length} logical CPUs.`,
            `llama_decode calls for the whole set: one by one ${decodeCalls.sequential}, scheduler ${decodeCalls.scheduler}, ` +
            `HTTP ${decodeCalls.http}. Submitted in one tick, the scheduler's twelve start as one batch; over HTTP they arrive ` +
            "in separate ticks, so the first starts alone and the rest queue behind it and run as the next batch.",
            "Answers are identical all three ways (checked before timing). Times are per request, medians of whole runs of all requests.",
            "Machines are shared and noisy: compare ratios, not absolute times."
        ]
    };
    writeResult(result);
    return result;
}
