// The evaluation harness: the metrics on hand-computed cases, the readers of the released data
// shapes (PopQA, ARC, ASQA), and whole runs on the fixture model: each record is what answer()
// gives that question alone, scores and the summary follow from the records, a bad question gets
// an error record while the run goes on, and a killed run resumes without repeating or losing a
// question.
import {rejectsWith} from "../test-support/assertions.js";
import {tempDir, tinyModel} from "../test-support/fixtures.js";
import assert from "node:assert/strict";
import {execFile} from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import {fileURLToPath} from "node:url";
import {promisify} from "node:util";
import {toEvalItem, type EvalItem} from "../lib/eval/EvalItems.js";
import {runEvaluation, summarizeRecords, type EvalRecord} from "../lib/eval/Evaluation.js";
import {accuracy, match, normalizeAnswer, scoredPrediction, strEm} from "../lib/eval/metrics.js";
import type {Passage} from "../lib/selfrag/prompts.js";
import {SelfRagModel} from "../lib/SelfRagModel.js";

const run = promisify(execFile);
const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "lib", "cli", "main.js");

const CTXS: Passage[] = [
    {id: "b", title: "Berlin", text: "Berlin is the capital of Germany."},
    {id: "p", title: "Paris", text: "Paris is the capital and largest city of France. Paris"},
    {id: "r", title: "Rome", text: "Rome is the capital of Italy."}
];
const QA: [string, string[]][] = [
    ["What is the capital of France?", ["Paris"]], ["Name the capital of Germany.", ["Berlin"]],
    ["Which city is the capital of Italy?", ["Rome"]], ["What is the largest city of France?", ["Paris"]],
    ["Tell me about London.", ["London"]]
];

function writePopQa(file: string, extra: string[] = []): string {
    const lines = QA.map(([question, answers], i) => JSON.stringify({id: `q${i}`, question, answers, ctxs: CTXS}));
    fs.writeFileSync(file, [...lines, ...extra].join("\n") + "\n");
    return file;
}

describe("evaluation metrics", () => {
    it("match, accuracy, the prediction clean-up, SQuAD normalisation and ASQA str-em on hand-computed cases", () => {
        assert.equal(match("Paris.", ["Rome", "Paris"]), 1);
        assert.equal(match("paris", ["Paris"]), 0, "case-sensitive, as the scripts");
        assert.equal(accuracy(" true ", ["true"]), 1);
        assert.equal(accuracy("true.", ["true"]), 0);
        assert.equal(scoredPrediction("#Paris", "none"), "Paris");
        assert.equal(scoredPrediction(":B", "arc_c"), "B");
        assert.equal(scoredPrediction("The claim SUPPORTS it", "fever"), "true");
        assert.equal(scoredPrediction("REFUTES", "fever"), "false");
        assert.equal(scoredPrediction("SUPPORTS", "popqa"), "SUPPORTS");
        assert.equal(normalizeAnswer("The  Eiffel-Tower, an ICON!"), "eiffeltower icon");
        // "1889" and "Eiffel" are in the output, "Paris" is not: 2 of 3 disambiguations.
        assert.equal(strEm("It was built in 1889 by Gustave Eiffel.", [{short_answers: ["1889"]}, {short_answers: ["G. Eiffel", "Eiffel"]},
            {short_answers: ["Paris"]}]), 2 / 3);
        assert.equal(strEm("anything", []), 0);
    });
});

describe("evaluation records", () => {
    it("reads PopQA's JSON-encoded possible_answers, ARC's numeric labels, ASQA's qa_pairs and docs", () => {
        const pop = toEvalItem({id: 7, question: "Who?", possible_answers: "[\"A. Smith\", \"Smith\"]", top_contexts: [{title: "T", text: "x"}]},
            "f:1", 1, "popqa") as EvalItem;
        const raw = {id: 7, question: "Who?", possible_answers: "[\"A. Smith\", \"Smith\"]", top_contexts: [{title: "T", text: "x"}]};
        assert.deepEqual(pop, {id: "7", question: "Who?", golds: ["A. Smith", "Smith"], passages: [{title: "T", text: "x"}], where: "f:1", record: raw});
        const arc = toEvalItem({question: "Pick", choices: {text: ["one", "two", "three"], label: ["1", "2", "3"]}, answerKey: "2"},
            "f:2", 2, "arc_c") as EvalItem;
        assert.deepEqual([arc.id, arc.choices, arc.golds], ["2", ["one", "two", "three", ""], ["B"]]);
        const asqa = toEvalItem({sample_id: "s1", question: "Q", qa_pairs: [{short_answers: ["a", 1]}], docs: [{title: "D", text: "t", id: 3}]},
            "f:3", 3, "asqa") as EvalItem;
        assert.deepEqual([asqa.id, asqa.qaPairs, asqa.passages], ["s1", [{short_answers: ["a", "1"]}], [{id: "3", title: "D", text: "t"}]]);
        assert.equal(toEvalItem({claim: "Water is wet.", answers: "true"}, "f:4", 4, "fever").constructor, Object);
        assert.match(toEvalItem({answers: ["x"]}, "f:5", 5, "popqa") as string, /^f:5: no question/);
        assert.match(toEvalItem({question: "q", ctxs: "nope"}, "f:6", 6, "popqa") as string, /^f:6: field "ctxs" must be an array/);
        assert.match(toEvalItem({question: "q"}, "f:7", 7, "arc_c") as string, /^f:7: an arc_c record needs "choices"/);
        assert.match(toEvalItem([1], "f:8", 8, "popqa") as string, /expected a JSON object/);
    });
});

describe("evaluation runs on the fixture model", () => {
    let model: SelfRagModel;
    before(async () => {
        model = await SelfRagModel.load({modelPath: await tinyModel(), contextSize: 512, sequences: 12, gpu: false});
    });
    after(async () => model?.dispose());
    const shortForm = {ndocs: 3, maxNewTokens: 24};

    it("records equal answer() one question at a time; scores and the summary follow from them; bad records are reported", async () => {
        const file = writePopQa(path.join(tempDir, "popqa.jsonl"), ["{broken", JSON.stringify({id: "huge", question: "word ".repeat(600),
            answers: ["x"], ctxs: CTXS}), JSON.stringify({answers: ["no question"]})]);
        const records: EvalRecord[] = [];
        const malformed: string[] = [];
        const before = model.context.stats.decodeCalls;
        const summary = await runEvaluation(model, file, {task: "popqa", shortForm, onRecord: (r) => void records.push(r),
            onMalformed: (m) => malformed.push(m)});
        const evalCalls = model.context.stats.decodeCalls - before;
        assert.deepEqual(records.map((r) => r.id), ["q0", "q1", "q2", "q3", "q4", "huge"]);
        let sequentialCalls = 0;
        for (const [i, [question, golds]] of QA.entries()) {
            const start = model.context.stats.decodeCalls;
            const alone = await model.answer({question, passages: CTXS, task: "popqa"}, shortForm);
            sequentialCalls += model.context.stats.decodeCalls - start;
            assert.equal(records[i].prediction, alone.answer, question);
            assert.equal(records[i].retrieve?.p, alone.retrieve.p);
            assert.equal(records[i].score, golds.some((g) => alone.answer.includes(g)) ? 1 : 0);
        }
        assert.equal(records[5].error?.code, "CONTEXT_OVERFLOW");
        assert.match(records[5].error!.message, /popqa\.jsonl:7: /);
        assert.deepEqual(malformed.map((m) => m.split(": ")[0]), [`${file}:6`, `${file}:8`]);
        const scores = records.slice(0, 5).map((r) => r.score!);
        assert.deepEqual({answered: summary.answered, errors: summary.errors, malformed: summary.malformed, scored: summary.scored},
            {answered: 5, errors: 1, malformed: 2, scored: 5});
        assert.equal(summary.mean, scores.reduce((a, b) => a + b, 0) / 5);
        assert.equal(summary.retrievalRate, records.slice(0, 5).filter((r) => r.retrieve!.decision).length / 5);
        assert.deepEqual(summarizeRecords(records), {records: 6, errors: 1, scored: 5, mean: summary.mean, retrievalRate: summary.retrievalRate});
        // The huge question failed alone (before taking a slot): the others still shared decode steps.
        assert.ok(evalCalls < sequentialCalls, `${evalCalls} decode calls with a failing question vs ${sequentialCalls} one by one`);
        const clean = writePopQa(path.join(tempDir, "popqa-clean.jsonl"));
        const start = model.context.stats.decodeCalls;
        const again: EvalRecord[] = [];
        await runEvaluation(model, clean, {task: "popqa", shortForm, onRecord: (r) => void again.push(r)});
        const batchedCalls = model.context.stats.decodeCalls - start;
        assert.ok(batchedCalls < sequentialCalls, `${batchedCalls} decode calls batched vs ${sequentialCalls} one by one`);
        assert.deepEqual(again.map((r) => r.prediction), records.slice(0, 5).map((r) => r.prediction));
        await assert.rejects(runEvaluation(model, file, {task: "popqa", shortForm, strict: true}), rejectsWith("INVALID_JSONL", /popqa\.jsonl:6/));
    });

    it("ARC (closed set, letters) and ASQA long form with str-em", async () => {
        const arcFile = path.join(tempDir, "arc.jsonl");
        fs.writeFileSync(arcFile, JSON.stringify({id: "a1", question: "Which city is the capital of France?",
            choices: {text: ["Berlin", "Paris", "Rome"], label: ["A", "B", "C"]}, answerKey: "B", ctxs: CTXS}) + "\n");
        const arc: EvalRecord[] = [];
        await runEvaluation(model, arcFile, {task: "arc_c", shortForm, onRecord: (r) => void arc.push(r)});
        const alone = await model.answer({question: "Which city is the capital of France?", passages: CTXS, task: "arc_c",
            choices: ["Berlin", "Paris", "Rome"]}, shortForm);
        assert.equal(arc[0].prediction, alone.answer);
        assert.deepEqual(arc[0].golds, ["B"]);
        assert.equal(arc[0].score, alone.answer.includes("B") ? 1 : 0);

        const asqaFile = path.join(tempDir, "asqa.json");
        fs.writeFileSync(asqaFile, JSON.stringify([{sample_id: "s1", question: "Tell me a bio of Paris, the capital of France.",
            qa_pairs: [{short_answers: ["Paris"]}, {short_answers: ["Tokyo"]}], docs: CTXS.slice(0, 2)}]));
        const long: EvalRecord[] = [];
        const summary = await runEvaluation(model, asqaFile, {task: "asqa", long: true, longForm: {ndocs: 2, beamWidth: 2, maxDepth: 3, maxNewTokens: 20},
            onRecord: (r) => void long.push(r)});
        assert.equal(summary.metric, "str_em");
        const aloneLong = await model.answerLong("Tell me a bio of Paris, the capital of France.",
            {task: "asqa", passages: CTXS.slice(0, 2), ndocs: 2, beamWidth: 2, maxDepth: 3, maxNewTokens: 20});
        assert.equal(long[0].prediction, aloneLong.answer);
        assert.deepEqual(long[0].docs, aloneLong.docs);
        assert.equal(long[0].score, strEm(aloneLong.answer, [{short_answers: ["Paris"]}, {short_answers: ["Tokyo"]}]));
    });

    it("selfrag eval: a killed run resumes without repeating or losing a question; an existing output is not overwritten", async () => {
        const input = writePopQa(path.join(tempDir, "resume.jsonl"));
        const output = path.join(tempDir, "resume-out.jsonl");
        const model = await tinyModel();
        const args = ["eval", "--model", model, "--input", input, "--output", output, "--task", "popqa", "--ndocs", "3", "--max-new-tokens", "24",
            "--context-size", "512", "--cpu", "--json"];
        const first = await run(process.execPath, [cli, ...args]);
        const full = fs.readFileSync(output, "utf8").split("\n").filter((l) => l !== "");
        assert.equal(full.length, 5);
        const summary = JSON.parse(first.stdout) as {answered: number, mean: number};
        assert.equal(summary.answered, 5);

        // As if killed while writing the third record: two whole lines and half of one.
        fs.writeFileSync(output, `${full[0]}\n${full[1]}\n${full[2].slice(0, 30)}`);
        const refused = await run(process.execPath, [cli, ...args]).catch((e: {stderr: string, code: number}) => e);
        assert.match((refused as {stderr: string}).stderr, /already holds records; pass --resume .*\[OUTPUT_EXISTS\]/);
        const resumed = await run(process.execPath, [cli, ...args, "--resume"]);
        const after = JSON.parse(resumed.stdout) as {answered: number, skipped: number, file: {records: number, mean: number}};
        assert.deepEqual([after.answered, after.skipped], [3, 2]);
        const lines = fs.readFileSync(output, "utf8").split("\n").filter((l) => l !== "");
        assert.deepEqual(lines.map((l) => (JSON.parse(l) as EvalRecord).id).sort(), ["q0", "q1", "q2", "q3", "q4"]);
        assert.deepEqual([...lines].sort(), [...full].sort(), "the resumed file holds the same records as the uninterrupted run");
        assert.equal(after.file.records, 5);
        assert.equal(after.file.mean, summary.mean);
    });
});
