import assert from "node:assert/strict";
import {SelfRagModel, defaultThreads} from "../lib/SelfRagModel.js";
import {prompt, tinyModel} from "../test-support/fixtures.js";

describe("memory", () => {
    it("sizes the KV cache from context x sequences and reports it", async () => {
        const model = await SelfRagModel.load({modelPath: await tinyModel(), contextSize: 512, sequences: 3, gpu: false});
        try {
            const info = model.context.info;
            assert.equal(info.contextSize, 512 * 3);
            assert.equal(info.contextPerSequence, 512);
            // K and V, f16, one layer of width 64 in the tiny model
            assert.equal(info.kvCacheBytes, 2 * 2 * 64 * 1 * 512 * 3);
            assert.equal(info.threads, 1, "a 4M-parameter model decodes on one thread by default");
        } finally {
            await model.dispose();
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
