// The `bench` fixture model (random weights, ~53M parameters, f32, the Self-RAG vocabulary),
// written once into bench/.cache (git-ignored) and shared by the benchmarks that decode.
import fs from "node:fs";
import path from "node:path";
import {fileURLToPath} from "node:url";
import {writeFixtureModel, type FixtureKind} from "../lib/fixtures/FixtureModel.js";
import {BENCH_SHAPE} from "./common.js";

type FixtureOptions = Parameters<typeof writeFixtureModel>[2];

/** bench/.cache in the source tree (this file runs as dist/bench/benchModel.js). */
const cacheDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "bench", ".cache");

/**
 * `SELFRAG_BENCH_SHAPE=1b`: the benchmarks that decode on MODEL_FILE (shortForm, model, startup, ...)
 * run on the 1B Q4_0 fixture (TinyLlama 1.1B's shape) instead, and their results are written as
 * `<name>-1b` (writeResult).
 */
export const MODEL_FILE = BENCH_SHAPE === "1b" ? path.join(cacheDir, "fixture-1b-q4_0.gguf") : path.join(cacheDir, "bench.gguf");

/** Writing the fixture takes a while: do it once, through a temporary file so a killed run leaves no half file. */
export async function ensureBenchModel(): Promise<void> {
    if (BENCH_SHAPE === "1b") await ensureFixture1b();
    else await ensureFixtureModel(MODEL_FILE, "bench");
}

/** The 1B Q4_0 fixture (`selfrag fixture --kind 1b --quant q4_0`, 620 MB) in bench/.cache: the realistic-shape benches' model. */
export function ensureFixture1b(): Promise<string> {
    return ensureFixtureModel(path.join(cacheDir, "fixture-1b-q4_0.gguf"), "1b", {quant: "q4_0"});
}

/** A fixture model at `file`, written once through a temporary file (a killed run leaves no half file). */
export async function ensureFixtureModel(file: string, kind: FixtureKind, options?: FixtureOptions): Promise<string> {
    if (fs.existsSync(file)) return file;
    fs.mkdirSync(path.dirname(file), {recursive: true});
    const partial = `${file}.${process.pid}.partial`;
    try {
        await writeFixtureModel(partial, kind, options);
        fs.renameSync(partial, file);
    } finally {
        fs.rmSync(partial, {force: true});
    }
    return file;
}
