// A cancel does not cancel a release submitted before it: the release only empties the slot, and a
// cancelled one would hand the slot back to the pool with its KV (and, in a flow that does not wait
// for it, reject unhandled: an aborted request's late release used to end `selfrag serve`).
import assert from "node:assert/strict";
import {tinyModel} from "../test-support/fixtures.js";
import {SelfRagModel} from "../lib/SelfRagModel.js";

describe("cancel and release", function () {
    this.timeout(60_000);

    it("a release submitted before a cancel of its slot still empties the slot; other queued work is cancelled", async () => {
        const model = await SelfRagModel.load({modelPath: await tinyModel(), sequences: 2, contextSize: 512});
        try {
            const ctx = model.context;
            const [a] = ctx.acquire(1);
            await ctx.prefill(a, model.tokenize("### Instruction:\nWhat is the capital of France?\n\n### Response:\n"));
            assert.ok(ctx.sequenceInfo(a).nPast > 0);
            const generating = ctx.generateOne(a, 400);
            const released = ctx.clear(a); // queued behind the generation, in the same tick as the cancel
            ctx.cancel(a);
            await assert.rejects(generating, (e: {code?: string}) => e.code === "ABORTED");
            await released;
            assert.equal(ctx.sequenceInfo(a).nPast, 0, "the slot is empty");
            await ctx.release(a);
        } finally {
            await model.dispose();
        }
    });
});
