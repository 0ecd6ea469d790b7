// Step rounding (stepRowAlign): llama.cpp's CPU backend repacks quantized matrices and multiplies
// tokens in tiles of 4, each token left over taking a pass of its own over all the weights, so the
// engine rounds a step of 2 or 3 tokens over a multiple of 4 up with throwaway tokens. What must
// hold: the answers are those without it (the throwaway tokens sit after a generating slot's token,
// never seen by any real token, and are dropped after the step), tokensEvaluated counts only real
// tokens, nothing is left in the KV, and "auto" turns it on exactly for such models on the CPU.
import assert from "node:assert/strict";
import path from "node:path";
import {readSelfRagVocab, streamedRandomModelWriter} from "../lib/fixtures/FixtureModel.js";
import type {Passage} from "../lib/selfrag/prompts.js";
import {SelfRagModel} from "../lib/SelfRagModel.js";
import {rejectsWith} from "../test-support/assertions.js";
import {tempDir, tinyModel} from "../test-support/fixtures.js";

const PASSAGES: Passage[] = [
    {title: "Danube", text: "The Danube flows through ten countries."},
    {title: "Danube (history)", text: "The river was a frontier of the Roman Empire."},
    {title: "Danube (culture)", text: "Strauss wrote a waltz about it."}
];
const OPTIONS = {passages: PASSAGES, ndocs: 3, maxNewTokens: 24, mode: "always" as const, traces: true};

describe("step row alignment (stepRowAlign)", function () {
    this.timeout(180_000);
    let q4: string;
    before(async () => {
        q4 = path.join(tempDir, "align-q4_0.gguf");
        await streamedRandomModelWriter(await readSelfRagVocab(), {embd: 64, layers: 2, heads: 4, kvHeads: 2, ff: 128}, "q4_0", 91, "align-q4_0").write(q4);
    });

    it("\"auto\" rounds steps for Q4_0 weights on the CPU and not for f32 ones; anything but \"auto\", 0 and 4 is refused by name", async () => {
        for (const [file, expected] of [[q4, 4], [await tinyModel(), 0]] as const) {
            const model = await SelfRagModel.load({modelPath: file, contextSize: 128, sequences: 2, gpu: false});
            try {
                assert.equal(model.context.info.stepRowAlign, expected, file);
            } finally {
                await model.dispose();
            }
        }
        await assert.rejects(SelfRagModel.load({modelPath: q4, stepRowAlign: 3 as never, gpu: false}),
            rejectsWith("INVALID_ARGUMENT", /stepRowAlign/));
    });

    it("3 candidates generating together get one throwaway token per step: the same answers, the same tokens evaluated, an empty KV after", async () => {
        const runs = [];
        for (const align of [0, 4] as const) {
            const model = await SelfRagModel.load({modelPath: q4, contextSize: 256, sequences: 3, gpu: false, stepRowAlign: align});
            try {
                const before = model.context.stats;
                const first = await model.answer("Which countries does the Danube flow through?", OPTIONS);
                const after = model.context.stats;
                // A second question on the same slots: whatever the first left behind would change it.
                const second = await model.answer("Tell me about Strauss.", OPTIONS);
                const slots = [0, 1, 2].map((seq) => model.context.sequenceInfo(seq).nPast);
                runs.push({align, first, second, evaluated: after.tokensEvaluated - before.tokensEvaluated,
                    padding: after.paddingTokens - before.paddingTokens, steps: after.steps - before.steps, slots});
            } finally {
                await model.dispose();
            }
        }
        const [plain, padded] = runs;
        assert.equal(plain.padding, 0);
        // 23 steps of the 3 generating candidates: each rounded to 4.
        assert.ok(padded.padding >= 20, `throwaway tokens: ${padded.padding}`);
        assert.equal(padded.evaluated, plain.evaluated, "tokensEvaluated counts real tokens only");
        for (const key of ["first", "second"] as const) {
            assert.equal(padded[key].answer, plain[key].answer, key);
            assert.deepEqual(padded[key].trace!.candidates.map((c) => c.tokens), plain[key].trace!.candidates.map((c) => c.tokens), key);
            padded[key].candidates.forEach((c, i) => assert.ok(Math.abs(c.score - plain[key].candidates[i].score) < 1e-4,
                `${key} candidate ${i}: ${c.score} vs ${plain[key].candidates[i].score}`));
        }
        // Released slots hold nothing but a kept prompt (the root's): no throwaway token stays behind.
        assert.deepEqual(padded.slots, plain.slots);
    });
});
