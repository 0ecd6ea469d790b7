// Search calibration with question-like queries (issue 17, item 9): on a corpus where held-out
// passages overstate recall (3,000 passages of Zipf-distributed words plus three real ones), the
// calibration's queries are question-like spans embedded as queries, or the user's questions; the
// report carries both recalls; and the plan it picks finds what exact search finds for short,
// real questions.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import {generatedPassages, writeJsonl} from "../test-support/corpora.js";
import {tempDir} from "../test-support/fixtures.js";
import {questionLikeQueries, readCalibrationQuestions} from "../lib/retrieval/CalibrationQueries.js";
import {PassageIndex} from "../lib/retrieval/PassageIndex.js";

const REAL = [
    {id: "eiffel", title: "Eiffel Tower", text: "The Eiffel Tower was designed by the engineering company of Gustave Eiffel for the 1889 World's Fair."},
    {id: "paris", title: "Paris", text: "Paris is the capital and largest city of France."},
    {id: "hamlet", title: "Hamlet", text: "Hamlet is a tragedy written by William Shakespeare."}
];
const QUESTIONS = ["gustave eiffel", "What is the capital of France?", "who wrote hamlet"];

describe("search calibration with question-like queries", function () {
    this.timeout(300_000);
    const dir = fs.mkdtempSync(path.join(tempDir, "calibration-q-"));
    const corpus = writeJsonl(path.join(dir, "corpus.jsonl"), [...generatedPassages(2997, 21), ...REAL]);

    it("question-like spans: the first sentence, at most 12 words; questions read from text or JSONL lines", () => {
        assert.deepEqual(questionLikeQueries([
            {title: "T", text: "Paris is the capital. It is big."},
            {title: "T", text: "one two three four five six seven eight nine ten eleven twelve thirteen fourteen."},
            {title: "Only", text: "Hi. there you are"}
        ]), ["Paris is the capital.", "one two three four five six seven eight nine ten eleven twelve", "Hi. there you are"]);
        const file = path.join(dir, "questions.txt");
        fs.writeFileSync(file, `who wrote hamlet\n\n${JSON.stringify({question: "What is the capital of France?", answers: ["Paris"]})}\n{"query": "q3"}\n`);
        assert.deepEqual(readCalibrationQuestions(file), ["who wrote hamlet", "What is the capital of France?", "q3"]);
        fs.writeFileSync(file, "ok\n{\"answers\": 1}\n");
        assert.throws(() => readCalibrationQuestions(file), /questions\.txt:2: expected a string "question", "query" or "text"/);
    });

    it("a default build calibrates on spans, reports the passages' recall beside, and its plan finds what exact search finds", async () => {
        const out = path.join(dir, "index-spans");
        const summary = await PassageIndex.build({corpus, out, keepVectors: true});
        const report = summary.manifest.search?.calibration;
        assert.ok(report != null, "calibrated");
        assert.equal(report.queryKind, "spans");
        assert.ok(report.passages != null && report.passages.hnsw.length === report.hnsw.length, "the passages' recall at every ef measured");
        for (const [i, m] of report.hnsw.entries()) assert.equal(report.passages.hnsw[i].expansionSearch, m.expansionSearch);
        const index = await PassageIndex.open(out);
        const exact = await PassageIndex.open(out, {mode: "exact"});
        try {
            for (const q of QUESTIONS) {
                const [served] = await index.search(q, 5);
                const [truth] = await exact.search(q, 5);
                assert.equal(served.id, truth.id, `"${q}": the index's plan (${index.searchMode.mode} ef ${index.searchMode.expansionSearch}) finds exact search's best`);
            }
        } finally {
            await index.close();
            await exact.close();
        }
    });

    it("--calibration-queries questions: calibrated on them", async () => {
        const out = path.join(dir, "index-questions");
        const questions = [...QUESTIONS, ...generatedPassages(60, 5).map((p) => p.text.split(" ").slice(0, 6).join(" "))];
        const summary = await PassageIndex.build({corpus, out, calibration: {questions}});
        assert.equal(summary.manifest.search?.calibration?.queryKind, "questions");
        assert.equal(summary.manifest.search?.calibration?.queries, questions.length);
    });
});

describe("index build / info: the calibration explained", function () {
    this.timeout(300_000);
    const cliPath = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..", "lib", "cli", "main.js");
    const selfrag = async (...args: string[]) => {
        const {execFile} = await import("node:child_process");
        const {promisify} = await import("node:util");
        return promisify(execFile)("node", [cliPath, ...args]);
    };

    it("--calibration-queries FILE calibrates on your questions; both recalls are printed; a small index says why it is not calibrated", async () => {
        const dir = fs.mkdtempSync(path.join(tempDir, "calibration-cli-"));
        const corpus = writeJsonl(path.join(dir, "corpus.jsonl"), [...generatedPassages(1500, 3), ...REAL]);
        const questions = path.join(dir, "questions.jsonl");
        fs.writeFileSync(questions, QUESTIONS.map((q) => JSON.stringify({question: q})).join("\n") + "\n");
        const built = await selfrag("index", "build", "--corpus", corpus, "--out", path.join(dir, "big"), "--calibration-queries", questions);
        assert.match(built.stdout, /search: (HNSW at ef \d+ \(recall@10 on 3 of your questions: [\d.]+; the held-out passages themselves: [\d.]+|exact)/);
        const info = await selfrag("index", "info", path.join(dir, "big"));
        assert.equal((JSON.parse(info.stdout) as {search: {calibration: {queryKind: string}}}).search.calibration.queryKind, "questions");
        assert.match(info.stderr, /^search: /);
        const small = writeJsonl(path.join(dir, "small.jsonl"), REAL);
        const smallBuilt = await selfrag("index", "build", "--corpus", small, "--out", path.join(dir, "small"));
        assert.match(smallBuilt.stdout, /not calibrated: 3 passages, under 1000: HNSW at ef \d+ finds the exact top k on an index this small/);
    });
});
