// KV cache types and flash attention (SelfRagModel.load kvCacheType / flashAttention): a q8_0
// cache answers the fixture questions with the same winners as f16, scores within a stated
// tolerance, in about half the KV memory llama.cpp reports; combinations llama.cpp cannot run are
// refused by name before any context is made.
import assert from "node:assert/strict";
import {SelfRagModel} from "../lib/SelfRagModel.js";
import type {ShortFormAnswer} from "../lib/selfrag/ShortForm.js";
import {CAPITALS} from "../test-support/corpora.js";
import {rejectsWith} from "../test-support/assertions.js";
import {tempDir, tinyModel} from "../test-support/fixtures.js";
import {runCli} from "../test-support/cli.js";
import fs from "node:fs";
import path from "node:path";

/**
 * Score tolerance against f16: q8_0 keeps 8 bits per value with a scale per 32 values (measured
 * here: 1.7e-5 at most over these 12 candidates), q4_0 4 bits (measured 1.8e-2). The winners must
 * not move at all.
 */
const TOLERANCE = {q8_0: 1e-3, q4_0: 0.05} as const;

async function answers(kvCacheType: "f16" | "q8_0" | "q4_0", flashAttention?: "auto" | "on" | "off") {
    const model = await SelfRagModel.load({modelPath: await tinyModel(), contextSize: 512, sequences: 3, gpu: false, kvCacheType,
        ...(flashAttention != null ? {flashAttention} : {})});
    try {
        const results: ShortFormAnswer[] = [];
        for (const [question] of CAPITALS.questions) results.push(await model.answer(question, {passages: [...CAPITALS.ctxs], mode: "always", maxNewTokens: 16}));
        return {results, info: model.context.info};
    } finally {
        await model.dispose();
    }
}

describe("KV cache types and flash attention", function () {
    this.timeout(300_000);

    it("q8_0 and q4_0 give the f16 winners, scores within the tolerance, in about 1/2 and 1/4 of the KV bytes", async () => {
        const f16 = await answers("f16");
        const q8 = await answers("q8_0");
        const q4 = await answers("q4_0");
        assert.equal(f16.info.kvCacheType, "f16");
        assert.equal(q8.info.kvCacheType, "q8_0");
        assert.equal(q8.info.flashAttention, "auto");
        // Per 32 values: f16 64 bytes, q8_0 34, q4_0 18 (llama.cpp's own count of what it allocated).
        const q8Ratio = q8.info.kvCacheBytes / f16.info.kvCacheBytes;
        const q4Ratio = q4.info.kvCacheBytes / f16.info.kvCacheBytes;
        assert.ok(Math.abs(q8Ratio - 34 / 64) < 0.02, `q8_0 / f16 KV bytes ${q8Ratio}`);
        assert.ok(Math.abs(q4Ratio - 18 / 64) < 0.02, `q4_0 / f16 KV bytes ${q4Ratio}`);
        for (const [type, run] of [["q8_0", q8], ["q4_0", q4]] as const) {
            for (const [i, reference] of f16.results.entries()) {
                const quantized = run.results[i];
                assert.equal(quantized.best, reference.best, `${type}, question ${i}: the winner`);
                assert.equal(quantized.answer, reference.answer, `${type}, question ${i}: the answer`);
                reference.candidates.forEach((c, j) => assert.ok(Math.abs(quantized.candidates[j].score - c.score) < TOLERANCE[type],
                    `${type}, question ${i} candidate ${j}: ${quantized.candidates[j].score} vs ${c.score}`));
            }
        }
        assert.equal(f16.results[0].answer, "Paris.", "the fixture answers as designed");
    });

    it("flash attention on and off give the same f16 answers", async () => {
        const on = await answers("f16", "on");
        const off = await answers("f16", "off");
        assert.equal(on.info.flashAttention, "on");
        assert.deepEqual(on.results.map((r) => [r.best, r.answer]), off.results.map((r) => [r.best, r.answer]));
    });

    it("refuses what llama.cpp cannot combine, and unknown types, by name", async () => {
        const modelPath = await tinyModel();
        await assert.rejects(SelfRagModel.load({modelPath, kvCacheType: "q8_0", flashAttention: "off", gpu: false}),
            rejectsWith("INVALID_ARGUMENT", /kvCacheType "q8_0" needs flash attention/));
        await assert.rejects(SelfRagModel.load({modelPath, kvCacheType: "q5_1" as never, gpu: false}), rejectsWith("INVALID_ARGUMENT", /for kvCacheType/));
        await assert.rejects(SelfRagModel.load({modelPath, flashAttention: "yes" as never, gpu: false}), rejectsWith("INVALID_ARGUMENT", /for flashAttention/));
    });

    it("the commands that load a model take --kv-type and --flash-attn, refused by flag name", async () => {
        const passages = path.join(tempDir, "kv-passages.jsonl");
        fs.writeFileSync(passages, CAPITALS.ctxs.map((p) => JSON.stringify(p)).join("\n") + "\n");
        const ask = (...flags: string[]) => runCli(["ask", "--model", "MODEL", "--passages", passages, "--mode", "always", "--max-new-tokens", "16", "--json",
            ...flags, CAPITALS.questions[0][0]].map((a) => a === "MODEL" ? modelPath : a));
        const modelPath = await tinyModel();
        const f16 = await ask();
        const q8 = await ask("--kv-type", "q8_0");
        assert.equal(q8.code, 0, q8.stderr);
        assert.equal(JSON.parse(q8.stdout).answer, JSON.parse(f16.stdout).answer);
        const off = await ask("--kv-type", "q8_0", "--flash-attn", "off");
        assert.equal(off.code, 1);
        assert.match(off.stderr, /--kv-type q8_0 needs flash attention.*\[INVALID_ARGUMENT\]/);
        const bad = await ask("--kv-type", "q5");
        assert.match(bad.stderr, /for --kv-type.*\[INVALID_ARGUMENT\]/);
        for (const command of ["eval", "serve", "worker", "bench", "inspect", "demo"]) {
            const help = await runCli([command, "--help"]);
            assert.match(help.stdout, /--kv-type f16\|q8_0\|q4_0/, command);
            assert.match(help.stdout, /--flash-attn auto\|on\|off/, command);
        }
    });
});
