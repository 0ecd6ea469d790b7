// The request scheduler and the HTTP server on the fixture model: concurrent requests share
// batches and get exactly the answers they would get alone; a bad request fails alone; queue
// limits, aborts and shutdown; every kind of bad HTTP input gets a JSON error naming the problem
// and the server keeps answering.
import {rejectsWith, withoutPromptCache} from "../test-support/assertions.js";
import {generatedPassages, writeJsonl} from "../test-support/corpora.js";
import {tempDir, tinyModel} from "../test-support/fixtures.js";
import assert from "node:assert/strict";
import http from "node:http";
import type {AddressInfo} from "node:net";
import path from "node:path";
import {createHandler} from "../lib/serving/handler.js";
import type {Passage} from "../lib/selfrag/prompts.js";
import {RequestScheduler} from "../lib/serving/RequestScheduler.js";
import {longFormJson, shortFormJson} from "../lib/serving/responses.js";
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

    it("concurrent requests with different options share decode steps and get the answers each gets alone", async () => {
        const optionsOf = (i: number) => ({passages: CORPUS, ndocs: 3, maxNewTokens: 16 + 4 * i, threshold: 0.1 + 0.05 * i,
            weights: {utility: 0.5 + 0.1 * i}});
        const before = model.context.stats.decodeCalls;
        const alone: ShortFormAnswer[] = [];
        for (const [i, q] of QUESTIONS.entries()) alone.push(await model.answer(q, optionsOf(i)));
        const sequentialCalls = model.context.stats.decodeCalls - before;

        const scheduler = new RequestScheduler(model);
        const start = model.context.stats.decodeCalls;
        const together = await Promise.all(QUESTIONS.map((q, i) => scheduler.answer(q, optionsOf(i))));
        const scheduledCalls = model.context.stats.decodeCalls - start;
        assert.deepEqual({...scheduler.stats, meanQueueWaitMs: 0, meanTimeToFirstEventMs: 0}, {queued: 0, running: 0, admitted: 6, completed: 6,
            failed: 0, aborted: 0, timedOut: 0, rejected: 0, meanQueueWaitMs: 0, meanTimeToFirstEventMs: 0});
        together.forEach((answer, i) => {
            assert.equal(answer.answer, alone[i].answer, QUESTIONS[i]);
            assert.deepEqual(answer.candidates.map((c) => c.text), alone[i].candidates.map((c) => c.text));
            answer.candidates.forEach((c, j) => assert.ok(Math.abs(c.score - alone[i].candidates[j].score) < 1e-4));
        });
        // Six questions with six different option sets, two at a time (3 slots each of 6): about
        // half the decode calls of one by one (the tiny model's candidates are short, so prefill
        // steps weigh more than they would on a real model).
        assert.ok(scheduledCalls * 3 < sequentialCalls * 2, `${scheduledCalls} decode calls together vs ${sequentialCalls} one by one`);
        assert.equal(model.context.slots.inUse, 0);
        await scheduler.close();
    });

    it("short and long form run side by side", async () => {
        const scheduler = new RequestScheduler(model);
        const longOptions = {passages: CORPUS.slice(0, 2), beamWidth: 2, ndocs: 2, maxDepth: 2, maxNewTokens: 16};
        const [a, b, c] = await Promise.all([
            scheduler.answer(QUESTIONS[0], {passages: CORPUS, ndocs: 3, maxNewTokens: 16}),
            scheduler.answer(QUESTIONS[1], {passages: CORPUS, ndocs: 2, maxNewTokens: 16}),
            scheduler.answerLong(QUESTIONS[2], longOptions)
        ]);
        assert.equal(a.candidates.length, 3);
        assert.equal(b.candidates.length, 2);
        const cAlone = await model.answerLong(QUESTIONS[2], longOptions);
        assert.equal(c.answer, cAlone.answer);
        await scheduler.close();
    });

    it("a request that fails fails alone", async () => {
        const scheduler = new RequestScheduler(model);
        const options = {passages: CORPUS, ndocs: 3, maxNewTokens: 16};
        const tooLong = "word ".repeat(2000);
        const results = await Promise.allSettled([scheduler.answer(QUESTIONS[0], options), scheduler.answer(QUESTIONS[1], options),
            scheduler.answer(tooLong, options), scheduler.answer(QUESTIONS[2], options)]);
        assert.deepEqual(results.map((r) => r.status), ["fulfilled", "fulfilled", "rejected", "fulfilled"]);
        assert.equal((results[2] as PromiseRejectedResult).reason.code, "CONTEXT_OVERFLOW");
        assert.equal(scheduler.stats.failed, 1);
        const alone = await model.answer(QUESTIONS[2], options);
        assert.equal((results[3] as PromiseFulfilledResult<typeof alone>).value.answer, alone.answer);
        await scheduler.close();
    });

    it("queue limit, abort while waiting, timeout, and close", async () => {
        const scheduler = new RequestScheduler(model, {maxQueue: 2});
        const options = {passages: CORPUS, ndocs: 3, maxNewTokens: 24};
        // Six slots, three per question: two run, the rest wait for slots.
        const running = [scheduler.answer(QUESTIONS[0], options), scheduler.answer(QUESTIONS[0], options)];
        while (scheduler.stats.running < 2) await new Promise((resolve) => setImmediate(resolve));
        assert.equal(scheduler.stats.queued, 0);
        const abort = new AbortController();
        const aborted = scheduler.answer(QUESTIONS[1], options, {signal: abort.signal});
        const queued = scheduler.answer(QUESTIONS[2], options);
        await assert.rejects(scheduler.answer(QUESTIONS[3], options), rejectsWith("QUEUE_FULL", /maxQueue 2/));
        abort.abort();
        await assert.rejects(aborted, rejectsWith("ABORTED"));
        assert.equal(scheduler.stats.queued, 1);
        const closing = scheduler.close();
        await assert.rejects(queued, rejectsWith("SCHEDULER_CLOSED"));
        for (const r of running) assert.equal((await r).answer, "Paris.", "running requests finish");
        await closing;
        await assert.rejects(scheduler.answer(QUESTIONS[0], options), rejectsWith("SCHEDULER_CLOSED"));
        assert.equal(scheduler.stats.completed, 2, "neither the aborted nor the closed-out request ran");
        assert.equal(model.context.slots.inUse, 0);

        // A time limit counts the wait for slots: with every slot held, the request times out.
        const limited = new RequestScheduler(model, {timeoutMs: 30});
        const held = model.context.acquire(6);
        await assert.rejects(limited.answer(QUESTIONS[0], options), rejectsWith("TIMEOUT", /time limit of 30 ms/));
        await model.context.release(...held);
        assert.equal(limited.stats.timedOut, 1);
        await limited.close();
    });

    it("an abort mid-generation frees the request's slots while the others finish with their own answers", async () => {
        const scheduler = new RequestScheduler(model);
        const options = {passages: CORPUS, ndocs: 3, maxNewTokens: 32};
        const alone = await model.answer(QUESTIONS[1], options);
        const abort = new AbortController();
        let stepsAtAbort = -1;
        const victim = scheduler.answer(QUESTIONS[0], options, {signal: abort.signal, onEvent: (event) => {
            // The retrieval decision is out: its candidates are about to be generated.
            if (event.type === "retrieval") {
                stepsAtAbort = model.context.stats.steps;
                abort.abort();
            }
        }});
        const other = scheduler.answer(QUESTIONS[1], options);
        await assert.rejects(victim, rejectsWith("ABORTED"));
        assert.ok(stepsAtAbort > 0);
        assert.equal((await other).answer, alone.answer);
        await scheduler.close();
        assert.equal(model.context.slots.inUse, 0, "the aborted request's slots were given back");
        assert.equal(scheduler.stats.aborted, 1);
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
        const alone = await model.answer({id: "q1", question: QUESTIONS[0], passages: CORPUS}, {ndocs: 3, maxNewTokens: 24});
        assert.deepEqual(withoutPromptCache(res.json), withoutPromptCache(shortFormJson(alone)));

        const all = await Promise.all(QUESTIONS.map((q) => post("/v1/answer", {question: q, passages: CORPUS, ndocs: 3, maxNewTokens: 24})));
        assert.deepEqual(all.map((r) => r.status), QUESTIONS.map(() => 200));
        for (const [i, r] of all.entries()) {
            const one = await model.answer({question: QUESTIONS[i], passages: CORPUS}, {ndocs: 3, maxNewTokens: 24});
            assert.equal(r.json.answer, one.answer);
        }
        const stats = (await (await fetch(server.url + "/v1/stats")).json()) as {scheduler: {completed: number},
            engine: {sequences: number, activeSlots: number, decodeCalls: number, occupancy: number}};
        assert.equal(stats.engine.sequences, 6);
        assert.equal(stats.engine.activeSlots, 0);
        assert.ok(stats.engine.decodeCalls > 0 && stats.engine.occupancy > 0 && stats.engine.occupancy <= 1);
        assert.ok(stats.scheduler.completed >= 7);
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
        // The same question through the library: the same tree, segments, citations and counts.
        const aloneLong = await model.answerLong({question: QUESTIONS[0], passages: CORPUS.slice(0, 2)},
            {beamWidth: 2, ndocs: 2, maxDepth: 2, maxNewTokens: 16});
        assert.ok(aloneLong.segments.length > 0);
        assert.deepEqual(long.json, JSON.parse(JSON.stringify(longFormJson(aloneLong))));
        // ... and for a question without passages, retrieving from the index per segment.
        const retrievedLong = await post("/v1/answer", {question: "Tell me a bio of Paris, the capital of France.", long: true, beamWidth: 1,
            ndocs: 2, maxDepth: 3, maxNewTokens: 16});
        assert.equal(retrievedLong.status, 200);
        const aloneRetrieved = await model.answerLong("Tell me a bio of Paris, the capital of France.",
            {beamWidth: 1, ndocs: 2, maxDepth: 3, maxNewTokens: 16, retriever: index.asRetriever()});
        assert.deepEqual(retrievedLong.json, JSON.parse(JSON.stringify(longFormJson(aloneRetrieved))));
    });

    it("bad requests get a JSON error naming the problem, and the server goes on answering", async () => {
        const cases: [string, unknown, number, string, RegExp][] = [
            ["/v1/answer", "{not json", 400, "INVALID_JSON", /not valid JSON/],
            ["/v1/answer", "", 400, "INVALID_REQUEST", /empty/],
            ["/v1/answer", [1, 2], 400, "INVALID_REQUEST", /"body": expected a JSON object/],
            ["/v1/answer", {passages: CORPUS}, 400, "INVALID_ARGUMENT", /Expected a non-empty string for question but received nothing/],
            ["/v1/answer", {question: "q", ndocs: "5"}, 400, "INVALID_ARGUMENT", /Expected an integer between 1 and 1024 for ndocs but received "5" of type string/],
            ["/v1/answer", {question: "q", nDocs: 5}, 400, "INVALID_ARGUMENT", /unknown field "nDocs" \(did you mean "ndocs"\?\)/],
            ["/v1/answer", {question: "q", beamWidth: 2}, 400, "INVALID_ARGUMENT", /beamWidth is a long-form field: it needs "long": true/],
            ["/v1/answer", {question: "q", passages: [{title: "t"}]}, 400, "INVALID_ARGUMENT", /for passages\[0\]\.text/],
            ["/v1/answer", {question: "q", weights: {rel: 1}}, 400, "INVALID_ARGUMENT", /unknown field "weights\.rel"/],
            ["/v1/answer", {question: "q", mode: "sometimes"}, 400, "INVALID_ARGUMENT", /Expected "adaptive" \| "always" \| "never" for mode/],
            ["/v1/answer", {question: "q", passages: CORPUS, ndocs: 3, maxNewTokens: 500}, 422, "CONTEXT_OVERFLOW", /does not fit/],
            ["/v1/answer", {question: "x".repeat(5000)}, 413, "PAYLOAD_TOO_LARGE", /limit is 4096/],
            ["/v1/nothing", {}, 404, "NOT_FOUND", /no route \/v1\/nothing/],
            ["/v1/search", {query: ""}, 400, "INVALID_ARGUMENT", /for query/]
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
        // Close as soon as it holds its slots (it takes tens of milliseconds to decode).
        while (own.scheduler.stats.running === 0) {
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

describe("HTTP server: streaming, OpenAI compatibility, metrics, createHandler", () => {
    let model: SelfRagModel;
    let server: SelfRagServer;
    const body = {question: QUESTIONS[0], passages: CORPUS, ndocs: 3, maxNewTokens: 24};

    before(async () => {
        model = await SelfRagModel.load({modelPath: await tinyModel(), contextSize: 512, sequences: 6, gpu: false});
        server = await SelfRagServer.listen({model, port: 0});
    });
    after(async () => {
        await server?.close();
        await model?.dispose();
    });

    /** Reads a text/event-stream body into [event, data] pairs. */
    async function readEvents(res: Response): Promise<{event?: string, data: string}[]> {
        const text = await res.text();
        // Comment-only blocks (`: keep-alive`) are the transport's, not events.
        return text.split("\n\n").filter((block) => block.split("\n").some((l) => l !== "" && !l.startsWith(":"))).map((block) => {
            const event = /^event: (.*)$/m.exec(block)?.[1];
            const data = block.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
            return {event, data};
        });
    }

    it("\"stream\": true sends the decision, each scored candidate, then the plain response's body", async () => {
        const plain = await (await fetch(server.url + "/v1/answer", {method: "POST", body: JSON.stringify(body)})).json() as Record<string, any>;
        const res = await fetch(server.url + "/v1/answer", {method: "POST", body: JSON.stringify({...body, stream: true})});
        assert.equal(res.status, 200);
        assert.match(res.headers.get("content-type") ?? "", /^text\/event-stream/);
        const events = await readEvents(res);
        assert.deepEqual(events.map((e) => e.event), ["retrieval", "candidate", "candidate", "candidate", "answer"]);
        assert.deepEqual(JSON.parse(events[0].data).retrieve, plain.retrieve);
        const candidates = events.slice(1, 4).map((e) => JSON.parse(e.data));
        assert.deepEqual(candidates.map((c) => c.index).sort(), [0, 1, 2]);
        for (const c of candidates) {
            assert.equal(c.text, plain.candidates[c.index].text);
            assert.ok(Math.abs(c.critique.score - plain.candidates[c.index].score) < 1e-9);
        }
        assert.deepEqual(withoutPromptCache(JSON.parse(events[4].data)), withoutPromptCache(plain));

        const long = {question: QUESTIONS[0], passages: CORPUS.slice(0, 2), long: true, beamWidth: 2, ndocs: 2, maxDepth: 3, maxNewTokens: 16};
        const longPlain = await (await fetch(server.url + "/v1/answer", {method: "POST", body: JSON.stringify(long)})).json() as Record<string, any>;
        const longEvents = await readEvents(await fetch(server.url + "/v1/answer", {method: "POST", body: JSON.stringify({...long, stream: true})}));
        assert.equal(longEvents[0].event, "retrieval");
        assert.equal(longEvents.at(-1)!.event, "answer");
        const segments = longEvents.filter((e) => e.event === "segment").map((e) => JSON.parse(e.data));
        assert.equal(segments.length, longPlain.tree.length - 1, "one event per generated segment");
        for (const s of segments) assert.equal(s.text, longPlain.tree[s.node].text);
        assert.deepEqual(JSON.parse(longEvents.at(-1)!.data), longPlain);
    });

    it("a request that fails before streaming gets a plain JSON error", async () => {
        const res = await fetch(server.url + "/v1/answer", {method: "POST", body: JSON.stringify({...body, maxNewTokens: 600, stream: true})});
        assert.equal(res.status, 422);
        assert.equal((await res.json() as {error: {code: string}}).error.code, "CONTEXT_OVERFLOW");
        const bad = await fetch(server.url + "/v1/answer", {method: "POST", body: JSON.stringify({...body, stream: "yes"})});
        assert.equal(bad.status, 400);
    });

    it("a client that disconnects cancels its work and frees its slots", async () => {
        const abort = new AbortController();
        const res = await fetch(server.url + "/v1/answer", {method: "POST", signal: abort.signal,
            body: JSON.stringify({question: QUESTIONS[1], passages: CORPUS, ndocs: 3, maxNewTokens: 400, stream: true})});
        const reader = res.body!.getReader();
        await reader.read(); // the first event (the retrieval decision): the question holds its slots
        abort.abort();
        const deadline = Date.now() + 10_000;
        while (server.scheduler.stats.running + server.scheduler.stats.queued > 0 || model.context.slots.inUse > 0) {
            if (Date.now() > deadline) assert.fail("the disconnected request kept its slots");
            await new Promise((resolve) => setTimeout(resolve, 5));
        }
        assert.ok(server.scheduler.stats.aborted >= 1);
        const ok = await fetch(server.url + "/v1/answer", {method: "POST", body: JSON.stringify(body)});
        assert.equal(((await ok.json()) as {answer: string}).answer, "Paris.");
    });

    it("the OpenAI client answers through /v1/chat/completions, streamed and not", async () => {
        const {default: OpenAI} = await import("openai");
        const client = new OpenAI({baseURL: server.url + "/v1", apiKey: "unused", maxRetries: 0});
        const plain = await model.answer({question: QUESTIONS[0], passages: CORPUS}, {ndocs: 3, maxNewTokens: 24});
        // Self-RAG's settings travel in an extra body field the client passes through unchanged.
        const extra = {selfrag: {passages: CORPUS, ndocs: 3}} as object;
        const completion = await client.chat.completions.create({
            model: "selfrag", messages: [{role: "user", content: QUESTIONS[0]}], max_tokens: 24, ...extra
        });
        assert.equal(completion.object, "chat.completion");
        assert.equal(completion.choices[0].message.role, "assistant");
        assert.equal(completion.choices[0].message.content, plain.answer);
        assert.equal((completion as unknown as {selfrag: {best: number}}).selfrag.best, plain.best);
        // The answer's tokens; every candidate's are in selfrag.usage (84.server.openai).
        const answerTokens = plain.candidates[plain.best].tokens;
        assert.deepEqual(completion.usage, {prompt_tokens: plain.stats.promptTokens + plain.stats.passageTokens,
            completion_tokens: answerTokens, total_tokens: plain.stats.promptTokens + plain.stats.passageTokens + answerTokens});

        const stream = await client.chat.completions.create({
            model: "selfrag", messages: [{role: "system", content: ""}, {role: "user", content: [{type: "text", text: QUESTIONS[0]}]}],
            max_tokens: 24, stream: true, stream_options: {include_usage: true}, ...extra
        });
        let content = "";
        let finish: string | null = null;
        const progress: string[] = [];
        let usage = 0;
        for await (const chunk of stream) {
            assert.equal(chunk.object, "chat.completion.chunk");
            content += chunk.choices[0]?.delta?.content ?? "";
            finish = chunk.choices[0]?.finish_reason ?? finish;
            const extra = (chunk as unknown as {selfrag?: {type?: string}}).selfrag;
            if (extra?.type != null) progress.push(extra.type);
            if (chunk.usage != null) usage = chunk.usage.total_tokens;
        }
        assert.equal(content, plain.answer);
        assert.equal(finish, plain.candidates[plain.best].stopReason === "length" ? "length" : "stop");
        assert.deepEqual(progress, ["retrieval", "candidate", "candidate", "candidate"]);
        assert.ok(usage > 0);
        const models = await client.models.list();
        assert.equal(models.data.length, 1);
    });

    it("malformed OpenAI requests get OpenAI-shaped errors", async () => {
        const {default: OpenAI} = await import("openai");
        const client = new OpenAI({baseURL: server.url + "/v1", apiKey: "unused", maxRetries: 0});
        const cases: [unknown, string | null, RegExp][] = [
            [{model: "m", messages: []}, "messages", /non-empty array/],
            [{model: "m", messages: [{role: "assistant", content: "hi"}]}, "messages", /no user message/],
            [{model: "m", messages: [{role: "wizard", content: "hi"}]}, "messages[0].role", /role must be/],
            [{model: "m", messages: [{role: "user", content: "q"}], n: 2}, "n", /n = 1/],
            [{model: "m", messages: [{role: "user", content: "q"}], frobnicate: 1}, "frobnicate", /Unrecognized request argument/],
            [{model: "m", messages: [{role: "user", content: "q"}], selfrag: {ndocs: "x"}}, "selfrag.ndocs", /ndocs/],
            [{model: "m", messages: [{role: "user", content: [{type: "image_url", image_url: {url: "x"}}]}]}, "messages[0].content[0]", /text/]
        ];
        for (const [request, param, message] of cases) {
            const error = await client.chat.completions.create(request as never).then(() => undefined, (e: unknown) => e) as
                {status: number, error: {type: string, param: string | null, message: string}} | undefined;
            assert.ok(error != null, `${JSON.stringify(request)} was accepted`);
            assert.equal(error.status, 400);
            assert.equal(error.error.type, "invalid_request_error");
            assert.equal(error.error.param, param);
            assert.match(error.error.message, message);
        }
        const raw = await fetch(server.url + "/v1/chat/completions", {method: "POST", body: "{oops"});
        assert.equal(raw.status, 400);
        const json = await raw.json() as {error: {type: string, message: string}};
        assert.equal(json.error.type, "invalid_request_error");
        assert.match(json.error.message, /not valid JSON/);
    });

    it("GET /metrics is Prometheus text whose counters match /v1/stats", async () => {
        const res = await fetch(server.url + "/metrics");
        assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
        const text = await res.text();
        const value = (name: string) => Number(new RegExp(`^selfrag_${name} (\\S+)$`, "m").exec(text)?.[1]);
        const stats = await (await fetch(server.url + "/v1/stats")).json() as {engine: {decodeCalls: number, sequences: number}};
        assert.ok(value("decode_calls_total") > 0 && value("decode_calls_total") <= stats.engine.decodeCalls);
        assert.equal(value("slots"), stats.engine.sequences);
        assert.equal(value("slots_active"), 0);
        assert.ok(value("slot_occupancy") > 0 && value("slot_occupancy") <= 1);
        assert.match(text, /^selfrag_requests_total\{outcome="completed"\} \d+$/m);
        for (const line of text.split("\n").filter((l) => l !== "" && !l.startsWith("#"))) {
            assert.match(line, /^selfrag_[a-z_]+(\{[a-z]+="[a-z]+"\})? -?[\d.e+-]+$/, line);
        }
    });

    it("createHandler serves inside an existing node:http server and passes other paths on", async () => {
        // Long enough for the first request on a loaded machine; the second waits it out with every slot held.
        const handler = createHandler(model, {scheduler: {timeoutMs: 1500}});
        const app = http.createServer((req, res) => {
            if (req.url?.startsWith("/selfrag/")) {
                req.url = req.url.slice("/selfrag".length); // what Express' app.use("/selfrag", ...) does
                handler(req, res, () => res.writeHead(418).end("not mine"));
            } else {
                res.writeHead(200).end("the app's own page");
            }
        });
        await new Promise<void>((resolve) => app.listen(0, "127.0.0.1", resolve));
        const base = `http://127.0.0.1:${(app.address() as AddressInfo).port}`;
        try {
            const answered = await fetch(base + "/selfrag/v1/answer", {method: "POST", body: JSON.stringify(body)});
            assert.equal(((await answered.json()) as {answer: string}).answer, "Paris.");
            assert.equal(await (await fetch(base + "/")).text(), "the app's own page");
            assert.equal((await fetch(base + "/selfrag/elsewhere")).status, 418);
            // The handler's time limit: with every slot held, the request waits, then gets a 504.
            const held = model.context.acquire(6);
            const late = await fetch(base + "/selfrag/v1/answer", {method: "POST", body: JSON.stringify(body)});
            await model.context.release(...held);
            assert.equal(late.status, 504);
            assert.equal(((await late.json()) as {error: {code: string}}).error.code, "TIMEOUT");
        } finally {
            await handler.close();
            await new Promise((resolve) => app.close(resolve));
        }
    });
});
