// Where RAG users' data is (issue 12): FlashRAG / Pyserini and BEIR corpora build indexes that find
// the planted passage; FlashRAG datasets are scored with each metric asked for (recomputed here
// independently); SQuAD EM / F1 on hand-made cases; BEIR retrieval-only evaluation against a
// brute-force computation of recall@k, nDCG@10 and MRR.
import assert from "node:assert/strict";
import {execFile} from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import {fileURLToPath} from "node:url";
import {promisify} from "node:util";
import {generatedPassages, writeJsonl} from "../test-support/corpora.js";
import {tempDir, tinyModel} from "../test-support/fixtures.js";
import {runEvaluation, type EvalRecord} from "../lib/eval/Evaluation.js";
import {exactMatch, tokenF1} from "../lib/eval/metrics.js";
import {evaluateRetrieval, readQrels, readQueries, type RetrievalEvalRecord} from "../lib/eval/RetrievalEvaluation.js";
import {openCorpus, splitContents} from "../lib/retrieval/corpusReaders.js";
import {PassageIndex} from "../lib/retrieval/PassageIndex.js";
import {SelfRagModel} from "../lib/SelfRagModel.js";

const run = promisify(execFile);
const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "lib", "cli", "main.js");
const PLANTED = {title: "Eiffel Tower", text: "The Eiffel Tower was designed by the company of Gustave Eiffel in Paris."};

describe("corpus formats", function () {
    this.timeout(180_000);
    const dir = fs.mkdtempSync(path.join(tempDir, "formats-"));
    const background = generatedPassages(400, 9);

    it("FlashRAG / Pyserini contents: a quoted first line is the title, otherwise the whole is the text", () => {
        assert.deepEqual(splitContents("\"Aaron\"\nAaron is a prophet."), {title: "Aaron", text: "Aaron is a prophet."});
        assert.deepEqual(splitContents("\"Say \\\"hi\\\"\"\ntext"), {title: "Say \"hi\"", text: "text"});
        assert.deepEqual(splitContents("no title line here\nsecond line"), {title: "", text: "no title line here\nsecond line"});
        assert.deepEqual(splitContents("one line"), {title: "", text: "one line"});
    });

    it("a FlashRAG file (detected from its first record) builds an index whose search finds the planted passage first", async () => {
        const file = writeJsonl(path.join(dir, "flashrag.jsonl"), [
            ...background.slice(0, 200).map((p, i) => ({id: String(i), contents: `"${p.title}"\n${p.text}`})),
            {id: "planted", contents: `"${PLANTED.title}"\n${PLANTED.text}`},
            ...background.slice(200).map((p, i) => ({id: String(200 + i), contents: p.text}))
        ]);
        fs.appendFileSync(file, "{\"id\": 5}\nnot json\n");
        const corpus = await openCorpus(file);
        assert.equal(corpus.format, "pyserini");
        const malformed: string[] = [];
        await PassageIndex.build({corpus: file, out: path.join(dir, "flashrag-index"), onMalformed: (m) => malformed.push(m)});
        assert.deepEqual(malformed.map((m) => m.replace(/^.*flashrag\.jsonl:/, "")), [
            "402: field \"contents\" must be a non-empty string (got undefined)", "403: not valid JSON (Unexpected token 'o', \"not json\" is not valid JSON)"]);
        const index = await PassageIndex.open(path.join(dir, "flashrag-index"));
        try {
            const [first] = await index.search("who designed the eiffel tower gustave eiffel", 3);
            assert.deepEqual([first.id, first.title, first.text], ["planted", PLANTED.title, PLANTED.text]);
            const [untitled] = await index.search(background[250].text, 1);
            assert.deepEqual([untitled.id, untitled.title, untitled.text], ["250", "", background[250].text]);
        } finally {
            await index.close();
        }
    });

    it("a BEIR corpus.jsonl builds an index whose search finds the planted passage first", async () => {
        const file = writeJsonl(path.join(dir, "corpus.jsonl"), [
            ...background.map((p, i) => ({_id: `d${i}`, title: p.title, text: p.text, metadata: {}})),
            {_id: "planted", title: PLANTED.title, text: PLANTED.text, metadata: {url: "x"}}
        ]);
        assert.equal((await openCorpus(file)).format, "beir");
        await PassageIndex.build({corpus: file, out: path.join(dir, "beir-index")});
        const index = await PassageIndex.open(path.join(dir, "beir-index"));
        try {
            const [first] = await index.search("gustave eiffel tower", 1);
            assert.deepEqual([first.id, first.title], ["planted", PLANTED.title]);
        } finally {
            await index.close();
        }
    });
});

describe("evaluation metrics and datasets", function () {
    this.timeout(180_000);

    it("SQuAD exact match and token F1 on hand-made cases", () => {
        assert.equal(exactMatch("The Eiffel Tower!", ["eiffel tower"]), 1);
        assert.equal(exactMatch("an Eiffel tower", ["The Eiffel Tower"]), 1);
        assert.equal(exactMatch("Eiffel Towers", ["Eiffel Tower"]), 0);
        assert.equal(tokenF1("Gustave Eiffel", ["Eiffel"]), 2 * 0.5 * 1 / 1.5);
        assert.equal(tokenF1("the the cat", ["cat cat"]), 2 * 1 * 0.5 / 1.5, "counts with multiplicity; articles dropped");
        assert.equal(tokenF1("Paris", ["Rome", "paris."]), 1, "best over the golds");
        assert.equal(tokenF1("a", ["the"]), 1, "both empty after normalisation");
        assert.equal(tokenF1("", ["Paris"]), 0);
    });

    it("a FlashRAG dataset: golden_answers as golds, metadata kept, every metric per record and its mean", async () => {
        const dir = fs.mkdtempSync(path.join(tempDir, "flashrag-eval-"));
        const ctxs = [{title: "Paris", text: "Paris is the capital and largest city of France. Paris"}];
        const file = writeJsonl(path.join(dir, "nq.jsonl"), [
            {id: "test_0", question: "What is the capital of France?", golden_answers: ["Paris", "City of Paris"], metadata: {source: "nq"}, ctxs},
            {id: "test_1", question: "Tell me about London.", golden_answers: ["London"], metadata: {source: "nq"}, ctxs},
            {id: "test_2", question: "Name a city in France.", golden_answers: ["Lyon"], metadata: {}, ctxs}
        ]);
        const model = await SelfRagModel.load({modelPath: await tinyModel(), sequences: 4, contextSize: 1024});
        const records: EvalRecord[] = [];
        try {
            const summary = await runEvaluation(model, file, {metrics: ["match", "em", "f1"], shortForm: {maxNewTokens: 20, ndocs: 1},
                onRecord: (r) => void records.push(r)});
            assert.equal(records.length, 3);
            for (const r of records) {
                assert.ok(r.golds != null && r.golds.length > 0);
                assert.deepEqual(r.metadata, {test_0: {source: "nq"}, test_1: {source: "nq"}, test_2: {}}[r.id]);
                // Recomputed here: match is containment, EM and F1 with SQuAD's normalisation.
                const norm = (t: string) => t.toLowerCase().replace(/[^\p{L}\p{N}\s]/gu, "").replace(/\b(a|an|the)\b/g, " ").split(/\s+/).filter(Boolean);
                const em = r.golds!.some((g) => norm(g).join(" ") === norm(r.prediction).join(" ")) ? 1 : 0;
                const f1 = Math.max(...r.golds!.map((g) => {
                    const p = norm(r.prediction);
                    const gold = norm(g);
                    const left = [...gold];
                    const common = p.filter((t) => {
                        const at = left.indexOf(t);
                        if (at < 0) return false;
                        left.splice(at, 1);
                        return true;
                    }).length;
                    return common === 0 ? 0 : 2 * (common / p.length) * (common / gold.length) / (common / p.length + common / gold.length);
                }));
                const matched = r.golds!.some((g) => r.prediction.includes(g)) ? 1 : 0;
                assert.deepEqual(r.scores, {match: matched, em, f1}, r.id);
                assert.equal(r.score, matched, "score is the first metric");
            }
            const mean = (m: "match" | "em" | "f1") => records.reduce((a, r) => a + r.scores![m]!, 0) / records.length;
            assert.deepEqual(summary.metrics.map((m) => [m.metric, m.scored, m.mean]), [["match", 3, mean("match")], ["em", 3, mean("em")], ["f1", 3, mean("f1")]]);
            assert.ok(records.some((r) => r.scores!.match === 1), "the Paris question matches");
        } finally {
            await model.dispose();
        }
    });
});

describe("retrieval-only evaluation (BEIR)", function () {
    this.timeout(180_000);

    it("recall@k, nDCG@10 and MRR equal a brute-force computation over exact search; the CLI prints them", async () => {
        const dir = fs.mkdtempSync(path.join(tempDir, "beir-eval-"));
        const docs = generatedPassages(300, 31);
        const corpus = writeJsonl(path.join(dir, "corpus.jsonl"), docs.map((p, i) => ({_id: `d${i}`, title: p.title, text: p.text})));
        // Queries: a few words of a document; that document (relevance 2) and the next one (1) are judged relevant.
        const queries = Array.from({length: 25}, (_, q) => ({_id: `q${q}`, text: docs[q * 11].text.split(" ").slice(5, 12).join(" ")}));
        writeJsonl(path.join(dir, "queries.jsonl"), [...queries, {_id: "unjudged", text: "nothing"}]);
        fs.writeFileSync(path.join(dir, "qrels.tsv"), "query-id\tcorpus-id\tscore\n" +
            queries.flatMap((q, i) => [`${q._id}\td${i * 11}\t2`, `${q._id}\td${i * 11 + 1}\t1`, `${q._id}\td${i * 11 + 2}\t0`]).join("\n") + "\n");
        await PassageIndex.build({corpus, out: path.join(dir, "index"), keepVectors: true});
        const index = await PassageIndex.open(path.join(dir, "index"), {mode: "exact"});
        const records: RetrievalEvalRecord[] = [];
        try {
            const summary = await evaluateRetrieval(index, await readQueries(path.join(dir, "queries.jsonl")), readQrels(path.join(dir, "qrels.tsv")),
                {ks: [1, 5, 10], onRecord: (r) => void records.push(r)});
            assert.equal(summary.queries, 25);
            assert.equal(summary.unjudged, 1);
            const sums = {r1: 0, r5: 0, r10: 0, ndcg: 0, mrr: 0};
            for (const [i, q] of queries.entries()) {
                const ranked = (await index.search(q.text, 10)).map((h) => h.id!); // brute force: exact search
                const rel = new Map([[`d${i * 11}`, 2], [`d${i * 11 + 1}`, 1]]);
                const recall = (k: number) => ranked.slice(0, k).filter((id) => rel.has(id)).length / 2;
                let dcg = 0;
                ranked.forEach((id, r) => { dcg += (rel.get(id) ?? 0) / Math.log2(r + 2); });
                const idcg = 2 / Math.log2(2) + 1 / Math.log2(3);
                const first = ranked.findIndex((id) => rel.has(id));
                sums.r1 += recall(1); sums.r5 += recall(5); sums.r10 += recall(10); sums.ndcg += dcg / idcg; sums.mrr += first < 0 ? 0 : 1 / (first + 1);
                assert.deepEqual(records[i].retrieved, ranked);
            }
            const close = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) < 1e-12, `${what}: ${a} vs ${b}`);
            close(summary.recall["1"], sums.r1 / 25, "recall@1");
            close(summary.recall["5"], sums.r5 / 25, "recall@5");
            close(summary.recall["10"], sums.r10 / 25, "recall@10");
            close(summary.ndcg10, sums.ndcg / 25, "nDCG@10");
            close(summary.mrr, sums.mrr / 25, "MRR");
            assert.ok(summary.recall["10"] > 0.4, "the queries find their documents");
        } finally {
            await index.close();
        }
        const {stdout} = await run("node", [cli, "eval-retrieval", "--index", path.join(dir, "index"), "--queries", path.join(dir, "queries.jsonl"),
            "--qrels", path.join(dir, "qrels.tsv"), "--k", "1,10", "--json"]);
        const printed = JSON.parse(stdout) as {queries: number, recall: Record<string, number>, ndcg10: number};
        assert.deepEqual(Object.keys(printed.recall), ["1", "10"]);
        assert.equal(printed.queries, 25);
    });
});
