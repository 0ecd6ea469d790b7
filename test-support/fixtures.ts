// Generated fixtures shared by the suite: written once per test run into a temporary folder,
// never committed.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {writeFixtureModel, writeModelWithoutReflectionTokens} from "../lib/fixtures/FixtureModel.js";
import {llamaCppSourceDir} from "../lib/paths.js";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "selfrag-test-"));
process.on("exit", () => fs.rmSync(dir, {recursive: true, force: true}));

const cache = new Map<string, Promise<string>>();

function memo(name: string, write: (file: string) => Promise<void>): Promise<string> {
    let pending = cache.get(name);
    if (pending == null) {
        const file = path.join(dir, name);
        pending = write(file).then(() => file);
        cache.set(name, pending);
    }
    return pending;
}

export const tinyModel = () => memo("tiny.gguf", (f) => writeFixtureModel(f, "tiny"));
export const randomModel = () => memo("random-small.gguf", (f) => writeFixtureModel(f, "random-small"));
export const modelWithoutReflection = () => memo("no-reflection.gguf", writeModelWithoutReflectionTokens);
export const tempDir = dir;

/** The Self-RAG prompt format for a question without input (docs/self-rag.md, "Prompts"). */
export function prompt(instruction: string): string {
    return `### Instruction:\n${instruction}\n\n### Response:\n`;
}

export function passage(title: string, text: string): string {
    return `[Retrieval]<paragraph>${title}\n${text}</paragraph>`;
}

/**
 * The tiny model with one output-layer weight of `tokenId` set to NaN or +Infinity, so that token's
 * logit is NaN / +Infinity after every position (the weight multiplies the always-on bias feature).
 */
export const poisonedModel = (value: "nan" | "inf", tokenId: number) => memo(`poisoned-${value}-${tokenId}.gguf`, async (file) => {
    const {readGgufFileInfo} = await import("node-llama-cpp");
    fs.copyFileSync(await tinyModel(), file);
    const info = await readGgufFileInfo(file, {sourceType: "filesystem", readTensorInfo: true, logWarnings: false});
    const output = (info.fullTensorInfo ?? info.tensorInfo ?? []).find((t) => t.name === "output.weight");
    if (output == null) throw new Error("the tiny model has no output.weight");
    const embd = Number(output.dimensions[0]);
    const weight = Buffer.alloc(4);
    weight.writeFloatLE(value === "nan" ? Number.NaN : Number.POSITIVE_INFINITY);
    const fd = fs.openSync(file, "r+");
    try {
        fs.writeSync(fd, weight, 0, 4, Number(output.fileOffset) + tokenId * embd * 4);
    } finally {
        fs.closeSync(fd);
    }
});

/** llama.cpp's vocabulary-only GGUF (a valid file with a tokenizer and no tensors). */
export function vocabularyOnlyGguf(): string {
    return path.join(llamaCppSourceDir(), "models", "ggml-vocab-llama-spm.gguf");
}
