// `selfrag bench`'s rows on the bench fixture: the repository runs the same code the command ships
// (lib/bench/ModelBench.ts), so its engine and Self-RAG figures and the user's come from one place.
import {runModelBench} from "../lib/bench/ModelBench.js";
import {formatBench} from "../lib/bench/benchReport.js";
import {ensureBenchModel, MODEL_FILE} from "./benchModel.js";
import {environment, writeResult, type BenchResult, type Measurement} from "./common.js";

export async function run(): Promise<BenchResult> {
    await ensureBenchModel();
    const modelPath = MODEL_FILE;
    const result = await runModelBench({modelPath, threads: [1], gpu: false, sequences: [1, 4], prompts: [128, 512], generate: 32,
        repetitions: Number(process.env.SELFRAG_BENCH_REPS ?? 3), onProgress: (m) => process.stderr.write(`model bench: ${m}\n`)});
    const measurements: Measurement[] = result.rows.map((r) => {
        // Per unit of work: a token for t/s rows, a question for q/s rows, the operation for ms rows.
        const us = r.unit === "ms" ? r.mean * 1000 : 1e6 / r.mean;
        return {id: `${r.kind}:${r.test}:${r.sequences}`, label: `${r.kind} ${r.test}, ${r.sequences} sequences, ${r.threads} thread(s)`,
            unit: r.unit === "t/s" ? "token" : r.unit === "q/s" ? "question" : "operation", medianUs: us, meanUs: us,
            rmePercent: r.mean > 0 ? 100 * r.std / r.mean : 0, samples: r.repetitions};
    });
    const short = result.rows.find((r) => r.test === "short-form");
    const peer = result.rows.find((r) => r.kind === "peer");
    const bench: BenchResult = {
        name: "model", title: "selfrag bench on the bench fixture (the rows `selfrag bench` prints)",
        environment: environment("auto"), measurements,
        comparisons: short != null && peer != null ? [{label: "short form, one question: selfrag / naive node-llama-cpp (q/s)", value: short.mean / peer.mean, unit: "x"}] : [],
        notes: ["Produced by runModelBench, the code behind `selfrag bench`; the table below is its own Markdown output.", "", ...formatBench(result, "md").split("\n")]
    };
    writeResult(bench);
    return bench;
}
