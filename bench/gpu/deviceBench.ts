// The GPU measurements, in a process of their own (one llama.cpp variant per process): run by
// bench/gpu.bench.ts when a CUDA device exists; prints one JSON line {measurements, comparisons}.
//   - the reflection kernel: rows/s of the CUDA kernel (host rows, one upload) vs the CPU kernel
//     (auto ISA, one thread) at 1 to 256 rows of 32016 logits;
//   - end to end: a short-form answer with the model on the GPU, rows reduced at the output
//     tensor by the CUDA kernel (extraction "output") vs from llama.cpp's host copy ("host").
import {Bench} from "tinybench";
import {loadAddon} from "../../lib/engine/addon.js";
import {extractWith} from "../../lib/engine/ReflectionKernel.js";
import {SelfRagModel} from "../../lib/SelfRagModel.js";
import {mulberry32} from "../../test-support/random.js";
import {ensureBenchModel, MODEL_FILE} from "../benchModel.js";
import {measurement, medianOf, type Comparison, type Measurement} from "../common.js";

const VOCAB = 32016;
const IDS = Int32Array.from({length: 15}, (_, i) => 32000 + i);
const ROWS = [1, 16, 64, 256] as const;
const PASSAGES = [
    {title: "Rome", text: "Rome is the capital city of Italy, on the Tiber."},
    {title: "Paris", text: "Paris is the capital of France, on the Seine."},
    {title: "Vienna", text: "Vienna is the capital of Austria, on the Danube."},
    {title: "Madrid", text: "Madrid is the capital of Spain."}
];

async function main(): Promise<void> {
    const {addon} = await loadAddon({gpu: "cuda"});
    const measurements: Measurement[] = [];
    const comparisons: Comparison[] = [];
    const bench = new Bench({time: 700, warmupTime: 150});
    const next = mulberry32(1);
    for (const rows of ROWS) {
        const logits = Float32Array.from({length: rows * VOCAB}, () => (next() * 2 - 1) * 6);
        bench.add(`CPU kernel, ${rows} rows`, () => void extractWith(addon, logits, rows, VOCAB, IDS, {isa: "auto"}));
        bench.add(`CUDA kernel, ${rows} rows (one upload)`, () => void extractWith(addon, logits, rows, VOCAB, IDS, {isa: "cuda"}));
    }
    await bench.run();
    for (const rows of ROWS) {
        measurements.push(measurement(bench.tasks.find((t) => t.name === `CPU kernel, ${rows} rows`)!, `cpu:${rows}`, `${rows} rows`));
        measurements.push(measurement(bench.tasks.find((t) => t.name === `CUDA kernel, ${rows} rows (one upload)`)!, `cuda:${rows}`, `${rows} rows`));
        comparisons.push({label: `reflection kernel at ${rows} rows: CPU time / CUDA time`,
            value: medianOf(measurements, `cpu:${rows}`) / medianOf(measurements, `cuda:${rows}`), unit: "x"});
    }

    await ensureBenchModel();
    const answerBench = new Bench({iterations: 5, time: 0, warmupIterations: 1});
    const models: Record<string, SelfRagModel> = {};
    for (const extraction of ["output", "host"] as const) {
        models[extraction] = await SelfRagModel.load({modelPath: MODEL_FILE, gpu: "cuda", sequences: 16, contextSize: 512, extraction});
        answerBench.add(`short-form answer on the GPU, extraction ${extraction}`, async () => {
            await Promise.all(Array.from({length: 4}, (_, i) => models[extraction].answer({question: `Which capital is number ${i}?`, passages: PASSAGES},
                {ndocs: 4, maxNewTokens: 32, mode: "always"})));
        });
    }
    await answerBench.run();
    for (const extraction of ["output", "host"]) {
        measurements.push(measurement(answerBench.tasks.find((t) => t.name.endsWith(extraction))!, `answer:${extraction}`, "4 questions"));
    }
    comparisons.push({label: "4 concurrent questions (16 slots): time with host extraction / with device extraction",
        value: medianOf(measurements, "answer:host") / medianOf(measurements, "answer:output"), unit: "x"});
    for (const model of Object.values(models)) await model.dispose();
    console.log(JSON.stringify({device: addon.cudaDevice(), measurements, comparisons}));
}

main().then(() => process.exit(0), (error: unknown) => {
    console.error(error);
    process.exit(1);
});
