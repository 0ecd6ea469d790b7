// GPU section (issue 13): the CUDA kernels against the CPU kernel, and a short-form answer with
// and without device extraction. Runs bench/gpu/deviceBench.ts in a child process (one llama.cpp
// variant per process) when a CUDA device exists; otherwise says why and writes no results.
import {spawnSync} from "node:child_process";
import path from "node:path";
import {fileURLToPath} from "node:url";
import {environment, writeResult, type BenchResult, type Comparison, type Measurement} from "./common.js";

const here = path.dirname(fileURLToPath(import.meta.url));

export async function run(): Promise<BenchResult> {
    const child = spawnSync(process.execPath, [path.join(here, "gpu", "deviceBench.js")], {encoding: "utf8", timeout: 1_800_000});
    const last = child.stdout.trim().split("\n").at(-1) ?? "";
    let parsed: {device: {name: string, computeCapability: string, archs: string}, measurements: Measurement[], comparisons: Comparison[]} | undefined;
    try {
        parsed = child.status === 0 ? JSON.parse(last) : undefined;
    } catch {
        parsed = undefined;
    }
    const result: BenchResult = {
        name: "gpu",
        title: "GPU: the CUDA kernels vs the CPU kernel, and device extraction end to end",
        environment: environment(parsed == null ? "n/a" : "cuda"),
        measurements: parsed?.measurements ?? [],
        comparisons: parsed?.comparisons ?? [],
        notes: parsed != null
            ? [`Device: ${parsed.device.name} (compute ${parsed.device.computeCapability}); kernels for ${parsed.device.archs}.`,
                "Kernel rows: 32016 logits, 15 reflection ids; the CUDA figure includes the upload of the rows (the engine's device path reads them where llama.cpp computed them).",
                "End to end: the bench fixture model on the GPU, 4 questions x 4 passages, 32 tokens."]
            : [`Skipped: no CUDA device here (${firstLine(child.stderr) ?? `exit ${child.status}`}). Nothing was measured; run \`npm run bench -- gpu\` on a machine with an NVIDIA GPU.`]
    };
    // Nothing measured: the saved results (bench/results/gpu.*, tracked, from a machine with a GPU
    // or the placeholder saying none ran) are left as they are rather than replaced by an empty run.
    if (parsed == null) {
        console.log(`bench gpu: ${result.notes[0]} bench/results/gpu.{json,md} left as they were.`);
        return {...result, saved: false};
    }
    writeResult(result);
    return result;
}

function firstLine(text: string): string | undefined {
    const lines = text.split("\n").map((l) => l.trim()).filter((l) => l.startsWith("SelfRagError") || l.includes("could not load") || l.includes("CUDA"));
    return lines[0]?.slice(0, 300);
}
