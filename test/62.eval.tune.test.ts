// `selfrag tune`: the replay of thresholds and critique weights over `selfrag eval --save-traces`
// traces. Model-free: the grid's fast path equals the question-by-question replay on every
// setting (open and closed-set, both profiles), the threshold curve is monotone and covers 0 and 1,
// the flags spell the setting through the plan's table, unreplayable settings and traces are
// refused by name. On the fixture model: for three settings of a tune run over 120 questions
// (best, one with another threshold, one with other weights), a fresh `selfrag eval` with the
// setting's flags gives the replay's answers, decisions, metric and retrieval rate.
import {rejectsWith} from "../test-support/assertions.js";
import {tempDir, tinyModel} from "../test-support/fixtures.js";
import {writeJsonl} from "../test-support/corpora.js";
import {syntheticTraces, tuneEvalRecords} from "../test-support/tuneFixtures.js";
import assert from "node:assert/strict";
import {execFile} from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import {fileURLToPath} from "node:url";
import {promisify} from "node:util";
import {parseArgs} from "node:util";
import {between, replay, tune, type ReplayTrace, type TuneSetting} from "../lib/eval/Tune.js";
import {runEvaluation, type EvalRecord} from "../lib/eval/Evaluation.js";
import {CLI_SURFACE, optionFlags, optionsFromFlags, planOptions, planShortForm, questionFlagOptions} from "../lib/selfrag/plan.js";
import {SelfRagModel} from "../lib/SelfRagModel.js";
import {resolveWeights, type CritiqueWeights} from "../lib/selfrag/SegmentScorer.js";

const run = promisify(execFile);
const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "lib", "cli", "main.js");

function flagsPlan(args: readonly string[]) {
    const {values} = parseArgs({args: [...args], options: questionFlagOptions(), strict: true});
    return planOptions(planShortForm(optionsFromFlags(values), CLI_SURFACE));
}

/** Every setting's fast-path numbers equal the question-by-question replay's. */
function assertFastPathIsReplay(traces: ReplayTrace[], settings: readonly TuneSetting[], metric: "match" | "f1" = "match") {
    for (const s of settings) {
        const r = replay(traces, s, metric);
        assert.ok(Math.abs((s.metric ?? 0) - (r.mean ?? 0)) < 1e-12, `metric of ${JSON.stringify(s)}: ${r.mean}`);
        assert.equal(s.retrievalRate, r.retrievalRate);
        assert.equal(s.generatedTokens, r.generatedTokens);
    }
}

describe("tune: replay without a model", () => {
    it("the grid's fast path is the question-by-question replay on every setting, open and closed-set, both profiles", () => {
        for (const options of [{}, {closed: true}, {profile: "reference" as const}, {profile: "reference" as const, closed: true, ndocs: 3}]) {
            const traces = syntheticTraces(60, options);
            for (const metric of ["match", "f1"] as const) {
                const result = tune(traces, {metric, relevance: [-1, 0.5, 1], support: [0, 1], useSequenceScore: [true, false]});
                assert.equal(result.settings.length % 12, 0);
                assertFastPathIsReplay(traces, result.settings.filter((_, i) => i % 7 === 0), metric);
            }
        }
    });

    it("the threshold curve: one point per distinct retrieving set, monotone, from rate 1 at threshold 0 to rate 0 at threshold 1", () => {
        const traces = syntheticTraces(200);
        const result = tune(traces);
        const distinct = new Set(traces.map((t) => replay([t], {threshold: 0, weights: result.best.weights}).records[0].retrieve.p)).size;
        assert.equal(result.settings.length, distinct + 1);
        assert.deepEqual([result.settings[0].threshold, result.settings.at(-1)!.threshold], [0, 1]);
        assert.deepEqual([result.settings[0].retrievalRate, result.settings.at(-1)!.retrievalRate], [1, 0]);
        for (let i = 1; i < result.settings.length; i++) {
            assert.ok(result.settings[i].threshold > result.settings[i - 1].threshold);
            assert.ok(result.settings[i].retrievalRate < result.settings[i - 1].retrievalRate, "each threshold drops at least one question");
        }
        // Thresholds sit between recorded ratios, so none is a decision near-tie here (the ratios are far apart).
        const ps = traces.map((t) => replay([t], {threshold: 0, weights: result.best.weights}).records[0].retrieve.p);
        for (const s of result.settings) assert.ok(!ps.includes(s.threshold));
        assert.ok(between(0.1, 0.2) > 0.1 && between(0.1, 0.2) < 0.2);
        assert.equal(between(0.1, 0.2), 0.15);
        // The front only improves the metric as the rate grows; best is on it or dominated by nothing.
        for (let i = 1; i < result.front.length; i++) {
            assert.ok(result.front[i].retrievalRate > result.front[i - 1].retrievalRate && result.front[i].metric! > result.front[i - 1].metric!);
        }
        assert.ok(!result.settings.some((s) => s.metric! > result.best.metric!));
        const budget = tune(traces, {maxRetrievalRate: 0.25}).bestUnderBudget!;
        assert.ok(budget.retrievalRate <= 0.25);
    });

    it("near-ties: a threshold within the tolerance of a ratio, and winners within it of another answer, are counted; best avoids them", () => {
        const traces = syntheticTraces(30, {ndocs: 2});
        // Two candidates with different answers and scores 5e-5 apart under the run's weights.
        traces[0].candidates[0] = {...traces[0].candidates[0], text: "Paris", critique: {relevance: 0.5, support: 0.5, utility: 0, seq: -1}};
        traces[0].candidates[1] = {...traces[0].candidates[1], text: "Rome", critique: {relevance: 0.50005, support: 0.5, utility: 0, seq: -1}};
        const result = tune(traces, {thresholds: [0, 0.5, 1]});
        assert.equal(result.settings[0].nearTies.answers, 1);
        assert.equal(result.settings[2].nearTies.answers, 0, "no question retrieves at 1");
        const p0 = replay(traces, {threshold: 0, weights: result.best.weights}).records[1].retrieve.p;
        assert.equal(tune(traces, {thresholds: [p0 + 5e-5]}).settings[0].nearTies.decisions, 1);
        assert.equal(tune(traces, {thresholds: [p0 + 5e-5], tolerance: 1e-6}).settings[0].nearTies.decisions, 0);
        assert.equal(ties(result.best), 0);
    });

    it("the flags are spelled from the plan's table and plan back to the setting", () => {
        const args = optionFlags({profile: "reference", threshold: 0.35, ndocs: 3, choices: ["a b", "c"], weights: {relevance: -0.5, useSequenceScore: true, useSupport: true}});
        assert.deepEqual(args, ["--profile", "reference", "--threshold", "0.35", "--ndocs", "3", "--w-rel", "-0.5", "--use-seqscore", "--use-groundness",
            "--choices", "a b|c"]);
        assert.throws(() => optionFlags({weights: {useUtility: false}}), /weights.useUtility false has no command-line flag/);
        for (const profile of ["default", "reference"] as const) {
            const traces = syntheticTraces(40, {profile});
            const result = tune(traces, {relevance: [0.25, 2], support: [0.5], useSequenceScore: [false]});
            const planned = flagsPlan(result.best.args);
            const expected = planOptions(planShortForm({...traces[0].options, threshold: result.best.threshold, weights: {
                ...(planShortForm(traces[0].options).weights), ...result.best.weights}}));
            // Equal settings: the weights as the scorer resolves them (an unset use flag is on).
            const {traces: _t, bothBranches: _b, weights: wantWeights, ...want} = expected;
            const {traces: _t2, bothBranches: _b2, weights: gotWeights, ...got} = planned;
            assert.deepEqual(got, want, result.best.flags);
            assert.deepEqual(resolveWeights(gotWeights as CritiqueWeights), resolveWeights(wantWeights as CritiqueWeights), result.best.flags);
            assert.match(result.best.flags, profile === "reference" ? /--threshold \S+ .*--w-rel (0.25|2) --w-sup 0.5 --w-use \S+ --no-seqscore --use-groundness/
                : /^--threshold \S+ --max-new-tokens 20 --task popqa --w-rel (0.25|2) --w-sup 0.5 --w-use 0.5 --no-seqscore$/);
        }
    });

    it("refuses what it cannot replay, by name", () => {
        const traces = syntheticTraces(5);
        assert.throws(() => tune(traces, {ndocs: [3]} as never), /ndocs cannot be replayed: it changes the passages/);
        assert.throws(() => tune(traces, {maxNewTokens: [3]} as never), /maxNewTokens cannot be replayed/);
        assert.throws(() => tune(traces, {metric: "str_em"}), /str_em scores long-form ASQA answers/);
        assert.throws(() => tune(traces, {weights: 1} as never), /unknown grid key "weights"/);
        assert.throws(() => tune([{...traces[0], form: "long"} as never]), /a long-form trace: .*cannot be replayed offline/);
        const asked = {id: "a", reflection_ids: traces[0].reflection_ids, candidates: traces[0].candidates};
        assert.throws(() => tune([asked as never]), /recorded without both branches/);
        assert.throws(() => tune([traces[0], {...traces[1], options: {...traces[1].options, ndocs: 4}}]), /recorded with other settings/);
    });

    it("selfrag tune refuses flags that change the candidates, and long-form traces, by flag", async () => {
        const file = writeJsonl(path.join(tempDir, "synthetic-traces.jsonl"), syntheticTraces(20));
        for (const [flag, pattern] of [[["--ndocs", "3"], /--ndocs cannot be replayed/], [["--max-new-tokens", "9"], /--max-new-tokens cannot be replayed/],
            [["--threshold", "0.2"], /takes --thresholds/], [["--metric", "str_em"], /str_em/], [["--w-rel", "a"], /--w-rel/]] as const) {
            await assert.rejects(run(process.execPath, [cli, "tune", "--traces", file, ...flag]), (e: {stderr: string}) => pattern.test(e.stderr));
        }
        const long = writeJsonl(path.join(tempDir, "long-traces.jsonl"), [{...syntheticTraces(1)[0], form: "long"}]);
        await assert.rejects(run(process.execPath, [cli, "tune", "--traces", long]), (e: {stderr: string}) => /long-form trace/.test(e.stderr));
        const svg = path.join(tempDir, "tune.svg");
        const {stdout} = await run(process.execPath, [cli, "tune", "--traces", file, "--w-rel", "0,1", "--seqscore", "on,off", "--json", "--svg", svg]);
        const result = JSON.parse(stdout) as {settings: unknown[], front: unknown[], best: {flags: string}};
        assert.ok(result.settings.length > 4 && result.front.length > 0 && /--threshold/.test(result.best.flags));
        assert.match(fs.readFileSync(svg, "utf8"), /class="best"/);
    });
});

function ties(s: TuneSetting): number {
    return s.nearTies.decisions + s.nearTies.answers;
}

describe("tune: replay equals a fresh run on the fixture model", () => {
    const questions = 120;
    const common = ["--task", "popqa", "--ndocs", "3", "--max-new-tokens", "12", "--context-size", "512", "--cpu"];

    it("three settings of a tune run (best, another threshold, other weights): a fresh selfrag eval gives the replay's answers, decisions, metric and rate",
        async () => {
            const model = await tinyModel();
            const input = writeJsonl(path.join(tempDir, "tune-eval.jsonl"), tuneEvalRecords(questions));
            const traced = path.join(tempDir, "tune-traced.jsonl");
            const tracesFile = path.join(tempDir, "tune-traces.jsonl");
            const started = Date.now();
            await run(process.execPath, [cli, "eval", "--model", model, "--input", input, "--output", traced, ...common, "--save-traces", tracesFile, "--json"]);
            const traceSeconds = (Date.now() - started) / 1000;
            const traces = fs.readFileSync(tracesFile, "utf8").trim().split("\n").map((l) => JSON.parse(l) as ReplayTrace);
            assert.equal(traces.length, questions);
            // The traced run's own answers are its setting's replay (both branches answered did not change them).
            const tracedRecords = readRecords(traced);
            const own = replay(traces, {threshold: 0.2, weights: {relevance: 1, support: 1, utility: 0.5, useSequenceScore: true}});
            assert.deepEqual(tracedRecords.map((r) => [r.prediction, r.retrieve!.decision]), own.records.map((r) => [r.prediction, r.retrieve.decision]));

            const {stdout} = await run(process.execPath, [cli, "tune", "--traces", tracesFile, "--w-rel", "-1,0,1", "--w-sup", "0,1", "--seqscore", "on,off",
                "--json", "--svg", path.join(tempDir, "tune-fixture.svg")]);
            const result = JSON.parse(stdout) as ReturnType<typeof tune>;
            const rates = new Set(result.settings.map((s) => s.retrievalRate));
            assert.ok(rates.has(0) && rates.has(1) && rates.size > 5, `retrieval rates ${[...rates].join(", ")}`);
            const metrics = new Set(result.settings.map((s) => s.metric));
            assert.ok(metrics.size > 3, `the fixture's settings differ in metric: ${[...metrics].join(", ")}`);
            const stable = result.settings.filter((s) => ties(s) === 0);
            const otherThreshold = stable.find((s) => s.threshold !== result.best.threshold && s.retrievalRate !== result.best.retrievalRate &&
                s.retrievalRate > 0 && s.retrievalRate < 1)!;
            const otherWeights = stable.find((s) => s.weights.relevance !== result.best.weights.relevance && s.weights.useSequenceScore !== result.best.weights.useSequenceScore &&
                s.retrievalRate > 0.3 && s.metric !== result.best.metric) ?? stable.find((s) => s.weights.relevance !== result.best.weights.relevance && s.retrievalRate > 0.3)!;
            assert.ok(otherThreshold != null && otherWeights != null);
            const flagsOf = (s: TuneSetting) => (s === result.best ? result.best.args : tune(traces, {thresholds: [s.threshold], relevance: [s.weights.relevance],
                support: [s.weights.support], useSequenceScore: [s.weights.useSequenceScore]}).best.args);
            for (const [name, setting] of [["best", result.best], ["another threshold", otherThreshold], ["other weights", otherWeights]] as const) {
                const output = path.join(tempDir, `tune-fresh-${name.replace(/ /g, "-")}.jsonl`);
                const args = flagsOf(setting);
                const fresh = JSON.parse((await run(process.execPath, [cli, "eval", "--model", model, "--input", input, "--output", output, "--task", "popqa",
                    "--context-size", "512", "--cpu", "--json", ...args])).stdout) as {mean: number, retrievalRate: number};
                const records = readRecords(output);
                const replayed = replay(traces, setting);
                assert.deepEqual(records.map((r) => [r.id, r.prediction, r.retrieve!.decision]),
                    replayed.records.map((r) => [r.id, r.prediction, r.retrieve.decision]), `${name}: ${args.join(" ")}`);
                assert.equal(fresh.mean, replayed.mean, name);
                assert.equal(fresh.mean, setting.metric, name);
                assert.equal(fresh.retrievalRate, setting.retrievalRate, name);
            }
            console.log(`      (trace run of ${questions} questions: ${traceSeconds.toFixed(1)} s; ${result.settings.length} settings; best ${result.best.flags})`);
        });

    it("the reference profile and the closed-set vote through the library: replay equals a fresh runEvaluation", async () => {
        const model = await SelfRagModel.load({modelPath: await tinyModel(), contextSize: 512, sequences: 16, gpu: false});
        try {
            const input = writeJsonl(path.join(tempDir, "tune-reference.jsonl"), tuneEvalRecords(40, 3));
            const base = {profile: "reference" as const, task: "popqa" as const, ndocs: 3, maxNewTokens: 12, closedSet: true};
            const traces: ReplayTrace[] = [];
            await runEvaluation(model, input, {plan: planShortForm({...base, traces: true, bothBranches: true}), onTrace: (t) => void traces.push(t)});
            const result = tune(traces, {relevance: [-1, 1], utility: [0, 1]});
            for (const setting of [result.best, result.settings.find((s) => ties(s) === 0 && s.retrievalRate > 0 && s.retrievalRate < 1 && s !== result.best)!]) {
                const records: EvalRecord[] = [];
                const summary = await runEvaluation(model, input, {plan: planShortForm({...base, threshold: setting.threshold,
                    weights: {...planShortForm(base).weights, ...setting.weights}}), onRecord: (r) => void records.push(r)});
                const replayed = replay(traces, setting);
                assert.deepEqual(records.map((r) => [r.prediction, r.retrieve!.decision]), replayed.records.map((r) => [r.prediction, r.retrieve.decision]));
                assert.equal(summary.mean, setting.metric);
                assert.equal(summary.retrievalRate, setting.retrievalRate);
            }
        } finally {
            await model.dispose();
        }
    });

    it("eval --save-traces is refused with --long and with --redis", async () => {
        const model = await tinyModel();
        const input = writeJsonl(path.join(tempDir, "tune-small.jsonl"), tuneEvalRecords(2));
        await assert.rejects(run(process.execPath, [cli, "eval", "--model", model, "--input", input, "--output", path.join(tempDir, "x.jsonl"), "--long",
            "--save-traces", path.join(tempDir, "t.jsonl")]), (e: {stderr: string}) => /--save-traces cannot be used with --long/.test(e.stderr));
        await assert.rejects(run(process.execPath, [cli, "eval", "--model", model, "--input", input, "--output", path.join(tempDir, "y.jsonl"),
            "--redis", "redis://127.0.0.1:1", "--save-traces", path.join(tempDir, "t2.jsonl")]), (e: {stderr: string}) => /--save-traces cannot be used with --redis/.test(e.stderr));
        void rejectsWith;
    });
});

function readRecords(file: string): EvalRecord[] {
    return fs.readFileSync(file, "utf8").trim().split("\n").map((l) => JSON.parse(l) as EvalRecord);
}
