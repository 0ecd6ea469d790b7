// SelfRagModel.load({kvCells}): an overcommitted unified KV cache is smaller than slots x context
// and still answers as the full one does; it needs the unified cache.
import assert from "node:assert/strict";
import {rejectsWith} from "../test-support/assertions.js";
import {tinyModel} from "../test-support/fixtures.js";
import {SelfRagModel} from "../lib/SelfRagModel.js";
import {serve} from "../test-support/server.js";

describe("kvCells", function () {
    this.timeout(120_000);

    it("a smaller KV cache (measured by llama.cpp) answers as the full one; refused without the unified cache", async () => {
        const passages = [{title: "Paris", text: "Paris is the capital and largest city of France. Paris"}, {title: "Rome", text: "Rome is in Italy."}];
        const full = await SelfRagModel.load({modelPath: await tinyModel(), sequences: 4, contextSize: 1024});
        const small = await SelfRagModel.load({modelPath: await tinyModel(), sequences: 4, contextSize: 1024, kvCells: 1024});
        try {
            assert.ok(small.context.info.kvCacheBytes < full.context.info.kvCacheBytes,
                `${small.context.info.kvCacheBytes} bytes with 1024 cells vs ${full.context.info.kvCacheBytes} for 4 x 1024`);
            const a = await full.answer("What is the capital of France?", {passages, mode: "always", maxNewTokens: 24});
            const b = await small.answer("What is the capital of France?", {passages, mode: "always", maxNewTokens: 24});
            assert.deepEqual(b.candidates.map((c) => c.text), a.candidates.map((c) => c.text));
        } finally {
            await full.dispose();
            await small.dispose();
        }
        await assert.rejects(SelfRagModel.load({modelPath: await tinyModel(), sequences: 2, contextSize: 512, kvCells: 256, unifiedKv: false}),
            rejectsWith("INVALID_ARGUMENT", /kvCells needs the unified KV cache/));
        await assert.rejects(SelfRagModel.load({modelPath: await tinyModel(), kvCells: 0}), rejectsWith("INVALID_ARGUMENT", /kvCells/));
    });

    it("selfrag serve --kv-cells: the server's cache is that size (GET /v1/stats), and it answers", async () => {
        const bytes: number[] = [];
        for (const extra of [[], ["--kv-cells", "512"]]) {
            const server = await serve("--sequences", "4", "--context-size", "512", ...extra);
            try {
                const stats = await (await fetch(`${server.url}/v1/stats`)).json() as {engine: {kvCacheBytes: number}};
                bytes.push(stats.engine.kvCacheBytes);
                const answer = await fetch(`${server.url}/v1/answer`, {method: "POST", headers: {"Content-Type": "application/json"},
                    body: JSON.stringify({question: "What is the capital of France?", mode: "always", maxNewTokens: 8,
                        passages: [{title: "Paris", text: "Paris is the capital of France."}]})});
                assert.equal(answer.status, 200);
            } finally {
                await server.stop();
            }
        }
        assert.ok(bytes[1] < bytes[0] && bytes[1] > 0, `--kv-cells 512: ${bytes[1]} bytes vs ${bytes[0]} for 4 x 512 cells`);
    });
});
