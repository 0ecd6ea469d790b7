import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import {SelfRagError} from "../lib/errors.js";
import {GgufWriter} from "../lib/gguf/GgufWriter.js";
import {SelfRagModel} from "../lib/SelfRagModel.js";
import {rejectsWith} from "../test-support/assertions.js";
import {modelWithoutReflection, prompt, tempDir, tinyModel} from "../test-support/fixtures.js";

describe("bad input gives a SelfRagError with a code, and the process stays up", () => {
    const load = (modelPath: string, extra: Record<string, unknown> = {}) =>
        SelfRagModel.load({modelPath, contextSize: 256, sequences: 2, gpu: false, ...extra});

    it("a missing model file", async () => {
        await assert.rejects(load(path.join(tempDir, "missing.gguf")), rejectsWith("MODEL_NOT_FOUND", /missing\.gguf/));
    });

    it("a file that is not GGUF", async () => {
        const file = path.join(tempDir, "garbage.gguf");
        fs.writeFileSync(file, Buffer.from("this is not a model at all, just text\n".repeat(100)));
        await assert.rejects(load(file), rejectsWith("INVALID_GGUF", /garbage\.gguf is not a GGUF file/));
    });

    it("a GGUF cut inside its header", async () => {
        const file = path.join(tempDir, "cut-header.gguf");
        fs.writeFileSync(file, fs.readFileSync(await tinyModel()).subarray(0, 4096));
        await assert.rejects(load(file), rejectsWith("INVALID_GGUF", /cut-header\.gguf is truncated inside its GGUF header: the header needs \d+ bytes but the file has 4096/));
    });

    it("a GGUF cut inside its tensor data", async () => {
        const file = path.join(tempDir, "cut-data.gguf");
        const bytes = fs.readFileSync(await tinyModel());
        fs.writeFileSync(file, bytes.subarray(0, Math.floor(bytes.length * 0.6)));
        await assert.rejects(load(file), rejectsWith("INVALID_GGUF", /cut-data\.gguf is truncated: tensor \S+ ends at byte \d+ but the file has \d+ bytes/));
    });

    it("a well-formed GGUF that llama.cpp cannot load, with llama.cpp's reason", async () => {
        const file = path.join(tempDir, "unknown-arch.gguf");
        await new GgufWriter().str("general.architecture", "no-such-architecture").write(file);
        await assert.rejects(load(file), rejectsWith("MODEL_LOAD_FAILED", /unknown-arch\.gguf[\s\S]*llama\.cpp said:[\s\S]*no-such-architecture/));
    });

    it("a GGUF without the reflection tokens, naming the missing ones", async () => {
        await assert.rejects(load(await modelWithoutReflection()),
            rejectsWith("MISSING_REFLECTION_TOKENS", /not a Self-RAG model.*15 of the 15.*\[No Retrieval\]/s));
    });

    it("invalid options", async () => {
        await assert.rejects(load(await tinyModel(), {sequences: 0}), rejectsWith("INVALID_ARGUMENT", /sequences/));
        await assert.rejects(load(await tinyModel(), {gpu: "tpu"}), rejectsWith("INVALID_ARGUMENT", /gpu/));
        await assert.rejects(load(await tinyModel(), {threads: 0}), rejectsWith("INVALID_ARGUMENT", /threads/));
        await assert.rejects(load(await tinyModel(), {threadsBatch: 1.5}), rejectsWith("INVALID_ARGUMENT", /threadsBatch/));
        await assert.rejects(SelfRagModel.load(undefined as never), rejectsWith("INVALID_ARGUMENT", /modelPath/));
    });

    describe("with a loaded model", () => {
        let model: SelfRagModel;
        before(async () => {
            model = await load(await tinyModel());
        });
        after(async () => model?.dispose());

        it("a prompt longer than the context", async () => {
            const long = prompt("word ".repeat(400));
            await assert.rejects(model.inspect(long), rejectsWith("CONTEXT_OVERFLOW", /holds 256 per sequence/));
            assert.equal(model.context.freeSlots, 2, "the slot is released after the failure");
        });

        it("a sequence slot beyond N", async () => {
            assert.throws(() => model.context.acquire(3), rejectsWith("SEQUENCE_OUT_OF_RANGE", /only 2 of 2 are free/));
            await assert.rejects(model.context.evaluate([{seq: 2, tokens: Int32Array.of(1)}]),
                rejectsWith("SEQUENCE_OUT_OF_RANGE", /slot 2 does not exist: this context has 2 slots/));
            await assert.rejects(model.context.fork(0, 9), rejectsWith("SEQUENCE_OUT_OF_RANGE"));
        });

        it("token ids outside the vocabulary", async () => {
            await assert.rejects(model.context.evaluate([{seq: 0, tokens: Int32Array.of(1, 99999)}]), rejectsWith("INVALID_TOKEN", /99999/));
            assert.throws(() => model.detokenize([5, -1]), rejectsWith("INVALID_TOKEN"));
        });

        it("still answers after all of the above", async () => {
            const result = await model.inspect(prompt("What is the capital of France?"));
            assert.ok(result.p_retrieve > 0.5);
        });

        it("use after dispose", async () => {
            const other = await load(await tinyModel());
            await other.dispose();
            await other.dispose(); // idempotent
            assert.throws(() => other.tokenize("x"), rejectsWith("MODEL_DISPOSED"));
            await assert.rejects(other.inspect("x"), rejectsWith("MODEL_DISPOSED"));
            await assert.rejects(other.context.evaluate([{seq: 0, tokens: Int32Array.of(1)}]), rejectsWith("CONTEXT_DISPOSED"));
        });
    });
});
