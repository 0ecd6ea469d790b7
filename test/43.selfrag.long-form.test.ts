import assert from "node:assert/strict";
import type {Passage} from "../lib/selfrag/prompts.js";
import {formatPrompt, taskInstruction} from "../lib/selfrag/prompts.js";
import {SegmentScorer} from "../lib/selfrag/SegmentScorer.js";
import {SelfRagError} from "../lib/errors.js";
import {SelfRagModel} from "../lib/SelfRagModel.js";
import {TreeSearch, type TreeNode} from "../lib/selfrag/TreeSearch.js";
import {tinyModel} from "../test-support/fixtures.js";
import {ReencodingSource} from "../test-support/treeSources.js";

const PASSAGES: Passage[] = [
    {id: "p", title: "Paris", text: "Paris is the capital and largest city of France. Paris"},
    {id: "b", title: "Berlin", text: "Berlin is the capital of Germany."},
    {id: "r", title: "Rome", text: "Rome is a city in Italy."},
    {id: "m", title: "Madrid", text: "Madrid is in Spain."},
    {id: "l", title: "Lyon", text: "Lyon is a city of France."}
];
const QUESTION = "Tell me a bio of the capital of France.";

describe("long-form Self-RAG on the fixture model", () => {
    let model: SelfRagModel;
    before(async () => {
        model = await SelfRagModel.load({modelPath: await tinyModel(), contextSize: 512, sequences: 10, gpu: false});
    });
    after(async () => model?.dispose());

    /**
     * The oracle: the same search with every child's context encoded from scratch in its own slot
     * (the reference schedule), run on the same engine; `reencoded` is what it decoded, measured by
     * the engine's counter: the root's decision pass, then every child's context and generation.
     */
    async function reencodingRun(question: string, options: {passages: Passage[], beamWidth: number, maxDepth: number, maxNewTokens: number,
        policy: "reference" | "interleaved", task: "asqa" | "none"}) {
        const prompt = model.tokenize(formatPrompt(taskInstruction(options.task, question)));
        const scorer = await SegmentScorer.create(model.reflection.ids);
        const oracle = new ReencodingSource(model, scorer, prompt, {policy: options.policy, maxNewTokens: options.maxNewTokens, threshold: 0.2});
        const root: TreeNode = {id: 0, parent: null, depth: 0, text: "", tokens: new Int32Array(0), score: 1, asksRetrieval: true, stopReason: "root", inBeam: true};
        const slow = await TreeSearch.run(root, oracle, {beamWidth: options.beamWidth, maxDepth: options.maxDepth, passagesFor: (_n, path) => {
            oracle.remember(path);
            return options.passages;
        }});
        return {slow, reencoded: prompt.length + oracle.tokensEvaluated};
    }

    for (const policy of ["reference", "interleaved"] as const) {
        it(`shared-prefix search equals re-encoding every context, in at most half the decoded tokens (${policy} context)`, async () => {
            const options = {passages: PASSAGES, beamWidth: 2, maxDepth: 4, maxNewTokens: 20, contextPolicy: policy, task: "asqa" as const};
            const fast = await model.answerLong(QUESTION, options);
            assert.equal(model.context.freeSlots, 10, "no slot leaks");
            const {slow, reencoded} = await reencodingRun(QUESTION, {...options, policy});
            assert.equal(fast.tree.length, slow.nodes.length);
            fast.tree.forEach((node, i) => {
                const expected = slow.nodes[i];
                assert.equal(node.parent, expected.parent, `node ${i} parent`);
                assert.equal(node.text, expected.text, `node ${i} text`);
                assert.equal(node.inBeam, expected.inBeam, `node ${i} in beam`);
                assert.equal(node.stopReason, expected.stopReason, `node ${i} stop`);
                assert.ok(Math.abs(node.score - expected.score) < 1e-4 * Math.max(1, expected.score), `node ${i} score ${node.score} vs ${expected.score}`);
            });
            assert.deepEqual(fast.segments.map((s) => s.text), slow.bestPath.map((n) => n.text).filter((t) => t !== ""));
            assert.ok(fast.stats.depth >= 2, "the fixture asks for evidence again, so the answer has several segments");
            // The ratio against what re-encoding actually decoded, not against a computed figure.
            assert.ok(fast.stats.evaluatedTokens / reencoded <= 0.5, `evaluated ${fast.stats.evaluatedTokens} vs re-encoding ${reencoded}`);
            // The reported referenceTokens is that schedule, counting each child's last token, which
            // re-encoding leaves undecoded (the next context decodes it), once per child.
            assert.equal(fast.stats.referenceTokens, reencoded + (slow.nodes.length - 1), "referenceTokens is the measured re-encoding");
        });
    }

    it("5 passages, beam 2, depth 3: at most half the tokens re-encoding decodes (measured)", async () => {
        const r = await model.answerLong(QUESTION, {passages: PASSAGES, beamWidth: 2, maxDepth: 3, maxNewTokens: 20, task: "asqa"});
        assert.ok(r.stats.nodes >= 10);
        const {slow, reencoded} = await reencodingRun(QUESTION, {passages: PASSAGES, beamWidth: 2, maxDepth: 3, maxNewTokens: 20, policy: "reference", task: "asqa"});
        assert.deepEqual(r.tree.map((n) => n.text), slow.nodes.map((n) => n.text), "the oracle ran the same search");
        assert.ok(r.stats.evaluatedTokens / reencoded <= 0.5, `${r.stats.evaluatedTokens} / ${reencoded}`);
    });

    it("answer, segments, citations and ignoreCont on real generations", async () => {
        const r = await model.answerLong(QUESTION, {passages: PASSAGES, beamWidth: 2, maxDepth: 4, maxNewTokens: 20});
        assert.equal(r.retrieve.decision, true);
        assert.equal(r.segments.length, r.docs.length);
        r.segments.forEach((s, i) => {
            assert.equal(s.citation, i + 1);
            assert.ok(r.answer.includes(`[${i + 1}]`));
            assert.equal(s.passage, r.docs[i]);
        });
        const last = r.segments[r.segments.length - 1];
        assert.equal(last.text, "[Relevant] Paris.[Fully supported][Utility:5]</s>");
        assert.ok(r.answer.endsWith("Paris [" + r.segments.length + "]."));
        // with only the Berlin passage every segment is contradicted: ignoreCont empties the answer
        const berlin = await model.answerLong(QUESTION, {passages: [PASSAGES[1]], beamWidth: 1, maxDepth: 3, maxNewTokens: 20});
        assert.ok(berlin.segments.every((s) => s.text.includes("[No support / Contradictory]")));
        const dropped = await model.answerLong(QUESTION, {passages: [PASSAGES[1]], beamWidth: 1, maxDepth: 3, maxNewTokens: 20, ignoreCont: true});
        assert.equal(dropped.segments.length, 0);
        assert.equal(dropped.answer, "");
    });

    it("no retrieval at the root: one generation after [No Retrieval], text up to the first blank line", async () => {
        const r = await model.answerLong("Say hello to a new user.", {passages: PASSAGES});
        assert.equal(r.retrieve.decision, false);
        assert.equal(r.answer, "London.");
        assert.equal(r.stats.stop, "no-retrieval");
        assert.equal(model.context.freeSlots, 10);
    });

    it("dynamic passages: the retriever is asked with the question plus the text so far", async () => {
        const queries: string[] = [];
        const r = await model.answerLong(QUESTION, {beamWidth: 1, maxDepth: 3, maxNewTokens: 20, ndocs: 2, retriever: (query, k) => {
            queries.push(query);
            return PASSAGES.slice(1, 1 + k);
        }});
        assert.equal(queries[0], QUESTION);
        assert.ok(queries.length >= 2 && queries[1].startsWith(QUESTION + " London."), queries[1]);
        assert.equal(r.docs.length, r.segments.length);
    });

    it("a search deeper than the context allows stops with a reason, not a crash", async () => {
        const small = await SelfRagModel.load({modelPath: await tinyModel(), contextSize: 100, sequences: 2, gpu: false});
        try {
            const r = await small.answerLong(QUESTION, {passages: [PASSAGES[2]], beamWidth: 2, ndocs: 1, maxDepth: 20, maxNewTokens: 20});
            assert.equal(r.stats.stop, "context");
            const blocked = r.tree.find((n) => n.notExpanded != null)!;
            assert.match(blocked.notExpanded!, /context full: the path so far \(\d+ tokens\), a passage \(\d+\) and maxNewTokens \(20\) need \d+ of 100/);
            assert.equal(small.context.freeSlots, 2);
        } finally {
            await small.dispose();
        }
    });

    it("bad input: too few slots for beamWidth x ndocs, no passages at all; slots stay free", async () => {
        await assert.rejects(model.answerLong(QUESTION, {passages: PASSAGES, beamWidth: 3}),
            (e: unknown) => e instanceof SelfRagError && e.code === "TOO_FEW_SLOTS" && /beamWidth x ndocs = 15/.test(e.message));
        await assert.rejects(model.answerLong(QUESTION, {}), (e: unknown) => e instanceof SelfRagError && e.code === "INVALID_ARGUMENT");
        await assert.rejects(model.answerLong(QUESTION, {beamWidth: 1, retriever: () => {
            throw new Error("index offline");
        }}), /index offline/);
        assert.equal(model.context.freeSlots, 10);
    });
});

describe("long-form batches", () => {
    let model: SelfRagModel;
    before(async () => {
        model = await SelfRagModel.load({modelPath: await tinyModel(), contextSize: 512, sequences: 20, gpu: false});
    });
    after(async () => model?.dispose());

    it("evaluatedTokens is exactly what went through llama_decode", async () => {
        for (const contextPolicy of ["reference", "interleaved"] as const) {
            const before = model.context.stats.tokensEvaluated;
            const r = await model.answerLong(QUESTION, {passages: PASSAGES, beamWidth: 2, maxDepth: 4, maxNewTokens: 20, contextPolicy});
            assert.equal(r.stats.evaluatedTokens, model.context.stats.tokensEvaluated - before, contextPolicy);
        }
        const before = model.context.stats.tokensEvaluated;
        const plain = await model.answerLong("Say hello to a new user.", {passages: PASSAGES});
        assert.equal(plain.stats.evaluatedTokens, model.context.stats.tokensEvaluated - before, "no retrieval");
    });

    it("searches of several questions share decode steps and give the same answers as one by one", async () => {
        const questions = [QUESTION, "Say hello to a new user.", "Tell me a bio of Paris, the capital of France.", "Tell me a bio of the capital city."];
        const options = {passages: PASSAGES, beamWidth: 2, maxDepth: 4, maxNewTokens: 20};
        let before = model.context.stats.decodeCalls;
        const batch = await model.answerLongBatch(questions, options);
        const batchCalls = model.context.stats.decodeCalls - before;
        assert.equal(model.context.freeSlots, 20);
        let singleCalls = 0;
        for (let i = 0; i < questions.length; i++) {
            before = model.context.stats.decodeCalls;
            const one = await model.answerLong(questions[i], options);
            singleCalls += model.context.stats.decodeCalls - before;
            assert.equal(batch[i].answer, one.answer, `question ${i}`);
            assert.deepEqual(batch[i].tree.map((n) => [n.parent, n.text, n.inBeam]), one.tree.map((n) => [n.parent, n.text, n.inBeam]));
            batch[i].tree.forEach((n, k) => assert.ok(Math.abs(n.score - one.tree[k].score) < 1e-4 * Math.max(1, n.score)));
            assert.equal(batch[i].stats.evaluatedTokens, one.stats.evaluatedTokens);
        }
        assert.ok(batchCalls < singleCalls, `batched ${batchCalls} decode calls vs ${singleCalls} one by one`);
    });

    it("questions with their own passages batch together and answer as each would alone with its passages", async () => {
        const items = [
            {question: QUESTION, passages: PASSAGES.slice(0, 2)},
            {question: "Tell me a bio of Paris, the capital of France.", passages: PASSAGES.slice(1)},
            {question: "Say hello to a new user."}
        ];
        const options = {passages: PASSAGES.slice(0, 1), beamWidth: 2, maxDepth: 3, maxNewTokens: 20};
        const batch = await model.answerLongBatch(items, options);
        for (const [i, item] of items.entries()) {
            // The third brings none: it uses options.passages.
            const one = await model.answerLong(item.question, {...options, passages: item.passages ?? options.passages});
            assert.equal(batch[i].answer, one.answer, `question ${i}`);
            assert.deepEqual(batch[i].tree.map((n) => [n.parent, n.text, n.passage?.title]), one.tree.map((n) => [n.parent, n.text, n.passage?.title]));
        }
        assert.equal(model.context.freeSlots, 20);
    });
});
