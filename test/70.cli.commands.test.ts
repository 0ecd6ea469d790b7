import assert from "node:assert/strict";
import type {Token} from "node-llama-cpp";
import fs from "node:fs";
import path from "node:path";
import {fileURLToPath} from "node:url";
import {REFLECTION_TOKENS} from "../lib/engine/ReflectionTokens.js";
import {SelfRagModel} from "../lib/SelfRagModel.js";
import {prompt, tempDir, tinyModel} from "../test-support/fixtures.js";
import {nodeLlamaCppLogprobs} from "../test-support/oracles.js";
import {runCli} from "../test-support/cli.js";

const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "lib", "cli", "main.js");

const selfrag = (...args: string[]) => runCli(args);

describe("selfrag CLI", () => {
    it("fixture writes a loadable model: node-llama-cpp and the engine load it, with the Self-RAG vocabulary, and decode alike", async () => {
        const out = path.join(tempDir, "cli-tiny.gguf");
        const result = await selfrag("fixture", "--out", out, "--kind", "tiny");
        assert.equal(result.code, 0, result.stderr);
        assert.ok(fs.statSync(out).size > 16_000_000);
        assert.deepEqual(fs.readFileSync(out), fs.readFileSync(await tinyModel()), "fixtures are deterministic");

        const model = await SelfRagModel.load({modelPath: out, sequences: 1, contextSize: 256, gpu: false});
        const nlcModel = await model.llama.loadModel({modelPath: out, gpuLayers: 0});
        const nlcContext = await nlcModel.createContext({contextSize: 256, sequences: 1});
        try {
            // The vocabulary: Llama-2's 32000 tokens plus the 16 Self-RAG ones, seen the same by both.
            assert.equal(model.info.vocabSize, 32016);
            assert.equal(nlcModel.tokens.bos, model.info.bos);
            assert.equal(nlcModel.tokens.eos, model.info.eos);
            REFLECTION_TOKENS.forEach((t, i) => {
                assert.equal(model.tokenText(32000 + i), t.text);
                assert.equal(nlcModel.detokenize([(32000 + i) as Token], true), t.text);
            });
            const text = prompt("What is the capital of France?") + "[Retrieval]<paragraph>Paris";
            assert.deepEqual(Array.from(nlcModel.tokenize(text, true)), Array.from(model.tokenize(text, {bos: false})));
            // One decode: the reflection log-probs after a prompt, ours against node-llama-cpp's.
            const tokens = model.tokenize(prompt("What is the capital of France?"));
            const sequence = nlcContext.getSequence();
            const expected = await nodeLlamaCppLogprobs(sequence, tokens, model.reflection.ids);
            sequence.dispose();
            const inspected = await model.inspect(prompt("What is the capital of France?"));
            REFLECTION_TOKENS.forEach((t, k) => assert.ok(Math.abs(inspected.reflection[t.text] - expected[k]) <= 2e-3,
                `${t.text}: ${inspected.reflection[t.text]} vs node-llama-cpp ${expected[k]}`));
            assert.equal(inspected.next.text, "[Retrieval]", "the designed decision: retrieve for a capital question");
        } finally {
            await nlcContext.dispose();
            await nlcModel.dispose();
            await model.dispose();
        }
    });

    it("inspect --json prints all 15 reflection log-probs and p_retrieve, equal to the library's", async () => {
        const text = prompt("What is the capital of France?");
        const result = await selfrag("inspect", "--model", await tinyModel(), "--prompt", text, "--json", "--cpu");
        assert.equal(result.code, 0, result.stderr);
        const json = JSON.parse(result.stdout) as {reflection: Record<string, number>, p_retrieve: number};
        assert.deepEqual(Object.keys(json.reflection), REFLECTION_TOKENS.map((t) => t.text));
        const model = await SelfRagModel.load({modelPath: await tinyModel(), sequences: 1, contextSize: 256, gpu: false});
        try {
            const expected = await model.inspect(text);
            assert.ok(Math.abs(json.p_retrieve - expected.p_retrieve) < 1e-9);
            for (const t of REFLECTION_TOKENS) assert.ok(Math.abs(json.reflection[t.text] - expected.reflection[t.text]) < 1e-6);
        } finally {
            await model.dispose();
        }
    });

    it("inspect prints a human-readable table", async () => {
        const result = await selfrag("inspect", "--model", await tinyModel(), "--prompt", prompt("Say hello."), "--cpu");
        assert.equal(result.code, 0, result.stderr);
        assert.match(result.stdout, /p_retrieve: 0\.\d+/);
        assert.match(result.stdout, /\[No support \/ Contradictory\]/);
    });

    it("bad input: one line naming the problem and its code, exit code 1, no stack trace", async () => {
        const missing = await selfrag("inspect", "--model", path.join(tempDir, "nope.gguf"), "--prompt", "x");
        assert.equal(missing.code, 1);
        assert.match(missing.stderr, /^selfrag: model file not found: .*nope\.gguf \[MODEL_NOT_FOUND\]\n$/);
        const unknown = await selfrag("frobnicate");
        assert.equal(unknown.code, 1);
        assert.match(unknown.stderr, /unknown command "frobnicate"/);
        const noPrompt = await selfrag("inspect", "--model", await tinyModel());
        assert.match(noPrompt.stderr, /--prompt/);
    });
});
