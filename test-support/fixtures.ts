// Generated fixtures shared by the suite: written once per test run into a temporary folder,
// never committed.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {writeFixtureModel, writeModelWithoutReflectionTokens} from "../lib/fixtures/FixtureModel.js";

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

/** The Self-RAG prompt format for a question without input (SELF_RAG.md, "Prompt format"). */
export function prompt(instruction: string): string {
    return `### Instruction:\n${instruction}\n\n### Response:\n`;
}

export function passage(title: string, text: string): string {
    return `[Retrieval]<paragraph>${title}\n${text}</paragraph>`;
}
