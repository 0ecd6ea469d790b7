import assert from "node:assert/strict";
import {assembleLongForm} from "../lib/selfrag/LongForm.js";
import type {Passage} from "../lib/selfrag/prompts.js";
import {TreeSearch, type TreeNode} from "../lib/selfrag/TreeSearch.js";
import {ScriptedSource, type ScriptedSegment} from "../test-support/treeSources.js";

const PASSAGES: Passage[] = ["A", "B", "C"].map((t) => ({id: t.toLowerCase(), title: t, text: `About ${t}.`}));
const root = (): TreeNode => ({id: 0, parent: null, depth: 0, text: "", tokens: new Int32Array(0), score: 1, asksRetrieval: true, stopReason: "root", inBeam: true});

describe("tree search with a scripted generator", () => {
    it("beam selection, score products, termination and the best path, against hand-computed values", async () => {
        // raw candidate scores and retrieval requests, by parent id and passage index
        const table: Record<number, ScriptedSegment[]> = {
            0: [{text: "r-a", score: 2, asks: true}, {text: "r-b", score: 3, asks: true}, {text: "r-c", score: 1, asks: false}],
            2: [{text: "2-a", score: 1, asks: false}, {text: "2-b", score: 2, asks: true}, {text: "2-c", score: 0.5, asks: true}],
            1: [{text: "1-a", score: 4, asks: false}, {text: "1-b", score: 1, asks: true}, {text: "1-c", score: 1, asks: true}],
            5: [{text: "5-a", score: 1, asks: false}, {text: "5-b", score: 1, asks: false}, {text: "5-c", score: 1, asks: false}]
        };
        const source = new ScriptedSource((parent, i) => table[parent.id][i]);
        const result = await TreeSearch.run(root(), source, {beamWidth: 2, maxDepth: 7, passagesFor: () => PASSAGES});
        // depth 1: 1 (2), 2 (3), 3 (1) -> keep 2, 1. depth 2: node 2's children 4,5,6 = 3, 6, 1.5;
        // node 1's children 7,8,9 = 8, 2, 2 -> keep 7 (8), 5 (6). depth 3: only 5 asks -> 10,11,12 = 6,6,6
        // -> keep 10, 11 (ties: generation order). depth 4: nobody asks -> stop.
        assert.deepEqual(result.levels, [[0], [2, 1], [7, 5], [10, 11]]);
        assert.deepEqual(result.nodes.map((n) => n.score), [1, 2, 3, 1, 3, 6, 1.5, 8, 2, 2, 6, 6, 6]);
        assert.deepEqual(result.nodes.map((n) => n.parent), [null, 0, 0, 0, 2, 2, 2, 1, 1, 1, 5, 5, 5]);
        assert.equal(result.stop, "no-retrieval-requested");
        assert.deepEqual(result.bestPath.map((n) => n.id), [2, 5, 10], "deepest level's best, not the best score overall (8)");
        assert.deepEqual(result.bestPath.map((n) => n.text), ["r-b", "2-b", "5-a"]);
        assert.deepEqual(result.nodes.filter((n) => n.inBeam).map((n) => n.id), [0, 1, 2, 5, 7, 10, 11]);
        assert.equal(source.expandCalls, 3, "one expand call per depth: all beam nodes together");
        assert.equal(source.alive.size, 0, "every node's state was discarded");
    });

    it("stops at maxDepth: depths 1..maxDepth-1 are generated", async () => {
        const source = new ScriptedSource(() => ({text: "x", score: 1.5, asks: true}));
        const result = await TreeSearch.run(root(), source, {beamWidth: 2, maxDepth: 3, passagesFor: () => PASSAGES});
        assert.equal(result.levels.length, 3);
        assert.equal(result.stop, "max-depth");
        assert.equal(result.bestPath.length, 2);
        assert.equal(result.bestPath[1].score, 1.5 * 1.5);
        assert.equal(source.alive.size, 0);
    });

    it("a node whose children do not fit is not expanded, with the reason, and the search ends cleanly", async () => {
        const source = new ScriptedSource(() => ({text: "x", score: 1, asks: true}), (node) => (node.depth >= 1 ? "context full" : undefined));
        const result = await TreeSearch.run(root(), source, {beamWidth: 1, maxDepth: 7, passagesFor: () => PASSAGES});
        assert.equal(result.stop, "context");
        assert.equal(result.levels.length, 2);
        assert.equal(result.nodes[result.levels[1][0]].notExpanded, "context full");
        assert.equal(source.alive.size, 0);
    });

    it("dynamic passages: the callback sees the path so far", async () => {
        const seen: string[][] = [];
        const source = new ScriptedSource((parent) => ({text: `after-${parent.id}`, score: 1, asks: parent.depth < 1}));
        await TreeSearch.run(root(), source, {beamWidth: 1, maxDepth: 4, passagesFor: (_node, path) => {
            seen.push(path.map((n) => n.text));
            return PASSAGES.slice(0, 2);
        }});
        assert.deepEqual(seen, [[], ["after-0"]]);
    });

    it("assembles the answer: ignoreCont drops contradicted segments, [n] citations follow docs", async () => {
        const texts = ["[Relevant] Marie Curie was born in Warsaw.[Fully supported]", "[Relevant] She was a pianist.[No support / Contradictory]",
            "[Relevant] She won two Nobel prizes.[Fully supported][Utility:5]</s>"];
        const source = new ScriptedSource((parent, i) => ({text: texts[parent.depth], score: i === 0 ? 2 : 1, asks: parent.depth < 2}));
        const result = await TreeSearch.run(root(), source, {beamWidth: 1, maxDepth: 5, passagesFor: () => PASSAGES});
        const decision = {decision: true, p: 0.9};
        const kept = assembleLongForm(result, decision, false, {evaluatedTokens: 1, referenceTokens: 2});
        assert.equal(kept.answer, "Marie Curie was born in Warsaw [1]. She was a pianist [2]. She won two Nobel prizes [3].");
        assert.deepEqual(kept.docs.map((d) => d.id), ["a", "a", "a"]);
        const filtered = assembleLongForm(result, decision, true, {evaluatedTokens: 1, referenceTokens: 2});
        assert.equal(filtered.answer, "Marie Curie was born in Warsaw [1]. She won two Nobel prizes [2].");
        assert.equal(filtered.segments.length, 2);
        assert.deepEqual(filtered.segments.map((s) => s.score), [2, 8]);
        assert.equal(filtered.tree.length, 10);
    });
});
