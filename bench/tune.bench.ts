// `selfrag tune`: replaying 10,000 settings (thresholds x critique weights) over the traces of
// 1,000 questions, against re-running the model for one setting over the same questions. On the
// tiny fixture model (a model that decodes in well under a millisecond per step), so the ratio is
// the smallest it gets: with a real 7B model a run costs orders of magnitude more and the replay
// the same. Also measured: the trace run itself (both branches answered) against a plain run, the
// one-off cost `selfrag eval --save-traces` adds.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {writeFixtureModel} from "../lib/fixtures/FixtureModel.js";
import {runEvaluation} from "../lib/eval/Evaluation.js";
import {tune, type ReplayTrace} from "../lib/eval/Tune.js";
import {planShortForm} from "../lib/selfrag/plan.js";
import {SelfRagModel} from "../lib/SelfRagModel.js";
import {tuneEvalRecords} from "../test-support/tuneFixtures.js";
import {writeJsonl} from "../test-support/corpora.js";
import {environment, medianOf, sampleMeasurement, writeResult, type BenchResult, type Measurement} from "./common.js";

const QUESTIONS = 1000;
const base = {task: "popqa" as const, ndocs: 3, maxNewTokens: 12};

export async function run(): Promise<BenchResult> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "selfrag-tune-bench-"));
    try {
        const modelPath = path.join(dir, "tiny.gguf");
        await writeFixtureModel(modelPath, "tiny");
        const input = writeJsonl(path.join(dir, "questions.jsonl"), tuneEvalRecords(QUESTIONS, 21));
        const model = await SelfRagModel.load({modelPath, contextSize: 512, sequences: 32, threads: 1, gpu: false});
        const measurements: Measurement[] = [];
        const traces: ReplayTrace[] = [];
        try {
            await runEvaluation(model, input, {plan: planShortForm(base), limit: 50}); // warm-up
            const plain: number[] = [];
            const traced: number[] = [];
            for (let i = 0; i < 2; i++) {
                let start = performance.now();
                await runEvaluation(model, input, {plan: planShortForm(base)});
                plain.push(performance.now() - start);
                traces.length = 0;
                start = performance.now();
                await runEvaluation(model, input, {plan: planShortForm({...base, traces: true, bothBranches: true}), onTrace: (t) => void traces.push(t)});
                traced.push(performance.now() - start);
            }
            measurements.push(sampleMeasurement("run", `selfrag eval, one setting, ${QUESTIONS} questions (tiny model, 1 thread)`, "run", plain),
                sampleMeasurement("traced", `selfrag eval --save-traces (both branches), ${QUESTIONS} questions`, "run", traced));
        } finally {
            await model.dispose();
        }
        // 100 thresholds x 10 w-rel x 5 w-sup x 2 seqscore = 10,000 settings.
        const grid = {
            thresholds: Array.from({length: 100}, (_, i) => i / 99), relevance: Array.from({length: 10}, (_, i) => -1 + i * 0.25),
            support: [0, 0.25, 0.5, 1, 2], useSequenceScore: [true, false]
        };
        const all = {...grid, thresholds: "all" as const};
        let settings = 0;
        let allSettings = 0;
        const replays: number[] = [];
        const replaysAll: number[] = [];
        for (let i = 0; i < 7; i++) {
            let start = performance.now();
            settings = tune(traces, grid).settings.length;
            replays.push(performance.now() - start);
            start = performance.now();
            allSettings = tune(traces, all).settings.length;
            replaysAll.push(performance.now() - start);
        }
        measurements.push(sampleMeasurement("tune", `tune: ${settings} settings over ${QUESTIONS} questions`, "replay", replays),
            sampleMeasurement("tune-all", `tune: every threshold (${allSettings / 100}) x 100 weight settings = ${allSettings} settings`, "replay", replaysAll));
        const runUs = medianOf(measurements, "run");
        const tuneUs = medianOf(measurements, "tune");
        const result: BenchResult = {
            name: "tune", title: `selfrag tune: ${settings} settings replayed over ${QUESTIONS} questions vs re-running the model`,
            environment: environment("n/a"), measurements,
            comparisons: [
                {label: `one model run (one setting) / replay of ${settings} settings`, value: runUs / tuneUs, unit: "x", target: {kind: "min", value: 1}},
                {label: "per setting: one model run / one replayed setting", value: runUs / (tuneUs / settings), unit: "x"},
                {label: "trace run (both branches) / plain run", value: medianOf(measurements, "traced") / runUs, unit: "x"},
                {label: `replay of ${settings} settings (target: seconds, not minutes)`, value: tuneUs, unit: "us", target: {kind: "max", value: 10e6}}
            ],
            notes: [
                `The fixture's ${QUESTIONS} questions (tuneQuestions, lib/fixtures/tuneQuestions.ts), ${base.ndocs} passages and ${base.maxNewTokens} new tokens each, ` +
                    "on the tiny fixture model with 1 thread: the cheapest model there is, so the per-setting ratio is the smallest it gets.",
                "The replay computes each weight setting's winners once per question and each threshold from suffix sums over the questions by " +
                    "ratio, so its cost grows with weights x questions + thresholds, not settings x questions."
            ]
        };
        writeResult(result);
        return result;
    } finally {
        fs.rmSync(dir, {recursive: true, force: true});
    }
}
