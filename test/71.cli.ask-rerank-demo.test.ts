import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import {fileURLToPath} from "node:url";
import {tempDir, tinyModel} from "../test-support/fixtures.js";
import {runCli} from "../test-support/cli.js";
import {REFLECTION_COUNT} from "../lib/engine/ReflectionTokens.js";

const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "lib", "cli", "main.js");

const selfrag = (args: string[], env: Record<string, string> = {}) => runCli(args, {env});

const passages = [
    {id: "b", title: "Berlin", text: "Berlin is the capital of Germany."},
    {id: "p", title: "Paris", text: "Paris is the capital and largest city of France. Paris"}
];

describe("selfrag ask / rerank / demo", () => {
    let passagesFile: string;
    before(() => {
        passagesFile = path.join(tempDir, "cli-passages.jsonl");
        fs.writeFileSync(passagesFile, passages.map((p) => JSON.stringify(p)).join("\n") + "\n");
    });

    it("ask --json prints the answer, the retrieve decision and scored candidates; --save-traces feeds rerank", async () => {
        const traces = path.join(tempDir, "cli-traces.jsonl");
        fs.rmSync(traces, {force: true});
        const result = await selfrag(["ask", "--model", await tinyModel(), "--passages", passagesFile, "--json", "--cpu",
            "--save-traces", traces, "What is the capital of France?"]);
        assert.equal(result.code, 0, result.stderr);
        const json = JSON.parse(result.stdout);
        assert.equal(json.answer, "Paris.");
        assert.equal(json.retrieve.decision, true);
        assert.equal(typeof json.retrieve.p, "number");
        assert.deepEqual(json.candidates.map((c: {passage: {id: string}}) => c.passage.id), ["b", "p"]);
        for (const key of ["text", "score", "relevance", "support", "utility", "seq"]) assert.ok(key in json.candidates[0], key);

        const reranked = await selfrag(["rerank", "--traces", traces, "--json"]);
        assert.equal(reranked.code, 0, reranked.stderr);
        const line = JSON.parse(reranked.stdout.trim());
        assert.equal(line.best, 1);
        line.candidates.forEach((c: {score: number}, i: number) => assert.ok(Math.abs(c.score - json.candidates[i].score) < 1e-9));
        // weights change the choice: only relevance, negated, prefers the irrelevant passage
        const flipped = JSON.parse((await selfrag(["rerank", "--traces", traces, "--json", "--w-rel=-1", "--w-sup", "0",
            "--w-use", "0", "--no-seqscore"])).stdout.trim());
        assert.equal(flipped.best, 0);
        assert.ok(Math.abs(flipped.candidates[1].score + json.candidates[1].relevance) < 1e-9);
    });

    it("rerank reports a trace with a wrong-length reflection row by line", async () => {
        const bad = path.join(tempDir, "bad-traces.jsonl");
        const row = Array(15).fill(-1);
        const good = {id: "q1", reflection_ids: Array.from({length: 15}, (_, i) => 32000 + i), candidates: [{tokens: [5], logprobs: [-1], reflection: [row]}]};
        const broken = {...good, id: "q2", candidates: [{tokens: [5, 6], logprobs: [-1, -1], reflection: [row, row.slice(1)]}]};
        fs.writeFileSync(bad, `${JSON.stringify(good)}\n${JSON.stringify(broken)}\n`);
        const result = await selfrag(["rerank", "--traces", bad, "--json"]);
        assert.equal(result.code, 1);
        assert.equal(result.stdout.trim().split("\n").length, 1, "the good line was still scored");
        assert.match(result.stderr, /bad-traces\.jsonl:2: candidate 0, position 1: reflection row has 14 values, expected 15 \[INVALID_TRACE\]/);
    });

    it("ask: a malformed passages line, an empty passages file, no model", async () => {
        const bad = path.join(tempDir, "cli-bad.jsonl");
        fs.writeFileSync(bad, `${JSON.stringify(passages[0])}\nnot json\n`);
        const malformed = await selfrag(["ask", "--model", await tinyModel(), "--passages", bad, "Q?"]);
        assert.equal(malformed.code, 1);
        assert.match(malformed.stderr, /cli-bad\.jsonl:2: not valid JSON.*\[INVALID_JSONL\]/);
        const empty = path.join(tempDir, "cli-empty.jsonl");
        fs.writeFileSync(empty, "");
        assert.match((await selfrag(["ask", "--model", await tinyModel(), "--passages", empty, "Q?"])).stderr, /holds no passages \[EMPTY_PASSAGES\]/);
        const noModel = await selfrag(["ask", "--passages", passagesFile, "Q?"], {SELFRAG_HOME: path.join(tempDir, "empty-home"), SELFRAG_MODEL: ""});
        assert.equal(noModel.code, 1);
        assert.match(noModel.stderr, /no model given and no pulled Self-RAG model found[\s\S]*--model FILE\.gguf[\s\S]*\[MODEL_NOT_FOUND\]/);
        const badNumber = await selfrag(["ask", "--model", await tinyModel(), "--passages", passagesFile, "--threshold", "high", "Q?"]);
        assert.match(badNumber.stderr, /--threshold/);
    });

    it("ask refuses a question given as several arguments and says to quote it (issue 24, item 5)", async () => {
        const result = await selfrag(["ask", "--model", await tinyModel(), "--passages", passagesFile, "What", "is", "Paris?"]);
        assert.equal(result.code, 1);
        assert.match(result.stderr, /^selfrag: selfrag ask takes one question, got 3 arguments: "What" "is" "Paris\?" \(quote the question: .*\) \[INVALID_ARGUMENT\]\n$/);
        assert.equal(result.stdout, "");
        // two questions are not joined into one either
        assert.match((await selfrag(["ask", "--model", await tinyModel(), "--passages", passagesFile, "q1", "q2"])).stderr, /got 2 arguments.*\[INVALID_ARGUMENT\]/);
    });

    it("rerank prints text lines without --json and JSON lines with it, as its help says (issue 24, item 6)", async () => {
        const traces = path.join(tempDir, "cli-text-traces.jsonl");
        const row = Array(REFLECTION_COUNT).fill(-3);
        const record = {id: "q1", reflection_ids: Array.from({length: REFLECTION_COUNT}, (_, i) => 32000 + i),
            candidates: [{tokens: [5], logprobs: [-1], reflection: [row]}, {tokens: [6, 7], logprobs: [-0.5, -0.5], reflection: [row, row]}]};
        fs.writeFileSync(traces, `${JSON.stringify(record)}\n`);
        const help = (await selfrag(["rerank", "--help"])).stdout;
        assert.match(help, /Prints one line per trace: its id, the best candidate and each candidate's score/);
        assert.match(help, /with --json one JSON line per trace/);
        const text = await selfrag(["rerank", "--traces", traces]);
        assert.equal(text.code, 0, text.stderr);
        assert.match(text.stdout, /^q1: best [01] {2}\[0\] -?\d+\.\d{3} {2}\[1\] -?\d+\.\d{3}\n$/);
        const json = await selfrag(["rerank", "--traces", traces, "--json"]);
        assert.equal(JSON.parse(json.stdout).id, "q1");
    });

    it("ask --long --json prints answer, segments with citations, the tree and token stats", async () => {
        const file = path.join(tempDir, "cli-long.jsonl");
        const corpus = [...passages, {id: "r", title: "Rome", text: "Rome is a city in Italy."}];
        fs.writeFileSync(file, corpus.map((p) => JSON.stringify(p)).join("\n") + "\n");
        const result = await selfrag(["ask", "--model", await tinyModel(), "--passages", file, "--long", "--max-depth", "3",
            "--context", "interleaved", "--json", "--cpu", "Tell me a bio of the capital of France."]);
        assert.equal(result.code, 0, result.stderr);
        const json = JSON.parse(result.stdout);
        assert.equal(typeof json.answer, "string");
        assert.ok(json.segments.length >= 2);
        json.segments.forEach((s: {citation: number, passage: {id: string}, score: number, text: string}, i: number) => {
            assert.equal(s.citation, i + 1);
            assert.ok(json.answer.includes(`[${i + 1}]`));
            assert.equal(typeof s.score, "number");
        });
        assert.ok(Array.isArray(json.tree) && json.tree.length > 3);
        assert.ok(json.stats.evaluatedTokens < json.stats.referenceTokens);
        const bad = await selfrag(["ask", "--model", await tinyModel(), "--passages", file, "--long", "--context", "everything", "Q?"]);
        assert.match(bad.stderr, /--context/);
    });

    it("ask --index retrieves from a built index, short and long form", async () => {
        const corpus = path.join(tempDir, "cli-index-corpus.jsonl");
        const filler = Array.from({length: 30}, (_, i) => ({id: `f${i}`, title: `Town ${i}`, text: `Town ${i} is a small place with a market and a river number ${i}.`}));
        fs.writeFileSync(corpus, [...passages, ...filler].map((p) => JSON.stringify(p)).join("\n") + "\n");
        const dir = path.join(tempDir, "cli-index");
        const built = await selfrag(["index", "build", "--corpus", corpus, "--out", dir]);
        assert.equal(built.code, 0, built.stderr);
        const short = await selfrag(["ask", "--model", await tinyModel(), "--index", dir, "--ndocs", "2", "--json", "--cpu",
            "What is the capital of France?"]);
        assert.equal(short.code, 0, short.stderr);
        const json = JSON.parse(short.stdout);
        assert.equal(json.candidates.length, 2);
        assert.ok(json.candidates.some((c: {passage: {id: string}}) => c.passage.id === "p"), "the Paris passage was retrieved");
        assert.equal(json.answer, "Paris.");
        const long = await selfrag(["ask", "--model", await tinyModel(), "--index", dir, "--ndocs", "2", "--long", "--max-depth", "3",
            "--json", "--cpu", "Tell me a bio of the capital of France."]);
        assert.equal(long.code, 0, long.stderr);
        assert.ok(JSON.parse(long.stdout).segments.length >= 1);
        const both = await selfrag(["ask", "--model", await tinyModel(), "--index", dir, "--passages", corpus, "Q?"]);
        assert.match(both.stderr, /exactly one of/);
    });

    it("demo runs a full round on the fixture model when no model is pulled, and says so", async () => {
        const home = path.join(tempDir, "demo-home");
        const result = await selfrag(["demo", "--cpu"], {SELFRAG_HOME: home, SELFRAG_MODEL: ""});
        assert.equal(result.code, 0, result.stderr);
        assert.match(result.stdout, /FIXTURE model/);
        assert.match(result.stdout, /answer: Paris\./);
        assert.match(result.stdout, /retrieval: yes/);
        assert.match(result.stdout, /retrieval: no/);
        assert.ok(fs.existsSync(path.join(home, "fixtures", "tiny.gguf")));
        assert.ok(fs.existsSync(path.join(home, "demo-index", "manifest.json")), "the demo built its passage index");
        assert.match(result.stdout, /\[wiki-2\] Paris/, "retrieval found the Paris passage");
    });
});
