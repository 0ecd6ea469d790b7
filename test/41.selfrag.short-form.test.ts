import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import {readPassagesJsonl} from "../lib/selfrag/passages.js";
import type {Passage} from "../lib/selfrag/prompts.js";
import {formatPassage, formatPrompt} from "../lib/selfrag/prompts.js";
import {SegmentScorer} from "../lib/selfrag/SegmentScorer.js";
import {SelfRagError} from "../lib/errors.js";
import {SelfRagModel} from "../lib/SelfRagModel.js";
import {rerankTrace, validateTrace} from "../lib/selfrag/traces.js";
import {tempDir, tinyModel} from "../test-support/fixtures.js";
import {oracleScore} from "../test-support/critiqueOracle.js";

const CORPUS: Passage[] = [
    {id: "b", title: "Berlin", text: "Berlin is the capital of Germany."},
    {id: "p", title: "Paris", text: "Paris is the capital and largest city of France. Paris"},
    {id: "r", title: "Rome", text: "Rome is the capital of Italy."}
];
const QUESTION = "What is the capital of France?";

describe("short-form Self-RAG on the fixture model", () => {
    let model: SelfRagModel;
    before(async () => {
        model = await SelfRagModel.load({modelPath: await tinyModel(), contextSize: 512, sequences: 6, gpu: false});
    });
    after(async () => model?.dispose());

    it("p equals inspect() on the same prompt, and the answer is the best candidate's post-processed text", async () => {
        const result = await model.answer(QUESTION, {passages: CORPUS});
        const inspected = await model.inspect(formatPrompt(QUESTION));
        assert.equal(result.retrieve.p, inspected.p_retrieve);
        assert.equal(result.retrieve.decision, true);
        assert.equal(result.candidates.length, 3);
        const scores = result.candidates.map((c) => c.score);
        assert.equal(result.best, scores.indexOf(Math.max(...scores)));
        assert.equal(result.best, 1, "the Paris passage wins");
        assert.equal(result.answer, "Paris.");
        assert.equal(result.candidates[1].text, "[Relevant] Paris.[Fully supported][Utility:5]</s>");
        assert.deepEqual(result.candidates.map((c) => c.passage?.id), ["b", "p", "r"]);
    });

    it("candidate scores equal the TypeScript formulas on the saved trace", async () => {
        const result = await model.answer(QUESTION, {passages: CORPUS, traces: true});
        const trace = result.trace!;
        trace.candidates.forEach((c, i) => {
            const expected = oracleScore(c, trace.reflection_ids);
            assert.ok(Math.abs(result.candidates[i].score - expected.score) < 1e-6, `candidate ${i}`);
        });
        // Re-scoring the saved trace offline (after a JSON round trip) gives the TypeScript
        // oracle's scores and choice, with the default weights and with others.
        const scorer = await SegmentScorer.create(model.reflection.ids);
        const saved = validateTrace(JSON.parse(JSON.stringify(trace)), "trace");
        const weightSets = [{}, {relevance: 0.2, support: 2, utility: 1.5}, {useSequenceScore: false, utility: -1, relevance: 3}];
        for (const weights of weightSets) {
            const reranked = rerankTrace(saved, scorer, weights);
            const w = {rel: weights.relevance ?? 1, sup: weights.support ?? 1, use: weights.utility ?? 0.5, seq: weights.useSequenceScore ?? true};
            const expected = saved.candidates.map((c) => oracleScore(c, saved.reflection_ids, w));
            reranked.candidates.forEach((c, i) => {
                for (const key of ["score", "relevance", "support", "utility", "seq"] as const) {
                    assert.ok(Math.abs(c[key] - expected[i][key]) < 1e-6, `${JSON.stringify(weights)} candidate ${i} ${key}: ${c[key]} vs ${expected[i][key]}`);
                }
            });
            const oracleBest = expected.reduce((b, e, i) => (e.score > expected[b].score ? i : b), 0);
            assert.equal(reranked.best, oracleBest, JSON.stringify(weights));
        }
        assert.equal(rerankTrace(saved, scorer, {}).best, result.best);
    });

    it("candidates decoded together equal candidates decoded one by one", async () => {
        const together = await model.answer(QUESTION, {passages: CORPUS, traces: true});
        for (let i = 0; i < CORPUS.length; i++) {
            const alone = await model.answer(QUESTION, {passages: [CORPUS[i]], traces: true, mode: "always"});
            assert.deepEqual(alone.trace!.candidates[0].tokens, together.trace!.candidates[i].tokens);
            assert.ok(Math.abs(alone.candidates[0].score - together.candidates[i].score) < 1e-4, `passage ${i}`);
        }
    });

    it("encodes the shared prompt and the passages' common start once: tokens evaluated = prompt + passages - shared + generated - last tokens", async () => {
        const before = model.context.stats.tokensEvaluated;
        const result = await model.answer(QUESTION, {passages: CORPUS, traces: true});
        const used = model.context.stats.tokensEvaluated - before;
        const generated = result.trace!.candidates.reduce((n, c) => n + c.tokens.length - 1, 0);
        // Every passage starts with `[Retrieval]<paragraph>`: those tokens are decoded once for all slots.
        const passages = CORPUS.map((p) => Array.from(model.tokenize(formatPassage(p), {bos: false})));
        let common = 0;
        while (passages.every((t) => common < t.length - 1 && t[common] === passages[0][common])) common++;
        assert.ok(common >= 2, `the passages share [Retrieval]<paragraph>: ${common} tokens`);
        assert.equal(used, result.stats.promptTokens - result.stats.cachedPromptTokens + result.stats.passageTokens - (CORPUS.length - 1) * common + generated);
        const prompt = model.tokenize(formatPrompt(QUESTION));
        const reEncoding = CORPUS.reduce((n, p) => n + prompt.length + model.tokenize(formatPassage(p), {bos: false}).length, 0);
        assert.ok(used < reEncoding + generated, "less than encoding every candidate's context from scratch");
        // the passage tokens are exactly those of prompt + passage tokenized as one string
        const whole = model.tokenize(formatPrompt(QUESTION) + formatPassage(CORPUS[1]));
        assert.deepEqual(whole, Int32Array.from([...prompt, ...model.tokenize(formatPassage(CORPUS[1]), {bos: false})]));
    });

    it("a prompt that starts like an earlier question's decodes only the rest, and answers as on a fresh context", async () => {
        const fresh = async () => SelfRagModel.load({modelPath: await tinyModel(), contextSize: 512, sequences: 3, gpu: false});
        const other = "What is the capital of Italy?";
        const options = {passages: CORPUS, traces: true};
        const oracle = await fresh();
        let alone: Awaited<ReturnType<SelfRagModel["answer"]>>;
        try {
            alone = await oracle.answer(other, options);
            assert.equal(alone.stats.cachedPromptTokens, 0, "a new context holds nothing");
        } finally {
            await oracle.dispose();
        }
        const warm = await fresh();
        try {
            const first = await warm.answer(QUESTION, options);
            assert.equal(first.stats.cachedPromptTokens, 0);
            // The same question again: all of its prompt but the last token (whose logits decide) is in the kept slot.
            let before = warm.context.stats.tokensEvaluated;
            const again = await warm.answer(QUESTION, options);
            assert.equal(again.stats.cachedPromptTokens, again.stats.promptTokens - 1);
            assert.equal(warm.context.stats.tokensEvaluated - before, used(again) - again.stats.cachedPromptTokens);
            assert.deepEqual(again.trace!.candidates.map((c) => c.tokens), first.trace!.candidates.map((c) => c.tokens));
            again.candidates.forEach((c, i) => assert.ok(Math.abs(c.score - first.candidates[i].score) < 1e-4, `candidate ${i}`));
            // Another question: the kept slot holds the template and the common words; only the rest is decoded.
            const a = Array.from(warm.tokenize(formatPrompt(QUESTION)));
            const b = Array.from(warm.tokenize(formatPrompt(other)));
            let common = 0;
            while (common < b.length - 1 && a[common] === b[common]) common++;
            before = warm.context.stats.tokensEvaluated;
            const reused = await warm.answer(other, options);
            assert.equal(reused.stats.cachedPromptTokens, common);
            assert.ok(common >= 5, `the template and "What is the capital of" are shared: ${common} tokens`);
            assert.equal(warm.context.stats.tokensEvaluated - before, used(reused) - common);
            assert.equal(reused.answer, alone.answer);
            assert.deepEqual(reused.trace!.candidates.map((c) => c.tokens), alone.trace!.candidates.map((c) => c.tokens));
            reused.candidates.forEach((c, i) => assert.ok(Math.abs(c.score - alone.candidates[i].score) < 1e-4, `candidate ${i}`));
            assert.equal(warm.context.freeSlots, 3);
        } finally {
            await warm.dispose();
        }
        // Without a cell for every position of every slot, free slots keep nothing (it could crowd out running ones).
        const small = await SelfRagModel.load({modelPath: await tinyModel(), contextSize: 512, sequences: 3, kvCells: 1024, gpu: false});
        try {
            await small.answer(QUESTION, options);
            assert.equal((await small.answer(QUESTION, options)).stats.cachedPromptTokens, 0);
        } finally {
            await small.dispose();
        }

        /** Tokens a question decodes without any reuse: prompt, passages (their common start once), generated but the last. */
        function used(r: typeof alone): number {
            const passages = CORPUS.map((p) => Array.from(warm.tokenize(formatPassage(p), {bos: false})));
            let shared = 0;
            while (passages.every((t) => shared < t.length - 1 && t[shared] === passages[0][shared])) shared++;
            return r.stats.promptTokens + r.stats.passageTokens - (CORPUS.length - 1) * shared +
                r.trace!.candidates.reduce((n, c) => n + c.tokens.length - 1, 0);
        }
    });

    it("without retrieval: one generation after [No Retrieval]; modes always / never override the decision", async () => {
        const chat = await model.answer("Say hello.", {passages: CORPUS});
        assert.equal(chat.retrieve.decision, false);
        assert.equal(chat.candidates.length, 1);
        assert.equal(chat.candidates[0].passage, null);
        assert.equal(chat.answer, "London.");
        const never = await model.answer(QUESTION, {passages: CORPUS, mode: "never"});
        assert.equal(never.retrieve.decision, false);
        assert.equal(never.candidates.length, 1);
        const always = await model.answer("Say hello.", {passages: CORPUS, mode: "always"});
        assert.equal(always.retrieve.decision, true);
        assert.equal(always.candidates.length, 3);
        const strict = await model.answer(QUESTION, {passages: CORPUS, threshold: 0.95});
        assert.equal(strict.retrieve.decision, false, "threshold above p");
    });

    it("closed-set vote (ARC-style choices): the answer with the largest summed score wins over the best single candidate", async () => {
        const passages = [CORPUS[1], CORPUS[0], CORPUS[2], {id: "m", title: "Madrid", text: "Madrid is in Spain."}];
        // Choices without "Paris": the fixture reacts to that word anywhere in its context.
        const result = await model.answer({question: QUESTION, task: "arc_c", choices: ["Lille", "London", "Nice", "Lyon"]}, {passages});
        const totals = new Map<string, number>();
        for (const c of result.candidates) totals.set(c.answer, (totals.get(c.answer) ?? 0) + c.score);
        const bestSingle = result.candidates.reduce((b, c, i) => (c.score > result.candidates[b].score ? i : b), 0);
        assert.equal(result.candidates[bestSingle].answer, "Paris.");
        assert.ok(totals.get("London.")! > totals.get("Paris.")!, "three London candidates outvote one Paris");
        assert.equal(result.answer, "London.");
        assert.deepEqual(result.votes, Object.fromEntries(totals));
        assert.equal(result.candidates[result.best].answer, "London.");
    });

    it("answerBatch packs several questions per wave and equals answering one by one", async () => {
        const questions = [QUESTION, "Say hello.", "Tell me the capital of Germany.", "Which city is the capital of France?"];
        const before = model.context.stats.decodeCalls;
        const batch = await model.answerBatch(questions, {passages: CORPUS, traces: true});
        const batchCalls = model.context.stats.decodeCalls - before;
        let singleCalls = 0;
        for (let i = 0; i < questions.length; i++) {
            const start = model.context.stats.decodeCalls;
            const one = await model.answer(questions[i], {passages: CORPUS, traces: true});
            singleCalls += model.context.stats.decodeCalls - start;
            assert.equal(batch[i].answer, one.answer);
            assert.deepEqual(batch[i].trace!.candidates.map((c) => c.tokens), one.trace!.candidates.map((c) => c.tokens));
            batch[i].candidates.forEach((c, k) => assert.ok(Math.abs(c.score - one.candidates[k].score) < 1e-4));
        }
        assert.ok(batchCalls < singleCalls, `batched ${batchCalls} decode calls vs ${singleCalls} one by one`);
        assert.equal(model.context.freeSlots, 6, "every slot released");
    });

    it("a passage longer than the context is truncated with a warning; the other passages are untouched", async () => {
        const long: Passage = {id: "long", title: "Long", text: "Paris ".repeat(2000)};
        const result = await model.answer(QUESTION, {passages: [CORPUS[0], long], maxNewTokens: 32});
        assert.equal(result.candidates.length, 2);
        assert.equal(result.warnings.length, 1);
        assert.match(result.warnings[0], /passage 1 \(long\) truncated from \d+ to \d+ tokens to fit the context of 512 tokens per sequence/);
        assert.ok(result.stats.promptTokens + result.stats.passageTokens <= 2 * 512);
    });

    it("bad input: more passages than slots, a prompt beyond the context", async () => {
        await assert.rejects(model.answer(QUESTION, {passages: [...CORPUS, ...CORPUS, ...CORPUS], ndocs: 9}),
            (e: unknown) => e instanceof SelfRagError && e.code === "TOO_FEW_SLOTS" && /needs 9 sequence slots/.test(e.message));
        await assert.rejects(model.answer("word ".repeat(600), {passages: CORPUS}),
            (e: unknown) => e instanceof SelfRagError && e.code === "CONTEXT_OVERFLOW");
        assert.equal(model.context.freeSlots, 6);
    });
});

describe("passages JSONL", () => {
    it("reads {id, title, text} lines and reports a malformed line by number", async () => {
        const good = path.join(tempDir, "good.jsonl");
        fs.writeFileSync(good, CORPUS.map((p) => JSON.stringify(p)).join("\n") + "\n\n");
        assert.deepEqual(await readPassagesJsonl(good), CORPUS);
        const bad = path.join(tempDir, "bad.jsonl");
        fs.writeFileSync(bad, `${JSON.stringify(CORPUS[0])}\n{"id": 2, "title": "x", "text": 5}\n`);
        await assert.rejects(readPassagesJsonl(bad), (e: unknown) => e instanceof SelfRagError && e.code === "INVALID_JSONL" &&
            e.message.includes("bad.jsonl:2") && e.message.includes(`field "text"`));
        const broken = path.join(tempDir, "broken.jsonl");
        fs.writeFileSync(broken, `${JSON.stringify(CORPUS[0])}\n${JSON.stringify(CORPUS[1])}\n{"id": 3, "title": \n`);
        await assert.rejects(readPassagesJsonl(broken), /broken\.jsonl:3: not valid JSON/);
        const empty = path.join(tempDir, "empty.jsonl");
        fs.writeFileSync(empty, "\n\n");
        await assert.rejects(readPassagesJsonl(empty), (e: unknown) => e instanceof SelfRagError && e.code === "EMPTY_PASSAGES");
    });
});
