import assert from "node:assert/strict";
import type {Token} from "node-llama-cpp";
import {SelfRagModel, defaultThreads} from "../lib/SelfRagModel.js";
import {prompt, tinyModel} from "../test-support/fixtures.js";

describe("memory", () => {
    it("reports the KV cache llama.cpp actually allocated, which matches what a cell of state measures through node-llama-cpp", async () => {
        const file = await tinyModel();
        const model = await SelfRagModel.load({modelPath: file, contextSize: 512, sequences: 3, gpu: false});
        const nlcModel = await model.llama.loadModel({modelPath: file, gpuLayers: 0});
        const nlcContext = await nlcModel.createContext({contextSize: 512, sequences: 1});
        try {
            const info = model.context.info;
            assert.equal(info.contextSize, 512 * 3);
            assert.equal(info.contextPerSequence, 512);
            assert.equal(info.threads, 1, "a 4M-parameter model decodes on one thread by default");
            // The independent measurement: the bytes of a sequence's saved state grow by one KV cell
            // (K and V of every layer) plus the cell's metadata (position, sequence count, sequence
            // id: 3 x 4 bytes) per token, in node-llama-cpp's own context on the same file.
            const sequence = nlcContext.getSequence();
            const tokens = Array.from(model.tokenize("word ".repeat(400))) as Token[];
            await sequence.evaluateWithoutGeneratingNewTokens(tokens.slice(0, 100));
            const at100 = nlcContext.stateSize;
            await sequence.evaluateWithoutGeneratingNewTokens(tokens.slice(100, 300));
            const at300 = nlcContext.stateSize;
            const perCell = (at300 - at100) / 200 - 12;
            assert.equal(info.kvCacheBytes, perCell * info.contextSize, `${info.kvCacheBytes} bytes for ${info.contextSize} cells of ${perCell} bytes`);
            // ... which is K and V in f16 for the tiny model's one layer of width 64.
            assert.equal(perCell, 2 * 2 * 64 * 1);
            sequence.dispose();
        } finally {
            await nlcContext.dispose();
            await nlcModel.dispose();
            await model.dispose();
        }
        // Per-sequence streams allocate the same cells; a context size that is not a multiple of 256
        // is padded by llama.cpp, and the report follows what it allocated.
        const streams = await SelfRagModel.load({modelPath: file, contextSize: 300, sequences: 2, unifiedKv: false, gpu: false});
        try {
            assert.equal(streams.context.info.contextSize, 1024, "llama.cpp pads each stream to 512 cells");
            assert.equal(streams.context.info.kvCacheBytes, 2 * 2 * 64 * 1024);
        } finally {
            await streams.dispose();
        }
    });

    it("threads default: one below 1B parameters, every math core from 1B up", () => {
        assert.equal(defaultThreads(4e6, 8), 1);
        assert.equal(defaultThreads(6.7e9, 8), 8);
        assert.equal(defaultThreads(13e9, 0), 1);
    });

    it("load and dispose twenty times with bounded RSS growth", async function () {
        this.timeout(300_000);
        const file = await tinyModel();
        const cycle = async () => {
            const model = await SelfRagModel.load({modelPath: file, contextSize: 1024, sequences: 4, gpu: false});
            await model.inspect(prompt("What is the capital of France?"));
            await model.dispose();
        };
        for (let i = 0; i < 3; i++) await cycle(); // warm-up: allocator pools, lazily loaded code
        global.gc?.();
        const before = process.memoryUsage().rss;
        for (let i = 0; i < 20; i++) await cycle();
        global.gc?.();
        const growth = process.memoryUsage().rss - before;
        // Each load maps a 16 MB model and allocates a KV cache; a leak of either would add >= 320 MB.
        assert.ok(growth < 48 * 1024 * 1024, `RSS grew by ${(growth / 1048576).toFixed(1)} MB over 20 load/dispose cycles`);
    });
});
