import assert from "node:assert/strict";
import {closedSetVote, postProcessAnswer} from "../lib/selfrag/answers.js";
import {SelfRagError} from "../lib/errors.js";
import {formatPassage, formatPrompt, taskInstruction} from "../lib/selfrag/prompts.js";
import {decideRetrieval} from "../lib/selfrag/RetrievalDecision.js";
import {SegmentScorer} from "../lib/selfrag/SegmentScorer.js";
import {oracleScore, type OracleCandidate} from "../test-support/critiqueOracle.js";
import {mulberry32} from "../test-support/random.js";

const IDS = Array.from({length: 15}, (_, i) => 32000 + i);

function randomCandidate(next: () => number, spread = 8): OracleCandidate {
    const n = 1 + Math.floor(next() * 12);
    const tokens = Array.from({length: n}, () => (next() < 0.3 ? IDS[Math.floor(next() * 15)] : Math.floor(next() * 32000)));
    const logprobs = tokens.map(() => -next() * spread);
    const reflection = tokens.map(() => Array.from({length: 15}, () => -next() * spread));
    return {tokens, logprobs, reflection};
}

const toSegment = (c: OracleCandidate) => ({
    tokens: Int32Array.from(c.tokens), logprobs: Float32Array.from(c.logprobs), reflection: Float32Array.from(c.reflection.flat())
});

function close(actual: number, expected: number, what: string, tolerance = 1e-5) {
    assert.ok(Math.abs(actual - expected) <= tolerance * Math.max(1, Math.abs(expected)), `${what}: ${actual} vs ${expected}`);
}

describe("critique scoring (native) against the TypeScript formulas", () => {
    let scorer: SegmentScorer;
    before(async () => {
        scorer = await SegmentScorer.create(Int32Array.from(IDS));
    });

    it("random candidates, default and custom weights", () => {
        const next = mulberry32(42);
        const candidates = Array.from({length: 200}, () => randomCandidate(next));
        for (const w of [{rel: 1, sup: 1, use: 0.5, seq: true}, {rel: 0.3, sup: 2, use: -1, seq: false}]) {
            const scores = scorer.score(candidates.map(toSegment), {relevance: w.rel, support: w.sup, utility: w.use, useSequenceScore: w.seq});
            candidates.forEach((c, i) => {
                // Inputs go through float32, so the oracle sees the same rounded values.
                const rounded = {tokens: c.tokens, logprobs: c.logprobs.map(Math.fround), reflection: c.reflection.map((r) => r.map(Math.fround))};
                const expected = oracleScore(rounded, IDS, w);
                for (const key of ["score", "relevance", "support", "utility", "seq"] as const) close(scores[i][key], expected[key], `candidate ${i} ${key}`);
            });
        }
    });

    it("extreme log-probs far below -100 stay finite and exact", () => {
        const deep = randomCandidate(mulberry32(7), 1);
        deep.tokens = [IDS[4], 100, IDS[12], IDS[11], 2];
        deep.logprobs = [-0.1, -300, -0.2, -0.3, -0.1];
        deep.reflection = deep.tokens.map(() => Array.from({length: 15}, (_, k) => -200 - k));
        const [s] = scorer.score([toSegment(deep)]);
        const expected = oracleScore(deep, IDS);
        for (const key of ["score", "relevance", "support", "utility", "seq"] as const) close(s[key], expected[key], key);
        // Below exp's range (-745) a naive ratio is 0/0; shifted, equal log-probs give the even split.
        const underflow = {tokens: [IDS[12], IDS[7]], logprobs: [-1, -1], reflection: [Array(15).fill(-2000), Array(15).fill(-2000)]};
        const [u] = scorer.score([toSegment(underflow)]);
        assert.equal(u.relevance, 0.5);
        assert.equal(u.support, 0.5, "(1 + 0.5) / 3");
        assert.equal(u.utility, 0);
        assert.ok(Number.isFinite(u.score));
    });

    it("no isSup / isUse token generated: those terms are 0; no tokens at all: everything 0 but exp(0)", () => {
        const plain = {tokens: [5, 6, 7], logprobs: [-1, -2, -3], reflection: [0, 1, 2].map(() => Array(15).fill(-3))};
        const [s] = scorer.score([toSegment(plain)]);
        assert.equal(s.support, 0);
        assert.equal(s.utility, 0);
        close(s.seq, -2, "seq");
        close(s.score, Math.exp(-2) + 0.5, "score");
        const [empty] = scorer.score([toSegment({tokens: [], logprobs: [], reflection: []})]);
        assert.deepEqual(empty, {score: 1, relevance: 0, support: 0, utility: 0, seq: 0});
    });

    it("reads support and utility at the FIRST isSup / isUse token", () => {
        const rows = [Array(15).fill(-5), Array(15).fill(-5), Array(15).fill(-5), Array(15).fill(-5)];
        rows[1][12] = -0.01; // first isSup position: fully supported
        rows[2][14] = -0.01; // a later isSup position: no support (must be ignored)
        const c = {tokens: [100, IDS[12], IDS[14], IDS[11]], logprobs: [-1, -1, -1, -1], reflection: rows};
        const [s] = scorer.score([toSegment(c)]);
        close(s.support, oracleScore(c, IDS).support, "support");
        assert.ok(s.support > 0.9);
    });

    it("the reference long-form switch zeroes utility", () => {
        const c = randomCandidate(mulberry32(3));
        c.tokens[0] = IDS[11];
        const [on] = scorer.score([toSegment(c)], {referenceLongFormUtility: true});
        assert.equal(on.utility, 0);
    });

    it("rejects candidates whose arrays disagree", () => {
        assert.throws(() => scorer.score([{tokens: Int32Array.of(1, 2), logprobs: Float32Array.of(0), reflection: new Float32Array(30)}]), SelfRagError);
    });
});

describe("retrieval decision, prompts and answers", () => {
    const row = (ret: number, noRet: number) => {
        const r = new Array(15).fill(-20);
        r[1] = Math.log(ret);
        r[0] = Math.log(noRet);
        return r;
    };

    it("adaptive thresholds P(ret) / (P(ret) + P(no ret)); always / never override it", () => {
        assert.deepEqual(decideRetrieval(row(0.3, 0.6)), {decision: true, p: 0.3 / 0.9});
        assert.equal(decideRetrieval(row(0.1, 0.8)).decision, false);
        assert.equal(decideRetrieval(row(0.1, 0.8), {mode: "always"}).decision, true);
        assert.equal(decideRetrieval(row(0.9, 0.1), {mode: "never"}).decision, false);
        assert.equal(decideRetrieval(row(0.3, 0.6), {threshold: 0.5}).decision, false);
    });

    it("the reference log-prob ratio inverts the meaning (compatibility switch)", () => {
        const likely = decideRetrieval(row(0.9, 0.05), {retrieveRatio: "reference-logprob"});
        const unlikely = decideRetrieval(row(0.05, 0.9), {retrieveRatio: "reference-logprob"});
        close(likely.p, Math.log(0.9) / (Math.log(0.9) + Math.log(0.05)), "p");
        assert.ok(likely.p < unlikely.p, "a more likely [Retrieval] gives a smaller reference ratio");
        assert.throws(() => decideRetrieval(row(0.5, 0.5), {retrieveRatio: "logits" as never}), SelfRagError);
    });

    it("formats prompts, passages and task instructions like the reference", () => {
        assert.equal(formatPrompt("Q?"), "### Instruction:\nQ?\n\n### Response:\n");
        assert.equal(formatPrompt("Q?", "ctx"), "### Instruction:\nQ?\n\n### Input:\nctx\n\n### Response:\n");
        assert.equal(formatPassage({title: "T", text: "body"}), "[Retrieval]<paragraph>T\nbody</paragraph>");
        assert.equal(taskInstruction("arc_c", "Which is a gas?", ["ice", "steam", "rock", "wood"]),
            "Given four answer candidates, A, B, C and D, choose the best answer choice.\n\n### Input:\nWhich is a gas?\nA: ice\nB: steam\nC: rock\nD: wood");
        assert.equal(taskInstruction("arc_c", "Q", ["x", "y", "z"]).endsWith("\nC: z\nD: "), true, "missing D is empty");
        assert.equal(taskInstruction("fever", "The sky is green."),
            "Is the following statement correct or not? Say true if it's correct; otherwise say false.\n\n## Input:\n\nThe sky is green.");
        assert.equal(taskInstruction("popqa", "Who?"), "Who?");
    });

    it("post-processes answers and votes over a closed set", () => {
        assert.equal(postProcessAnswer("[Relevant] Paris\nis.[Fully supported][Utility:5]</s>"), "Parisis.");
        assert.equal(postProcessAnswer("[Relevant]SUPPORTS[Utility:5]</s>", "fever"), "true");
        assert.equal(postProcessAnswer("REFUTES</s>", "fever"), "false");
        assert.equal(postProcessAnswer("REFUTES</s>", "popqa"), "REFUTES");
        const vote = closedSetVote([{answer: "A", score: 1.0}, {answer: "B", score: 1.5}, {answer: "A", score: 0.9}, {answer: "C", score: 2.0}]);
        assert.equal(vote.answer, "C", "C 2.0 beats A 1.0 + 0.9");
        assert.equal(vote.totals.get("A"), 1.9);
        assert.equal(closedSetVote([{answer: "A", score: 1.0}, {answer: "B", score: 0.6}, {answer: "A", score: 0.7}]).answer, "A");
        assert.equal(closedSetVote([{answer: "A", score: 1}, {answer: "B", score: 1}]).answer, "A", "ties: first seen");
    });
});
