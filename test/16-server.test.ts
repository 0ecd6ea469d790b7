// The request scheduler and the HTTP server on the fixture model: concurrent requests share
// batches and get exactly the answers they would get alone; a bad request fails alone; queue
// limits, aborts and shutdown; every kind of bad HTTP input gets a JSON error naming the problem
// and the server keeps answering.
import {rejectsWith} from "../test-support/assertions.js";
import {generatedPassages, writeJsonl} from "../test-support/corpora.js";
import {tempDir, tinyModel} from "../test-support/fixtures.js";
import assert from "node:assert/strict";
import path from "node:path";
import type {Passage} from "../lib/selfrag/prompts.js";
import {RequestScheduler} from "../lib/serving/RequestScheduler.js";
import {shortFormJson} from "../lib/serving/responses.js";
import {PassageIndex} from "../lib/retrieval/PassageIndex.js";
import {SelfRagModel} from "../lib/SelfRagModel.js";
import {SelfRagServer} from "../lib/serving/SelfRagServer.js";
import type {ShortFormAnswer} from "../lib/selfrag/ShortForm.js";

const CORPUS: Passage[] = [
    {id: "b", title: "Berlin", text: "Berlin is the capital of Germany."},
    {id: "p", title: "Paris", text: "Paris is the capital and largest city of France. Paris"},
    {id: "r", title: "Rome", text: "Rome is the capital of Italy."}
];
const QUESTIONS = ["What is the capital of France?", "Name the capital of Germany.", "Which city is the capital of Italy?",
    "What is the largest city of France?", "Tell me about Berlin.", "Where is Rome?"];

describe("request scheduler", () => {
    let model: SelfRagModel;
    before(async () => {
        model = await SelfRagModel.load({modelPath: await tinyModel(), contextSize: 512, sequences: 6, gpu: false});
    });
    after(async () => model?.dispose());

    it("concurrent requests run in shared batches, with the answers each gets alone and fewer decode calls", async () => {
        const options = {passages: CORPUS, ndocs: 3, maxNewTokens: 24};
        const before = model.context.stats.decodeCalls;
        const alone: ShortFormAnswer[] = [];
        for (const q of QUESTIONS) alone.push(await model.answer(q, options));
        const sequentialCalls = model.context.stats.decodeCalls - before;

        const scheduler = new RequestScheduler(model);
        const start = model.context.stats.decodeCalls;
        const together = await Promise.all(QUESTIONS.map((q) => scheduler.answer(q, options)));
        const scheduledCalls = model.context.stats.decodeCalls - start;
        // Submitted in the same tick, the six start as one batch.
        assert.deepEqual(scheduler.stats, {queued: 0, running: 0, batches: 1, requests: 6, splitBatches: 0});
        // One arriving while a batch runs waits for it and starts the next.
        const first = scheduler.answer(QUESTIONS[0], options);
        await new Promise((resolve) => setImmediate(resolve));
        const late = await Promise.all([scheduler.answer(QUESTIONS[1], options), scheduler.answer(QUESTIONS[2], options)]);
        assert.equal((await first).answer, alone[0].answer);
        assert.deepEqual(late.map((a) => a.answer), [alone[1].answer, alone[2].answer]);
        assert.deepEqual(scheduler.stats, {queued: 0, running: 0, batches: 3, requests: 9, splitBatches: 0});
        together.forEach((answer, i) => {
            assert.equal(answer.answer, alone[i].answer, QUESTIONS[i]);
            assert.deepEqual(answer.candidates.map((c) => [c.text, c.score]), alone[i].candidates.map((c) => [c.text, c.score]));
        });
        assert.ok(scheduledCalls < sequentialCalls, `${scheduledCalls} decode calls batched vs ${sequentialCalls} one by one`);
        await scheduler.close();
    });

    it("only requests with the same options share a batch; long form batches too", async () => {
        const scheduler = new RequestScheduler(model);
        const [a, b, c, d] = await Promise.all([
            scheduler.answer(QUESTIONS[0], {passages: CORPUS, ndocs: 3, maxNewTokens: 16}),
            scheduler.answer(QUESTIONS[1], {passages: CORPUS, ndocs: 2, maxNewTokens: 16}),
            scheduler.answerLong(QUESTIONS[2], {passages: CORPUS.slice(0, 2), beamWidth: 2, ndocs: 2, maxDepth: 2, maxNewTokens: 16}),
            scheduler.answerLong(QUESTIONS[3], {passages: CORPUS.slice(0, 2), beamWidth: 2, ndocs: 2, maxDepth: 2, maxNewTokens: 16})
        ]);
        // Batches: a alone (no other request has ndocs 3), then b alone (ndocs 2), then c and d together.
        assert.equal(scheduler.stats.batches, 3);
        assert.equal(a.candidates.length, 3);
        assert.equal(b.candidates.length, 2);
        const cAlone = await model.answerLong(QUESTIONS[2], {passages: CORPUS.slice(0, 2), beamWidth: 2, ndocs: 2, maxDepth: 2, maxNewTokens: 16});
        assert.equal(c.answer, cAlone.answer);
        assert.ok(d.segments.length > 0);
        await scheduler.close();
    });

    it("a request that fails fails alone: its batch is re-run one by one", async () => {
        const scheduler = new RequestScheduler(model);
        const options = {passages: CORPUS, ndocs: 3, maxNewTokens: 16};
        const first = scheduler.answer(QUESTIONS[0], options);
        const tooLong = "word ".repeat(2000);
        const results = await Promise.allSettled([first, scheduler.answer(QUESTIONS[1], options), scheduler.answer(tooLong, options),
            scheduler.answer(QUESTIONS[2], options)]);
        assert.deepEqual(results.map((r) => r.status), ["fulfilled", "fulfilled", "rejected", "fulfilled"]);
        assert.equal((results[2] as PromiseRejectedResult).reason.code, "CONTEXT_OVERFLOW");
        assert.equal(scheduler.stats.splitBatches, 1);
        const alone = await model.answer(QUESTIONS[2], options);
        assert.equal((results[3] as PromiseFulfilledResult<typeof alone>).value.answer, alone.answer);
        await scheduler.close();
    });

    it("queue limit, abort before start, and close", async () => {
        const scheduler = new RequestScheduler(model, {maxQueue: 2});
        const options = {passages: CORPUS, ndocs: 3, maxNewTokens: 16};
        const running = scheduler.answer(QUESTIONS[0], options);
        await new Promise((resolve) => setImmediate(resolve)); // it has started
        const abort = new AbortController();
        const aborted = scheduler.answer(QUESTIONS[1], options, {signal: abort.signal});
        const queued = scheduler.answer(QUESTIONS[2], options);
        await assert.rejects(scheduler.answer(QUESTIONS[3], options), rejectsWith("QUEUE_FULL", /maxQueue 2/));
        abort.abort();
        await assert.rejects(aborted, rejectsWith("ABORTED"));
        assert.equal(scheduler.stats.queued, 1);
        const closing = scheduler.close();
        await assert.rejects(queued, rejectsWith("SCHEDULER_CLOSED"));
        assert.equal((await running).answer, "Paris.", "the running batch finishes");
        await closing;
        await assert.rejects(scheduler.answer(QUESTIONS[0], options), rejectsWith("SCHEDULER_CLOSED"));
        assert.equal(scheduler.stats.requests, 1, "neither the aborted nor the closed-out request ran");
    });
});

describe("HTTP server", () => {
    let model: SelfRagModel;
    let index: PassageIndex;
    let server: SelfRagServer;
    const post = async (route: string, body: unknown, init: RequestInit = {}) => {
        const res = await fetch(server.url + route, {method: "POST", body: typeof body === "string" ? body : JSON.stringify(body), ...init});
        return {status: res.status, headers: res.headers, json: await res.json() as Record<string, any>};
    };

    before(async () => {
        model = await SelfRagModel.load({modelPath: await tinyModel(), contextSize: 512, sequences: 6, gpu: false});
        const out = path.join(tempDir, "server-index");
        const passages = [...CORPUS, ...generatedPassages(300, 5)];
        await PassageIndex.build({corpus: writeJsonl(path.join(tempDir, "server-corpus.jsonl"), passages), out});
        index = await PassageIndex.open(out);
        server = await SelfRagServer.listen({model, index, port: 0, maxBodyBytes: 4096});
    });
    after(async () => {
        await server?.close();
        await index?.close();
        await model?.dispose();
    });

    it("POST /v1/answer returns what answer() gives, as ask --json prints it; concurrent requests share batches", async () => {
        const body = {question: QUESTIONS[0], passages: CORPUS, ndocs: 3, maxNewTokens: 24, id: "q1"};
        const res = await post("/v1/answer", body);
        assert.equal(res.status, 200);
        const alone = await model.answer({question: QUESTIONS[0], passages: CORPUS}, {ndocs: 3, maxNewTokens: 24});
        assert.deepEqual(res.json, JSON.parse(JSON.stringify({id: "q1", ...shortFormJson(alone)})));

        const batchesBefore = server.scheduler.stats.batches;
        const all = await Promise.all(QUESTIONS.map((q) => post("/v1/answer", {question: q, passages: CORPUS, ndocs: 3, maxNewTokens: 24})));
        assert.deepEqual(all.map((r) => r.status), QUESTIONS.map(() => 200));
        const batches = server.scheduler.stats.batches - batchesBefore;
        assert.ok(batches < QUESTIONS.length, `${QUESTIONS.length} requests in ${batches} batches`);
        const stats = (await (await fetch(server.url + "/v1/stats")).json()) as {scheduler: {requests: number}, engine: {sequences: number}};
        assert.equal(stats.engine.sequences, 6);
        assert.ok(stats.scheduler.requests >= 7);
    });

    it("without passages it retrieves from the index; /v1/search; long form", async () => {
        const retrieved = await post("/v1/answer", {question: "What is the capital of France? Paris", ndocs: 3, maxNewTokens: 16});
        assert.equal(retrieved.status, 200);
        const expected = await index.search("What is the capital of France? Paris", 3);
        assert.deepEqual(retrieved.json.candidates.map((c: {passage: {id: string}}) => c.passage.id), expected.map((h) => h.id));
        const search = await post("/v1/search", {query: "capital of France Paris", k: 2});
        assert.equal(search.status, 200);
        assert.equal(search.json.results.length, 2);
        assert.equal(search.json.results[0].id, "p");
        const long = await post("/v1/answer", {question: QUESTIONS[0], passages: CORPUS.slice(0, 2), long: true, beamWidth: 2, ndocs: 2,
            maxDepth: 2, maxNewTokens: 16});
        assert.equal(long.status, 200);
        assert.ok(typeof long.json.answer === "string" && Array.isArray(long.json.segments) && long.json.stats.evaluatedTokens > 0);
    });

    it("bad requests get a JSON error naming the problem, and the server goes on answering", async () => {
        const cases: [string, unknown, number, string, RegExp][] = [
            ["/v1/answer", "{not json", 400, "INVALID_JSON", /not valid JSON/],
            ["/v1/answer", "", 400, "INVALID_REQUEST", /empty/],
            ["/v1/answer", [1, 2], 400, "INVALID_REQUEST", /"body": expected a JSON object/],
            ["/v1/answer", {passages: CORPUS}, 400, "INVALID_REQUEST", /"question": expected a non-empty string/],
            ["/v1/answer", {question: "q", ndocs: "5"}, 400, "INVALID_REQUEST", /"ndocs": expected an integer from 1 to 1024, got "5"/],
            ["/v1/answer", {question: "q", nDocs: 5}, 400, "INVALID_REQUEST", /unknown field "nDocs"/],
            ["/v1/answer", {question: "q", beamWidth: 2}, 400, "INVALID_REQUEST", /unknown field "beamWidth"/],
            ["/v1/answer", {question: "q", passages: [{title: "t"}]}, 400, "INVALID_REQUEST", /"passages\[0\]\.text"/],
            ["/v1/answer", {question: "q", weights: {rel: 1}}, 400, "INVALID_REQUEST", /unknown field "weights\.rel"/],
            ["/v1/answer", {question: "q", mode: "sometimes"}, 400, "INVALID_REQUEST", /"mode": expected "adaptive" \| "always" \| "never"/],
            ["/v1/answer", {question: "q", passages: CORPUS, ndocs: 3, maxNewTokens: 500}, 422, "CONTEXT_OVERFLOW", /does not fit/],
            ["/v1/answer", {question: "x".repeat(5000)}, 413, "PAYLOAD_TOO_LARGE", /limit is 4096/],
            ["/v1/nothing", {}, 404, "NOT_FOUND", /no route \/v1\/nothing/],
            ["/v1/search", {query: ""}, 400, "INVALID_REQUEST", /"query"/]
        ];
        for (const [route, body, status, code, message] of cases) {
            const res = await post(route, body);
            assert.equal(res.status, status, `${route} ${JSON.stringify(body).slice(0, 60)}: ${JSON.stringify(res.json)}`);
            assert.equal(res.json.error.code, code);
            assert.match(res.json.error.message, message);
        }
        const get = await fetch(server.url + "/v1/answer");
        assert.equal(get.status, 405);
        assert.equal(get.headers.get("allow"), "POST");
        const multipart = new FormData();
        multipart.set("question", "q");
        const form = await post("/v1/answer", undefined, {body: multipart});
        assert.equal(form.status, 415);
        // A body streamed past the limit without a content-length is cut off too.
        const chunked = await fetch(server.url + "/v1/answer", {method: "POST", duplex: "half",
            body: new ReadableStream({start(c) {
                c.enqueue(new TextEncoder().encode("{\"question\": \"" + "y".repeat(8000)));
                c.close();
            }})} as RequestInit);
        assert.equal(chunked.status, 413);
        const ok = await post("/v1/answer", {question: QUESTIONS[0], passages: CORPUS, ndocs: 3, maxNewTokens: 16});
        assert.equal(ok.status, 200);
        assert.equal(ok.json.answer, "Paris.");
    });

    it("close(): a request being answered still gets its answer; then connections are refused", async () => {
        const own = await SelfRagServer.listen({model, port: 0});
        const running = fetch(own.url + "/v1/answer", {method: "POST", body: JSON.stringify({question: QUESTIONS[0], passages: CORPUS, ndocs: 3,
            maxNewTokens: 24})});
        const deadline = Date.now() + 5000;
        // Close as soon as its batch has started (it takes tens of milliseconds to decode).
        while (own.scheduler.stats.batches === 0) {
            if (Date.now() > deadline) assert.fail("the request never started");
            await new Promise((resolve) => setTimeout(resolve, 1));
        }
        const url = own.url;
        await own.close();
        const answered = await running;
        assert.equal(answered.status, 200);
        assert.equal(((await answered.json()) as {answer: string}).answer, "Paris.");
        await assert.rejects(fetch(url + "/health"));
    });
});
