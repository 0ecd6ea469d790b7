// The "reference" profile against the released Self-RAG scripts. The facts in
// test/reference/facts.json were produced by running the scripts' own functions
// (run_short_form.py, run_long_form_static.py, utils.py; see test/reference/make_facts.py) on
// scripted generations: prompts, post-processing, the closed-set vote, the answer chosen, and whole
// long-form searches (every context the script asked for, its tree, paths and ALCE / FactScore
// output). Each is checked under profile "reference", and ours under the default where they differ.
import assert from "node:assert/strict";
import {execFile} from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import {fileURLToPath} from "node:url";
import {promisify} from "node:util";
import {tempDir, tinyModel} from "../test-support/fixtures.js";
import {formatEvalPrompt, toEvalItem, type EvalItem} from "../lib/eval/EvalItems.js";
import {scoredPrediction} from "../lib/eval/metrics.js";
import {PAPER_PRESETS} from "../lib/eval/paperPresets.js";
import {closedSetVote, postProcessAnswer} from "../lib/selfrag/answers.js";
import {LONG_FORM_DEFAULTS, SHORT_FORM_DEFAULTS, weightsOver} from "../lib/selfrag/profiles.js";
import {formatPassage, type Passage, type Task} from "../lib/selfrag/prompts.js";
import {ReferenceBeamSearch, type ReferenceGeneration, type ReferenceGenerator} from "../lib/selfrag/ReferenceBeamSearch.js";
import {EngineReferenceGenerator} from "../lib/selfrag/ReferenceLongForm.js";
import {fixSpacing, referenceAlceOutput, referenceFactScoreOutput, referencePostprocess} from "../lib/selfrag/referenceText.js";
import {decideRetrieval} from "../lib/selfrag/RetrievalDecision.js";
import {SegmentScorer} from "../lib/selfrag/SegmentScorer.js";
import {selectAnswer} from "../lib/selfrag/ShortForm.js";
import {SlotLease} from "../lib/engine/SlotLease.js";
import {SelfRagModel} from "../lib/SelfRagModel.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const cli = path.join(root, "dist", "lib", "cli", "main.js");
const run = promisify(execFile);

interface Served {tokens: number[], reflection: number[][], logprobs: number[], text: string}
interface LongFact {
    name: string; task: "asqa" | "factscore"; prompt: string; ndocs: number; beamWidth: number; maxDepth: number; mode: "always" | "adaptive";
    threshold: number; grounding: boolean; ignoreCont: boolean; maxNewTokens: number; passages: Passage[]; served: Record<string, Served>;
    retrieve: boolean; noRetrievalText?: string;
    tree?: {id: number, prompt: string, pred: string, processedPred: string, score: number | null, parent: number | null, ctx: number | null}[];
    paths?: {nodes: number[], sentences: string[], originals: string[]}[];
    alce?: {output: string, docs: (number | null)[]}; factscore?: string;
}
interface ShortFact {
    name: string; mode: string; threshold: number; closed: boolean; useFlags: boolean; maxNewTokens: number; prompt: string;
    passages: Passage[]; served: Record<string, Served>; pred: string; retrieve: boolean; scores: Record<string, number>;
}
interface Facts {
    postprocess: Record<string, string>; postprocessLong: Record<string, string>; fixSpacing: Record<string, string>;
    prompts: {task: string, record: Record<string, unknown>, prompt: string, answers: string[] | null}[];
    longPrompts: {task: string, question: string, prompt: string}[];
    long: LongFact[]; short: ShortFact[]; vocab: Record<string, string>; reflectionIds: number[];
}
const facts = JSON.parse(fs.readFileSync(path.join(root, "test", "reference", "facts.json"), "utf8")) as Facts;
const ids = Int32Array.from(facts.reflectionIds);

/** A served generation cut to `n` tokens, as the fake vLLM model cut it. */
function generation(s: Served, n: number): ReferenceGeneration {
    const tokens = s.tokens.slice(0, n);
    return {
        tokens: Int32Array.from(tokens), logprobs: Float32Array.from(s.logprobs.slice(0, n)),
        reflection: Float32Array.from(s.reflection.slice(0, n).flat()), text: tokens.map((t) => facts.vocab[String(t)]).join(""),
        stopReason: tokens[tokens.length - 1] === 2 ? "eos" : "length"
    };
}

/** Serves exactly the contexts the script asked for; anything else is a context the script never built. */
class ScriptedReferenceGenerator implements ReferenceGenerator {
    public readonly asked: string[] = [];
    public constructor(private readonly served: Record<string, Served>, private readonly prompt: string) {}
    public async generate(contexts: readonly string[], maxNewTokens: number): Promise<ReferenceGeneration[]> {
        return contexts.map((c) => {
            this.asked.push(c);
            const s = this.served[c];
            if (s != null) return generation(s, maxNewTokens);
            // "always" reads the first position's probabilities for the report only; the script asks nothing.
            if (c === this.prompt && maxNewTokens === 1) return generation({tokens: [2], logprobs: [-1], reflection: [Array(15).fill(-2)], text: ""}, 1);
            throw new Error(`the script never asked for the context ${JSON.stringify(c.slice(-120))}`);
        });
    }
}

describe("reference profile: strings (facts from the scripts' own functions)", () => {
    it("post-processing: postprocess_answer_option_conditioned and utils.postprocess, character for character", () => {
        for (const [input, expected] of Object.entries(facts.postprocess)) {
            assert.equal(postProcessAnswer(input, {profile: "reference"}), expected, JSON.stringify(input));
        }
        for (const [input, expected] of Object.entries(facts.postprocessLong)) assert.equal(referencePostprocess(input), expected, JSON.stringify(input));
        // Row 6: ours trims and removes every reflection token.
        assert.equal(postProcessAnswer(" Paris"), "Paris");
        assert.equal(postProcessAnswer("[Continue to Use Evidence]Paris"), "Paris");
        assert.equal(postProcessAnswer("Paris<pad>"), "Paris");
        assert.equal(postProcessAnswer("[Fully [Retrieval]supported]"), "");
        assert.equal(facts.postprocess["[Fully [Retrieval]supported]"], "[Fully supported]");
    });

    it("fix_spacing (row 2)", () => {
        for (const [input, expected] of Object.entries(facts.fixSpacing)) assert.equal(fixSpacing(input), expected, JSON.stringify(input));
        assert.equal(fixSpacing("Paris.It is"), "Paris. It is");
    });

    it("prompts and golds of every task as preprocess_input_data builds them (rows 1, 3, 4, 5)", () => {
        for (const f of facts.prompts) {
            const task = f.task as Task;
            assert.equal(formatEvalPrompt(f.record, {task, profile: "reference"}), f.prompt, `${f.task} ${JSON.stringify(f.record)}`);
            if (f.answers != null) {
                const item = toEvalItem(f.record, "f:1", 1, task, "reference") as EvalItem;
                assert.deepEqual(item.golds, f.answers, `${f.task} golds`);
            }
        }
        for (const f of facts.longPrompts) {
            assert.equal(formatEvalPrompt({question: f.question}, {task: "asqa", profile: "reference", long: true}), f.prompt);
            assert.equal(formatEvalPrompt({question: f.question}, {task: "asqa", long: true}), f.prompt.replace("answers.## Input", "answers.\n\n## Input"));
        }
        // Ours: E kept, a numeric key relabelled, arc_easy with its choices.
        const arc5 = facts.prompts.find((p) => p.task === "arc_c" && p.answers?.[0] === "E")!.record;
        assert.match(formatEvalPrompt(arc5, {task: "arc_c"}), /\nD: d\nE: e\n\n### Response:\n$/);
        const arcNumeric = facts.prompts.find((p) => p.answers?.[0] === "1")!.record;
        assert.deepEqual((toEvalItem(arcNumeric, "f:1", 1, "arc_c") as EvalItem).golds, ["A"]);
        assert.deepEqual((toEvalItem(arcNumeric, "f:1", 1, "arc_c", "reference") as EvalItem).golds, ["1"]);
        const easy = {question: "Q?", choices: {text: ["x", "y"], label: ["A", "B"]}, answerKey: "B", answers: ["x"]};
        assert.match(formatEvalPrompt(easy, {task: "arc_easy"}), /\nA: x\nB: y\nC: \nD: /);
        assert.deepEqual((toEvalItem(easy, "f:1", 1, "arc_easy") as EvalItem).golds, ["B"]);
        assert.deepEqual((toEvalItem(easy, "f:1", 1, "arc_easy", "reference") as EvalItem).golds, ["x"]);
    });

    it("SUPPORTS / REFUTES for every task when scoring with match (row 7), and the vote keys (row 8)", () => {
        assert.equal(scoredPrediction("REFUTES Paris", "popqa", {profile: "reference", metric: "match"}), "false");
        assert.equal(scoredPrediction("REFUTES Paris", "popqa"), "REFUTES Paris");
        assert.equal(scoredPrediction("#SUPPORTS", "fever"), "true");
        const candidates = [{answer: "true", score: 1.203}, {answer: " true", score: 1.203}, {answer: "false", score: 1.639}];
        assert.equal(closedSetVote(candidates, {profile: "reference"}).answer, "false");
        assert.equal(closedSetVote(candidates).answer, "true");
    });

    it("defaults (row 10) are the scripts' argument defaults", () => {
        // run_short_form.py: --max_new_tokens 15, --ndocs 10, --w_rel 1.0 --w_sup 1.0 --w_use 1.0, use flags store_true.
        assert.deepEqual({...SHORT_FORM_DEFAULTS.reference, weights: {...SHORT_FORM_DEFAULTS.reference.weights}}, {
            ndocs: 10, maxNewTokens: 15, retrieveRatio: "reference-logprob",
            weights: {relevance: 1, support: 1, utility: 1, useSequenceScore: false, useSupport: false, useUtility: false}
        });
        // run_long_form_static.py: same argument defaults; generate() fixes w_rel 1, w_sup 1, w_use 0.5.
        assert.equal(LONG_FORM_DEFAULTS.reference.ndocs, 10);
        assert.equal(LONG_FORM_DEFAULTS.reference.maxNewTokens, 15);
        assert.deepEqual([LONG_FORM_DEFAULTS.reference.weights.relevance, LONG_FORM_DEFAULTS.reference.weights.support,
            LONG_FORM_DEFAULTS.reference.weights.utility, LONG_FORM_DEFAULTS.reference.weights.useSequenceScore,
            LONG_FORM_DEFAULTS.reference.weights.referenceLongFormUtility], [1, 1, 0.5, false, true]);
        assert.deepEqual([SHORT_FORM_DEFAULTS.default.ndocs, SHORT_FORM_DEFAULTS.default.maxNewTokens], [5, 100]);
    });
});

describe("reference profile: short form against call_model_rerank_w_scores_batch", () => {
    it("the retrieval decision, each candidate's score and the answer chosen (rows 6, 8, 9, 10) on scripted generations", async () => {
        const scorer = await SegmentScorer.create(ids);
        assert.ok(facts.short.length >= 8);
        let raw = 0;
        let voted = 0;
        for (const f of facts.short) {
            if (f.mode === "adaptive_retrieval") {
                const row = generation(f.served[f.prompt], 1).reflection;
                const d = decideRetrieval(row, {threshold: f.threshold, retrieveRatio: SHORT_FORM_DEFAULTS.reference.retrieveRatio});
                assert.equal(d.decision, f.retrieve, `${f.name}: decision`);
            }
            if (!f.retrieve) continue;
            const segments = f.passages.map((p) => {
                const context = f.prompt + formatPassage(p);
                assert.ok(f.served[context] != null, `${f.name}: the passage context is the script's`);
                return generation(f.served[context], f.maxNewTokens);
            });
            const weights = weightsOver(SHORT_FORM_DEFAULTS.reference.weights,
                f.useFlags ? {useSupport: true, useUtility: true, useSequenceScore: true} : {});
            const scores = scorer.score(segments, weights);
            scores.forEach((s, i) => assert.ok(Math.abs(s.score - f.scores[`retrieval_${i}`]) < 1e-6, `${f.name}: score ${i}: ${s.score} vs ${f.scores[`retrieval_${i}`]}`));
            const candidates = segments.map((s, i) => ({text: s.text, answer: postProcessAnswer(s.text, {profile: "reference"}), score: scores[i].score}));
            const chosen = selectAnswer(candidates, {retrieved: true, closed: f.closed, profile: "reference"});
            assert.equal(chosen.answer, f.pred, `${f.name}: answer`);
            if (f.closed) voted++;
            else raw++;
        }
        assert.ok(raw > 0 && voted > 0, "both open and closed-set cases are covered");
    });
});

describe("reference profile: long form against call_model_beam_batch (rows 12-19)", () => {
    it("asks for exactly the script's contexts and rebuilds its tree, paths and ALCE / FactScore output", async () => {
        const scorer = await SegmentScorer.create(ids);
        assert.ok(facts.long.length >= 15);
        let siblingContexts = 0;
        let redecided = 0;
        for (const f of facts.long) {
            const generator = new ScriptedReferenceGenerator(f.served, f.prompt);
            const weights = weightsOver(LONG_FORM_DEFAULTS.reference.weights, f.grounding ? {useSupport: true, useUtility: true} : {});
            const result = await ReferenceBeamSearch.run(f.prompt, f.passages, generator, {
                mode: f.mode, threshold: f.threshold, beamWidth: f.beamWidth, maxDepth: f.maxDepth, maxNewTokens: f.maxNewTokens, weights,
                ignoreCont: f.ignoreCont, reflectionIds: ids, score: (segments, w) => scorer.score(segments, w)
            });
            assert.equal(result.retrieve.decision, f.retrieve, `${f.name}: root decision`);
            // Every context the script generated from was asked for (and nothing else: the generator throws).
            const asked = new Set(generator.asked);
            for (const context of Object.keys(f.served)) assert.ok(asked.has(context), `${f.name}: the script's context was not built`);
            if (!f.retrieve) {
                assert.equal(result.noRetrievalText, f.noRetrievalText, `${f.name}: no-retrieval text`);
                continue;
            }
            assert.equal(result.tree.length, f.tree!.length, `${f.name}: tree size`);
            for (const expected of f.tree!) {
                const node = result.tree[expected.id];
                assert.equal(node.prompt, expected.prompt, `${f.name}: node ${expected.id} context`);
                assert.equal(node.pred, expected.pred, `${f.name}: node ${expected.id} pred`);
                assert.equal(node.processedPred, expected.processedPred, `${f.name}: node ${expected.id} processed_pred`);
                assert.equal(node.parent, expected.parent, `${f.name}: node ${expected.id} parent`);
                assert.equal(node.ctx == null ? null : f.passages.indexOf(node.ctx), expected.ctx);
                if (expected.score == null) assert.equal(node.score, null);
                else assert.ok(Math.abs(node.score! - expected.score) <= 1e-6 * Math.max(1, Math.abs(expected.score)), `${f.name}: node ${expected.id} score`);
                if (node.parent != null && node.parent !== 0) {
                    const parent = result.tree[node.parent];
                    if (node.prompt !== parent.prompt + parent.processedPred) siblingContexts++;
                }
                if (node.parent != null) {
                    const parent = result.tree[node.parent];
                    const raw = generation(f.served[parent.prompt + parent.processedPred + formatPassage(node.ctx!)], f.maxNewTokens).text;
                    if (raw !== node.pred) redecided++;
                }
            }
            assert.deepEqual(result.paths.map((p) => ({nodes: p.nodes, sentences: p.sentences, originals: p.originals})), f.paths, `${f.name}: paths`);
            if (f.alce != null) {
                const {output, docs} = referenceAlceOutput<Passage | null>(result.paths);
                assert.equal(output, f.alce.output, `${f.name}: ALCE output`);
                assert.deepEqual(docs.map((d) => (d == null ? null : f.passages.indexOf(d))), f.alce.docs, `${f.name}: ALCE docs`);
            } else {
                assert.equal(referenceFactScoreOutput(result.paths), f.factscore, `${f.name}: FactScore output`);
            }
        }
        assert.ok(siblingContexts > 0, "some child carries its sibling's text (row 12)");
        assert.ok(redecided > 0, "some segment had its [No Retrieval] re-decided (row 16)");
    });

    it("a hand-worked tree: child 2 of a node is stored with child 1's text, and its children inherit that context (row 12)", async () => {
        // Vocabulary of the facts file: 1000 " Paris", 1001 " is", 1003 ".", reflection ids 32000 + R index; EOS 2.
        const seg = (words: number[], retrieval: boolean): Served => {
            const tokens = [32004, ...words, ...(retrieval ? [32001] : [2])];
            return {tokens, logprobs: tokens.map(() => -0.5), reflection: tokens.map(() => Array(15).fill(-1)), text: tokens.map((t) => facts.vocab[String(t)]).join("")};
        };
        const prompt = "### Instruction:\nQ\n\n### Response:\n";
        const passages = [{title: "A", text: "a"}, {title: "B", text: "b"}];
        const served: Record<string, Served> = {
            [prompt + formatPassage(passages[0])]: seg([1000, 1003], true), // node 1: "[Relevant] Paris.[Retrieval]"
            [prompt + formatPassage(passages[1])]: seg([1001, 1003], true) // node 2: "[Relevant] is.[Retrieval]"
        };
        // Depth 2. Node 1's children see prompt + node 1's text; node 2 was stored with node 1's text
        // as its context (the overwritten prev_generation), so its children see prompt + node 1 + node 2.
        const n1 = "[Relevant] Paris.";
        const n2 = "[Relevant] is.";
        for (const p of passages) {
            served[prompt + n1 + formatPassage(p)] = seg([1000], false);
            served[prompt + n1 + n2 + formatPassage(p)] = seg([1001], false);
        }
        const scorer = await SegmentScorer.create(ids);
        const result = await ReferenceBeamSearch.run(prompt, passages, new ScriptedReferenceGenerator(served, prompt), {
            mode: "always", threshold: 0.2, beamWidth: 2, maxDepth: 3, maxNewTokens: 10, weights: LONG_FORM_DEFAULTS.reference.weights,
            ignoreCont: false, reflectionIds: ids, score: (s, w) => scorer.score(s, w)
        });
        assert.equal(result.tree[1].prompt, prompt);
        assert.equal(result.tree[2].prompt, prompt + n1, "child 2 stored with child 1's text");
        assert.deepEqual(result.tree.slice(3).map((n) => [n.parent, n.prompt]), [
            // the stored context is the parent's stored context plus the previous child's text, so
            // node 1's second child replaces node 1's text by its sibling's
            [1, prompt + n1], [1, prompt + "[Relevant] Paris</s>"],
            [2, prompt + n1 + n2], [2, prompt + n1 + "[Relevant] is</s>"]
        ]);
        // The children of node 2 were generated from prompt + n1 + n2 (the served keys), not prompt + n2.
        assert.equal(result.tree.filter((n) => n.parent === 2).length, 2);
    });
});

describe("reference profile: engine, CLI and presets", function () {
    this.timeout(180_000);

    it("the engine generator's shared-prefix schedule gives each context's generation as if encoded alone", async () => {
        const model = await SelfRagModel.load({modelPath: await tinyModel(), sequences: 4, contextSize: 2048});
        try {
            const prompt = "### Instruction:\nWhat is the capital of France?\n\n### Response:\n";
            const contexts = [prompt + formatPassage({title: "France", text: "Paris is the capital."}),
                prompt + "[Relevant] Paris." + formatPassage({title: "Germany", text: "Berlin"}), prompt + "London bio bio"];
            const lease = await SlotLease.acquire(model.context, 4);
            const shared = await new EngineReferenceGenerator(model, lease).generate(contexts, 20);
            await lease.close();
            for (const [i, context] of contexts.entries()) {
                const alone = await SlotLease.acquire(model.context, 1);
                const single = await new EngineReferenceGenerator(model, alone).generate([context], 20);
                await alone.close();
                assert.deepEqual(Array.from(shared[i]!.tokens), Array.from(single[0]!.tokens), `context ${i}`);
                assert.equal(shared[i]!.text, single[0]!.text);
            }
        } finally {
            await model.dispose();
        }
    });

    it("paper presets carry the reference README's commands", () => {
        // The commands of the Self-RAG README (retrieval_lm section), flag by flag.
        const readme: Record<string, string> = {
            popqa: "--mode MODE --max_new_tokens 100 --threshold 0.2 --metric match --ndocs 10 --use_groundness --use_utility --use_seqscore",
            arc_c: "--max_new_tokens 50 --threshold 0.2 --metric match --ndocs 5 --use_groundness --use_utility --use_seqscore --task arc_c",
            pubhealth: "--max_new_tokens 50 --threshold 0.2 --metric match --ndocs 5 --use_groundness --use_utility --use_seqscore --task fever",
            asqa: "--ndocs 5 --max_new_tokens 300 --threshold 0.2 --use_grounding --use_utility --use_seqscore --task asqa --max_depth 7 --mode always_retrieve",
            factscore: "--ndocs 5 --max_new_tokens 300 --threshold 0.2 --use_grounding --use_utility --use_seqscore --task factscore --max_depth 7"
        };
        assert.deepEqual(Object.keys(PAPER_PRESETS).sort(), Object.keys(readme).sort());
        for (const [name, command] of Object.entries(readme)) {
            const p = PAPER_PRESETS[name];
            const flag = (f: string) => command.match(new RegExp(`--${f} (\\S+)`))?.[1];
            assert.equal(p.ndocs, Number(flag("ndocs")), `${name} ndocs`);
            assert.equal(p.maxNewTokens, Number(flag("max_new_tokens")), `${name} max_new_tokens`);
            assert.equal(p.threshold, Number(flag("threshold")), `${name} threshold`);
            assert.equal(p.task, flag("task") ?? "none", `${name} task`);
            assert.equal(p.long, name === "asqa" || name === "factscore");
            if (p.long) assert.equal(p.maxDepth, Number(flag("max_depth")));
            const mode = flag("mode");
            assert.equal(p.mode, mode === "always_retrieve" ? "always" : "adaptive", `${name} mode`);
            if (!p.long) assert.equal(p.metric, flag("metric"));
            assert.equal(p.weights.useSupport, /--use_ground(ness|ing)/.test(command));
            assert.equal(p.weights.useUtility, command.includes("--use_utility"));
            // The short-form script honours --use_seqscore; the long-form script never passes it to its scorer.
            assert.equal(p.weights.useSequenceScore ?? LONG_FORM_DEFAULTS.reference.weights.useSequenceScore, p.long ? false : command.includes("--use_seqscore"));
        }
    });

    it("eval --paper popqa equals the same run with every flag spelled out; --output-format reference parses back", async () => {
        const dir = fs.mkdtempSync(path.join(tempDir, "paper-"));
        const input = path.join(dir, "popqa.jsonl");
        const passages = [{title: "France", text: "Paris is the capital of France."}, {title: "Germany", text: "Berlin is the capital of Germany."}];
        fs.writeFileSync(input, [
            {id: "a", question: "What is the capital of France?", answers: ["Paris"], ctxs: passages},
            {id: "b", question: "Tell me a bio.", answers: ["London"], ctxs: passages},
            {id: "c", question: "Name the capital of Germany.", answers: ["Berlin"], ctxs: passages}
        ].map((r) => JSON.stringify(r)).join("\n") + "\n");
        const model = await tinyModel();
        const preset = path.join(dir, "preset.jsonl");
        const spelled = path.join(dir, "spelled.jsonl");
        await run("node", [cli, "eval", "--paper", "popqa", "--model", model, "--input", input, "--output", preset, "--cpu", "--mode", "always",
            "--output-format", "reference"]);
        await run("node", [cli, "eval", "--profile", "reference", "--task", "none", "--mode", "always_retrieve", "--threshold", "0.2",
            "--ndocs", "10", "--max-new-tokens", "100", "--metric", "match", "--use-groundness", "--use-utility", "--use-seqscore",
            "--model", model, "--input", input, "--output", spelled, "--cpu", "--output-format", "reference"]);
        const read = (f: string) => fs.readFileSync(f, "utf8").trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
        assert.deepEqual(read(preset), read(spelled));
        const records = read(preset);
        assert.equal(records.length, 3);
        for (const r of records) assert.match(String(r.prediction), /<\/s>|\[Utility:\d\]|\[(Fully|Partially) supported\]|\[No support/, "the raw best candidate (row 9)");
        const reference = JSON.parse(fs.readFileSync(path.join(dir, "preset.reference.json"), "utf8")) as Record<string, unknown[]> & {metric: string, metric_mean: number};
        assert.deepEqual(Object.keys(reference).sort(), ["all_results", "golds", "metric", "metric_mean", "metric_results", "preds", "prompts", "scores"]);
        assert.deepEqual(reference.preds, records.map((r) => r.prediction));
        assert.deepEqual(reference.metric_results, records.map((r) => r.score));
        assert.equal(reference.metric, "match");
        assert.equal(reference.metric_mean, records.reduce((a, r) => a + Number(r.score), 0) / 3);
        assert.equal(reference.prompts[0], "### Instruction:\nWhat is the capital of France?\n\n### Response:\n");
        const all = reference.all_results[0] as Record<string, {pred: string, score: number, ctx: Passage}>;
        assert.deepEqual(Object.keys(all), ["retrieval_0", "retrieval_1"]);
        assert.deepEqual(all.retrieval_1.ctx, passages[1]);
        assert.equal(typeof all.retrieval_0.score, "number");
    });

    it("eval --paper asqa writes ALCE's file: output with [k] citations, the cited docs as given, the intermediate path", async () => {
        const dir = fs.mkdtempSync(path.join(tempDir, "paper-asqa-"));
        const input = path.join(dir, "asqa.json");
        const docs = [{title: "Curie", text: "Paris bio bio bio physicist.", score: 1.5}, {title: "Curie 2", text: "bio chemist in Paris", score: 1.2}];
        fs.writeFileSync(input, JSON.stringify([{sample_id: "s1", question: "Tell me a bio of Marie Curie.", qa_pairs: [{short_answers: ["Paris"]}],
            answer: "x", docs}]));
        const output = path.join(dir, "out.jsonl");
        await run("node", [cli, "eval", "--paper", "asqa", "--model", await tinyModel(), "--input", input, "--output", output, "--cpu",
            "--max-new-tokens", "30", "--max-depth", "4", "--output-format", "reference"]);
        const alce = JSON.parse(fs.readFileSync(path.join(dir, "out.reference.json"), "utf8")) as {data: Record<string, unknown>[], args: unknown[],
            total_cost: number, azure_filter_fail: string};
        assert.deepEqual([alce.args, alce.total_cost, alce.azure_filter_fail], [[], 0, ""]);
        const item = alce.data[0];
        assert.equal(item.sample_id, "s1", "the input record's fields are kept");
        assert.deepEqual(item.qa_pairs, [{short_answers: ["Paris"]}]);
        const [record] = fs.readFileSync(output, "utf8").trim().split("\n").map((l) => JSON.parse(l) as {prediction: string});
        assert.equal(item.output, record.prediction);
        assert.match(String(item.output), /\[\d\]\./);
        const cited = item.docs as Record<string, unknown>[];
        assert.ok(cited.length > 0);
        for (const d of cited) assert.ok(docs.some((o) => o.text === d.text && o.score === d.score), "docs as the input holds them (score kept)");
        const intermediate = item.intermediate as string[];
        assert.equal(intermediate[0], "[Retrieval]", "the root's pred first, as the script");
    });
});

describe("reference profile: server requests", () => {
    it("POST /v1/answer bodies take profile, retrieveRatio and the use flags, and name a wrong value", async () => {
        const {parseAnswerRequest} = await import("../lib/serving/requestBodies.js");
        const short = parseAnswerRequest({question: "Q", profile: "reference", retrieveRatio: "reference-logprob", weights: {useSupport: true}});
        assert.equal(short.long, false);
        // The plan: the profile's defaults with the body's values over them.
        assert.equal(short.options.profile.name, "reference");
        assert.equal(short.options.retrieveRatio, "reference-logprob");
        assert.equal(short.options.ndocs, 10);
        assert.equal(short.options.maxNewTokens, 15);
        assert.deepEqual({...short.options.weights}, {relevance: 1, support: 1, utility: 1, useSequenceScore: false, useSupport: true, useUtility: false});
        const long = parseAnswerRequest({question: "Q", long: true, profile: "reference", task: "factscore"});
        assert.deepEqual([long.options.profile.name, long.options.task], ["reference", "factscore"]);
        assert.throws(() => parseAnswerRequest({question: "Q", profile: "paper"}), /Expected "default" \| "reference" for profile but received "paper"/);
        // As in the library, where long form always took it.
        assert.equal(parseAnswerRequest({question: "Q", long: true, retrieveRatio: "reference-logprob"}).options.retrieveRatio, "reference-logprob");
    });
});
