import assert from "node:assert/strict";
import type {NativeSegment} from "../lib/engine/types.js";
import {R} from "../lib/engine/ReflectionTokens.js";
import {SelfRagModel} from "../lib/SelfRagModel.js";
import {SelfRagError} from "../lib/errors.js";
import {rejectsWith} from "../test-support/assertions.js";
import {passage, prompt, randomModel, tinyModel} from "../test-support/fixtures.js";

const PROMPTS = [
    "What is the capital of France?",
    "Name a famous painter from Spain, and explain briefly why.",
    "Who wrote the novel War and Peace?",
    "List three prime numbers."
].map(prompt);

function assertSameSegments(actual: NativeSegment, expected: NativeSegment, what: string, tolerance = 1e-3) {
    assert.deepEqual(Array.from(actual.tokens), Array.from(expected.tokens), `${what}: tokens`);
    assert.equal(actual.stopReason, expected.stopReason, `${what}: stop reason`);
    for (let i = 0; i < expected.logprobs.length; i++) {
        assert.ok(Math.abs(actual.logprobs[i] - expected.logprobs[i]) <= tolerance, `${what}: log-prob ${i}`);
    }
    for (let i = 0; i < expected.reflection.length; i++) {
        assert.ok(Math.abs(actual.reflection[i] - expected.reflection[i]) <= tolerance, `${what}: reflection ${i}`);
    }
}

for (const unifiedKv of [true, false]) {
    describe(`multi-sequence engine (${unifiedKv ? "unified" : "per-sequence"} KV cache)`, () => {
        let model: SelfRagModel;

        before(async () => {
            model = await SelfRagModel.load({modelPath: await randomModel(), contextSize: 256, sequences: 4, gpu: false, unifiedKv});
        });
        after(async () => model?.dispose());

        it("decodes N sequences in one batch exactly like N single-sequence runs", async () => {
            const ctx = model.context;
            const single: NativeSegment[] = [];
            for (const p of PROMPTS) {
                const [seq] = ctx.acquire(1);
                await ctx.evaluate([{seq, tokens: model.tokenize(p)}]);
                single.push((await ctx.generate([{seq, maxTokens: 24}]))[0]);
                await ctx.release(seq);
            }
            const slots = ctx.acquire(PROMPTS.length);
            const before = ctx.stats.decodeCalls;
            await ctx.evaluate(slots.map((seq, i) => ({seq, tokens: model.tokenize(PROMPTS[i])})));
            const batched = await ctx.generate(slots.map((seq) => ({seq, maxTokens: 24})));
            const decodeCalls = ctx.stats.decodeCalls - before;
            await ctx.release(...slots);
            batched.forEach((segment, i) => assertSameSegments(segment, single[i], `prompt ${i}`));
            const longest = Math.max(...batched.map((s) => s.tokens.length));
            // one prefill call for all prompts, then one decode per step for all sequences
            assert.equal(decodeCalls, 1 + (longest - 1), "one llama_decode per step for every sequence");
        });

        it("continues a forked sequence exactly like one prefilled from scratch", async () => {
            const ctx = model.context;
            const question = model.tokenize(PROMPTS[0]);
            const evidence = model.tokenize(passage("Paris", "Paris is the capital and most populous city of France."), {bos: false});
            const [parent, child, scratch] = ctx.acquire(3);
            await ctx.evaluate([{seq: parent, tokens: question}]);
            await ctx.fork(parent, child);
            assert.deepEqual(ctx.sequenceInfo(child).nPast, question.length);
            await ctx.evaluate([{seq: child, tokens: evidence}]);
            await ctx.evaluate([{seq: scratch, tokens: Int32Array.from([...question, ...evidence])}]);
            const [forked, fresh] = await ctx.generate([{seq: child, maxTokens: 24}, {seq: scratch, maxTokens: 24}]);
            assertSameSegments(forked, fresh, "fork vs scratch", 1e-4);
            // the parent is untouched by its child's passage
            const [again] = await ctx.generate([{seq: parent, maxTokens: 4}]);
            const [reference] = ctx.acquire(1);
            await ctx.evaluate([{seq: reference, tokens: question}]);
            const [expected] = await ctx.generate([{seq: reference, maxTokens: 4}]);
            assertSameSegments(again, expected, "parent after fork", 1e-4);
            await ctx.release(parent, child, scratch, reference);
        });

        it("a prompt shared by several slots is decoded once, its passages join the same step, and they continue like forks", async () => {
            const ctx = model.context;
            const question = model.tokenize(PROMPTS[0]);
            const evidence = [1, 2].map((i) => model.tokenize(passage(`P${i}`, `Passage ${i} says something about France.`), {bos: false}));
            // Reference: prompt, then forks, then passages (three steps' worth of dependencies).
            const [root, x, y] = ctx.acquire(3);
            await ctx.prefill(root, question);
            await Promise.all([ctx.fork(root, x), ctx.fork(root, y)]);
            await Promise.all([ctx.prefill(x, evidence[0]), ctx.prefill(y, evidence[1])]);
            const forked = await ctx.generate([{seq: x, maxTokens: 16}, {seq: y, maxTokens: 16}]);
            await ctx.release(root, x, y);

            const [a, b, c] = ctx.acquire(3);
            const before = ctx.stats;
            const shared = ctx.prefill(a, question, {shareWith: [b, c]});
            const appended = [ctx.prefill(b, evidence[0]), ctx.prefill(c, evidence[1])];
            if (!unifiedKv) {
                await assert.rejects(shared, rejectsWith("INVALID_ARGUMENT", /unified KV/));
                await Promise.allSettled(appended);
                await ctx.release(a, b, c);
                return;
            }
            await Promise.all([shared, ...appended]);
            const after = ctx.stats;
            assert.equal(after.steps - before.steps, 1, "prompt and both passages in one step");
            assert.equal(after.tokensEvaluated - before.tokensEvaluated, question.length + evidence[0].length + evidence[1].length,
                "the prompt is decoded once for the three slots");
            assert.equal(ctx.sequenceInfo(a).nPast, question.length);
            assert.equal(ctx.sequenceInfo(c).nPast, question.length + evidence[1].length);
            const together = await ctx.generate([{seq: b, maxTokens: 16}, {seq: c, maxTokens: 16}]);
            together.forEach((segment, i) => assertSameSegments(segment, forked[i], `passage ${i}`, 1e-3));
            await ctx.release(a, b, c);
        });

        it("trims a sequence back to a prefix and regenerates the same continuation", async () => {
            const ctx = model.context;
            const [seq] = ctx.acquire(1);
            const tokens = model.tokenize(PROMPTS[2]);
            await ctx.evaluate([{seq, tokens}]);
            const [first] = await ctx.generate([{seq, maxTokens: 8}]);
            await ctx.trim(seq, tokens.length - 1);
            await ctx.evaluate([{seq, tokens: tokens.subarray(tokens.length - 1)}]);
            const [second] = await ctx.generate([{seq, maxTokens: 8}]);
            assertSameSegments(second, first, "after trim", 1e-4);
            await ctx.release(seq);
        });

        it("encodes a shared prefix once: tokens evaluated are counted", async () => {
            const ctx = model.context;
            const question = model.tokenize(PROMPTS[1]);
            const passages = [1, 2, 3].map((i) => model.tokenize(passage(`T${i}`, `Passage number ${i} text.`), {bos: false}));
            const [root, ...children] = ctx.acquire(4);
            const start = ctx.stats.tokensEvaluated;
            await ctx.evaluate([{seq: root, tokens: question}]);
            for (const c of children) await ctx.fork(root, c);
            await ctx.evaluate(children.map((seq, i) => ({seq, tokens: passages[i]})));
            const used = ctx.stats.tokensEvaluated - start;
            assert.equal(used, question.length + passages.reduce((n, p) => n + p.length, 0));
            await ctx.release(root, ...children);
        });
    });
}

describe("segment stops", () => {
    let model: SelfRagModel;

    before(async () => {
        model = await SelfRagModel.load({modelPath: await tinyModel(), contextSize: 128, sequences: 3, gpu: false});
    });
    after(async () => model?.dispose());

    it("stops at a stop token, at the budget and at EOS, and leaves the last token undecoded", async () => {
        const ctx = model.context;
        const [a, b, c] = ctx.acquire(3);
        const tokens = model.tokenize(prompt("What is the capital of France?") + passage("Paris", "Paris is in France. Paris"));
        for (const seq of [a, b, c]) await ctx.evaluate([{seq, tokens}]);
        const [stopped, budget, eos] = await ctx.generate(
            [{seq: a, maxTokens: 32}, {seq: b, maxTokens: 2}, {seq: c, maxTokens: 32}],
            {stopTokens: Int32Array.of(model.reflection.id("[Fully supported]"))});
        // stop tokens apply to every item in the call, so c stops there too
        assert.equal(stopped.stopReason, "stop");
        assert.equal(stopped.tokens[stopped.tokens.length - 1], model.reflection.id("[Fully supported]"));
        assert.equal(budget.stopReason, "length");
        assert.equal(budget.tokens.length, 2);
        assert.equal(ctx.sequenceInfo(b).nPast, tokens.length + 1, "every generated token but the last is in the KV cache");
        assert.equal(eos.stopReason, "stop");
        const [free] = await ctx.generate([{seq: c, maxTokens: 32}]);
        assert.equal(free.stopReason, "eos");
        assert.equal(model.detokenize(free.tokens), "[Fully supported][Utility:5]</s>", "continues where the last segment stopped");
        await ctx.release(a, b, c);
    });

    it("re-decides retrieval at [No Retrieval] with the threshold (gate)", async () => {
        const ctx = model.context;
        const [a, b] = ctx.acquire(2);
        const tokens = model.tokenize(prompt("Say hello."));
        await ctx.evaluate([{seq: a, tokens}, {seq: b, tokens}]);
        const gate = (threshold: number) => ({noRetrievalIndex: R.noRetrieval, retrievalIndex: R.retrieval, continueIndex: R.continueEvidence, threshold});
        const [low] = await ctx.generate([{seq: a, maxTokens: 8}], {gate: gate(0.01)});
        const [high] = await ctx.generate([{seq: b, maxTokens: 8}], {gate: gate(0.99)});
        assert.equal(low.stopReason, "retrieve");
        assert.equal(low.tokens[0], model.reflection.id("[No Retrieval]"));
        const ratio = (Math.exp(low.reflection[R.retrieval]) + Math.exp(low.reflection[R.continueEvidence])) /
            (Math.exp(low.reflection[R.retrieval]) + Math.exp(low.reflection[R.noRetrieval]));
        assert.ok(ratio > 0.01 && ratio < 0.99, `gate ratio ${ratio}`);
        assert.notEqual(high.stopReason, "retrieve");
        await ctx.release(a, b);
    });

    it("stops with reason \"context\" when a sequence reaches its context size", async () => {
        const ctx = model.context;
        const [seq] = ctx.acquire(1);
        const tokens = new Int32Array(126).fill(model.tokenize("x", {bos: false})[0]);
        await ctx.evaluate([{seq, tokens}]);
        const [segment] = await ctx.generate([{seq, maxTokens: 50}]);
        // "." -> [Partially supported] -> [Utility:4] fills positions 126 and 127; </s> would need a 129th.
        assert.equal(segment.stopReason, "context");
        assert.equal(model.detokenize(segment.tokens), ".[Partially supported][Utility:4]");
        assert.equal(ctx.sequenceInfo(seq).nPast, 128);
        await ctx.release(seq);
    });

    it("refuses to generate from a slot that holds no prompt", async () => {
        const [seq] = model.context.acquire(1);
        await assert.rejects(model.context.generate([{seq, maxTokens: 4}]), (e: unknown) => e instanceof SelfRagError && e.code === "NO_PENDING_LOGITS");
        await model.context.release(seq);
    });
});
