import os from "node:os";
import {SelfRagError, invalidParameterError} from "../errors.js";
import {BENCH_FORMATS, formatBench, type BenchFormat} from "../bench/benchReport.js";
import {runModelBench, type BenchRowKind} from "../bench/ModelBench.js";
import {CACHE_FLAGS_HELP, cacheFlags, cacheOptions, parseCommand} from "./contract.js";
import {integerOption, requireModel} from "./options.js";

const help = `Usage: selfrag bench [--model FILE] [options]

Decoding speed on your model and hardware, like llama-bench, with Self-RAG's workloads:
  engine rows   pp<N>: prompt tokens/s at each prompt length; tg<N>: generated tokens/s; fork128: ms
                to share a 128-token prefix; each at 1, 2, 4, ... concurrent sequences, the
                reflection log-probs extracted as in real use (counts read from the engine's counters)
  selfrag rows  short-form and long-form questions/s, one question and saturated (as many at once
                as the slots hold), with time per answer, time to the first event and the long
                form's evaluated-token ratio
  peer row      the naive node-llama-cpp way on the same model (one passage after another, full
                probability maps), its answer checked against selfrag's before it is timed
Options:
  --model FILE          a Self-RAG GGUF (default: $SELFRAG_MODEL, else the model \`selfrag pull\` recorded)
  --sequences LIST      concurrent sequences of the engine rows (1,4)
  --prompt LIST         prompt lengths of the pp rows (128,512)
  --gen N               tokens per sequence of the tg rows (32)
  --ndocs N             passages per question of the Self-RAG rows (5)
  --max-new-tokens N    tokens per candidate / segment of the Self-RAG rows (32)
  --beam-width N --max-depth N   long form (2, 3)
  --rows LIST           engine,selfrag,peer (all); --no-peer drops the peer (it loads the model twice)
  --threads LIST        CPU threads, one run each (default: the model's default); more than the
                        machine's cores is warned about (the rows then measure contention)
  --cpu | --gpu-layers N
  ${CACHE_FLAGS_HELP}; the header reports the KV bytes per slot
  -r, --repetitions N   timed repetitions after one warm-up (3); values are mean ± standard deviation
  --output FORMAT       md (default) | json | jsonl | csv`;

export async function benchCommand(args: string[]): Promise<void> {
    const parsed = parseCommand("selfrag bench", help, {args, options: {
        model: {type: "string"}, sequences: {type: "string"}, prompt: {type: "string"}, gen: {type: "string"}, ndocs: {type: "string"},
        "max-new-tokens": {type: "string"}, "beam-width": {type: "string"}, "max-depth": {type: "string"}, rows: {type: "string"},
        "no-peer": {type: "boolean"}, threads: {type: "string"}, cpu: {type: "boolean"}, "gpu-layers": {type: "string"},
        repetitions: {type: "string", short: "r"}, output: {type: "string"}, ...cacheFlags
    }});
    if (parsed == null) return;
    const {values} = parsed;
    const list = (flag: string, value: string | undefined) => value?.split(",").map((v) => {
        const n = Number(v.trim());
        if (v.trim() === "" || !Number.isInteger(n) || n < 1) throw invalidParameterError(flag, "a comma-separated list of positive integers", value);
        return n;
    });
    const format = (values.output ?? "md") as BenchFormat;
    if (!BENCH_FORMATS.includes(format)) throw invalidParameterError("--output", BENCH_FORMATS.join(" | "), values.output);
    let rows = values.rows?.split(",").map((r) => r.trim()) as BenchRowKind[] | undefined;
    for (const r of rows ?? []) if (!["engine", "selfrag", "peer"].includes(r)) throw invalidParameterError("--rows", "a list of engine, selfrag, peer", values.rows);
    if (values["no-peer"]) rows = (rows ?? ["engine", "selfrag", "peer"]).filter((r) => r !== "peer");
    const one = (flag: string, value: string | undefined) => {
        const n = integerOption(flag, value);
        if (n != null && n < 1) throw invalidParameterError(flag, "a positive integer", value);
        return n;
    };
    const progress = (message: string) => {
        if (process.stderr.isTTY) process.stderr.write(`\r\x1b[Kbench: ${message}`);
        else process.stderr.write(`bench: ${message}\n`);
    };
    // More llama.cpp threads than cores: they spin against each other and every row measures
    // that contention (issue 24: pp128 at 256 t/s with 4 threads on 2 cores, 48,601 with 1).
    const threads = list("--threads", values.threads);
    const cores = os.availableParallelism();
    const over = threads?.filter((t) => t > cores) ?? [];
    if (over.length > 0) {
        process.stderr.write(`selfrag: warning: --threads ${over.join(",")} exceeds the ${cores} core${cores === 1 ? "" : "s"} this process may use ` +
            "(os.availableParallelism()): llama.cpp's threads will contend for them and those rows can be many times slower\n");
    }
    const result = await runModelBench({
        modelPath: requireModel(values.model), sequences: list("--sequences", values.sequences), prompts: list("--prompt", values.prompt),
        generate: one("--gen", values.gen), ndocs: one("--ndocs", values.ndocs), maxNewTokens: one("--max-new-tokens", values["max-new-tokens"]),
        beamWidth: one("--beam-width", values["beam-width"]), maxDepth: one("--max-depth", values["max-depth"]), rows,
        threads, gpu: values.cpu ? false : "auto", gpuLayers: integerOption("--gpu-layers", values["gpu-layers"]),
        repetitions: one("--repetitions", values.repetitions), onProgress: progress, ...cacheOptions(values)
    });
    if (process.stderr.isTTY) process.stderr.write("\r\x1b[K");
    if (result.rows.length === 0) throw new SelfRagError("no rows were measured", "INVALID_ARGUMENT");
    process.stdout.write(formatBench(result, format));
}
