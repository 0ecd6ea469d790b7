// One side of the CPU-backend bench (cpuBackend.bench.ts), in its own process since a process
// loads one ggml CPU backend: SELFRAG_CPU_BACKEND=prebuilt or the default (the compiled one).
// Times with tinybench, on the `bench` fixture, one thread: 12 sequences prefilled with 64 tokens
// each (one step loop batch of 768 tokens), 32 batched greedy steps of those 12 sequences, and one
// short-form question (5 passages, 32 new tokens, mode always). Prints one JSON line.
import {Bench} from "tinybench";
import {SelfRagModel} from "../lib/SelfRagModel.js";
import {MODEL_FILE} from "./benchModel.js";
import {PASSAGES, QUESTION} from "./shortFormInputs.js";

const SEQUENCES = 12;
const PROMPT = 64;
const STEPS = 32;

const model = await SelfRagModel.load({modelPath: MODEL_FILE, contextSize: 512, sequences: SEQUENCES, threads: 1, gpu: false});
const context = model.context;
let round = 0;
const prompt = (seq: number) => Int32Array.from({length: PROMPT}, (_, j) => 100 + ((j * 7 + seq * 13 + round) % 30000));
let slots: number[] = [];
const bench = new Bench({name: "cpu-backend", iterations: 5, time: 0, warmupIterations: 1, warmupTime: 0, throws: true});
bench.add("prefill", async () => {
    await Promise.all(slots.map((seq) => context.prefill(seq, prompt(seq))));
}, {
    beforeEach: () => {
        round += 1;
        slots = context.acquire(SEQUENCES);
    },
    afterEach: async () => {
        await context.release(...slots);
    }
});
bench.add("decode steps", async () => {
    await context.generate(slots.map((seq) => ({seq, maxTokens: STEPS + 1})));
}, {
    beforeEach: async () => {
        round += 1;
        slots = context.acquire(SEQUENCES);
        await Promise.all(slots.map((seq) => context.prefill(seq, prompt(seq))));
    },
    afterEach: async () => {
        await context.release(...slots);
    }
});
bench.add("short-form question", async () => {
    await model.answer({question: QUESTION, passages: PASSAGES}, {mode: "always", ndocs: PASSAGES.length, maxNewTokens: STEPS});
});
await bench.run();
const medianMs = Object.fromEntries(bench.tasks.map((t) => {
    if (t.result?.state !== "completed") throw new Error(`${t.name}: ${t.result?.state}`);
    return [t.name, t.result.latency.p50];
}));
console.log(JSON.stringify({cpuBackend: model.cpuBackend, medianMs}));
await model.dispose();
process.exit(0);
