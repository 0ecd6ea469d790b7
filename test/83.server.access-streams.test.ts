// What a client meets at the server's door and on its streams: the body's media type (JSON
// whatever the declared type, 415 for a form or other type that is not JSON), /v1/search without
// an index (501 NO_INDEX, not a missing route), a long-form field without "long", the API key
// (401 in each route's shape, the official openai client's apiKey, createHandler's option, the
// CLI's flags and warning), admission that counts only requests waiting for slots (real
// concurrent streams against `selfrag serve --max-queue 2`), and the event streams' transport:
// keep-alive comments while a request waits, ids with a final one, a reconnect after the end
// answered 204, and the error event named `selfrag-error`.
import assert from "node:assert/strict";
import fs from "node:fs";
import http from "node:http";
import type {AddressInfo} from "node:net";
import path from "node:path";
import {tempDir, tinyModel} from "../test-support/fixtures.js";
import {serve} from "../test-support/server.js";
import type {PassageIndex} from "../lib/retrieval/PassageIndex.js";
import type {Passage} from "../lib/selfrag/prompts.js";
import {createHandler} from "../lib/serving/handler.js";
import {SelfRagModel} from "../lib/SelfRagModel.js";
import {SelfRagServer} from "../lib/serving/SelfRagServer.js";

const CORPUS: Passage[] = [
    {id: "b", title: "Berlin", text: "Berlin is the capital of Germany."},
    {id: "p", title: "Paris", text: "Paris is the capital and largest city of France. Paris"},
    {id: "r", title: "Rome", text: "Rome is the capital of Italy."}
];
const GOOD = {question: "What is the capital of France?", passages: CORPUS, ndocs: 3, maxNewTokens: 16};
const KEY = "sk-test-0123456789abcdef";

type Json = Record<string, any>;

/** A stream read as it arrives: chunks with the time each came, and the whole text. */
async function readStream(res: Response, onChunk?: (text: string) => void): Promise<{text: string, firstChunkMs: number}> {
    const started = performance.now();
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let text = "";
    let firstChunkMs = -1;
    for (;;) {
        const {done, value} = await reader.read();
        if (done) break;
        if (firstChunkMs < 0) firstChunkMs = performance.now() - started;
        text += decoder.decode(value, {stream: true});
        onChunk?.(text);
    }
    return {text, firstChunkMs};
}

/** The blocks of an event stream: their fields (`id`, `event`, `data`, `retry`) or the comment. */
function blocks(text: string): {id?: string, event?: string, data?: string, retry?: string, comment?: string}[] {
    return text.split("\n\n").filter((b) => b !== "").map((b) => {
        const out: Record<string, string> = {};
        for (const line of b.split("\n")) {
            if (line.startsWith(":")) out.comment = line.slice(1).trim();
            else {
                const at = line.indexOf(": ");
                out[line.slice(0, at)] = line.slice(at + 2);
            }
        }
        return out;
    });
}

describe("server: media types, NO_INDEX, long-form fields, API key, event streams", function () {
    this.timeout(300_000);
    let model: SelfRagModel;
    let open: SelfRagServer;
    let locked: SelfRagServer;
    before(async () => {
        model = await SelfRagModel.load({modelPath: await tinyModel(), contextSize: 512, sequences: 6, gpu: false});
        open = await SelfRagServer.listen({model, port: 0, streamKeepAliveMs: 100, scheduler: {maxQueue: 1}});
        locked = await SelfRagServer.listen({model, port: 0, apiKey: KEY});
    });
    after(async () => {
        await open?.close();
        await locked?.close();
        await model?.dispose();
    });
    /** Without a content-type header the body goes as bytes (fetch labels a string text/plain). */
    const post = async (url: string, route: string, body: string, headers: Record<string, string> = {}) => {
        const res = await fetch(url + route, {method: "POST", body: headers["content-type"] != null ? body : new TextEncoder().encode(body), headers});
        return {status: res.status, headers: res.headers, json: await res.json() as Json};
    };

    it("reads JSON whatever the declared type (curl -d sends a form type); a form or other type that is not JSON is 415, bad JSON 400", async () => {
        const json = JSON.stringify(GOOD);
        for (const type of [undefined, "application/json", "application/json; charset=utf-8", "text/plain", "application/x-www-form-urlencoded",
            "application/octet-stream"]) {
            const r = await post(open.url, "/v1/answer", json, type != null ? {"content-type": type} : {});
            assert.equal(r.status, 200, `${type}: ${JSON.stringify(r.json)}`);
            assert.equal(r.json.answer, "Paris.");
        }
        const cases: [string, string | undefined, number, string][] = [
            ["question=Who+wrote+Carmen%3F", "application/x-www-form-urlencoded", 415, "UNSUPPORTED_MEDIA_TYPE"],

            ["<question>Who?</question>", "application/xml", 415, "UNSUPPORTED_MEDIA_TYPE"],
            ["{}", "multipart/form-data; boundary=x", 415, "UNSUPPORTED_MEDIA_TYPE"],
            // Declared JSON, undeclared, or a body that starts as JSON: a parse error is the client's JSON.
            ["question=Who", "application/json", 400, "INVALID_JSON"],
            ["question=Who", undefined, 400, "INVALID_JSON"],
            ["Who wrote Carmen?", "text/plain", 400, "INVALID_JSON"], // fetch's label for a string body
            ["{\"question\": ", "application/x-www-form-urlencoded", 400, "INVALID_JSON"]
        ];
        for (const [body, type, status, code] of cases) {
            const r = await post(open.url, "/v1/answer", body, type != null ? {"content-type": type} : {});
            assert.equal(r.status, status, `${type} ${body}: ${JSON.stringify(r.json)}`);
            assert.equal(r.json.error.code, code);
            if (status === 415) assert.match(r.json.error.message, /application\/json/);
        }
    });

    it("/v1/search on a server without an index is 501 NO_INDEX saying to start it with --index, not a missing route", async () => {
        const r = await post(open.url, "/v1/search", JSON.stringify({query: "Paris"}));
        assert.equal(r.status, 501);
        assert.equal(r.json.error.code, "NO_INDEX");
        assert.match(r.json.error.message, /--index DIR/);
        assert.equal((await post(open.url, "/v1/nothing", "{}")).json.error.code, "NOT_FOUND");
    });

    it("a long-form field without \"long\": true says it needs it; an unknown field's known list includes stream", async () => {
        const r = await post(open.url, "/v1/answer", JSON.stringify({question: "Who?", beamWidth: 3}));
        assert.equal(r.status, 400);
        assert.equal(r.json.error.code, "INVALID_ARGUMENT");
        assert.match(r.json.error.message, /beamWidth is a long-form field: it needs "long": true/);
        const unknown = await post(open.url, "/v1/answer", JSON.stringify({question: "Who?", frobnicate: 1}));
        assert.equal(unknown.json.error.code, "INVALID_ARGUMENT");
        const known = /\(known: (.*)\)/.exec(unknown.json.error.message)?.[1].split(", ");
        assert.ok(known?.includes("stream") && known.includes("long") && known.includes("beamWidth"), unknown.json.error.message);
    });

    it("with an API key every route but /health needs the bearer key: 401 in the route's shape, WWW-Authenticate, the key never echoed", async () => {
        assert.equal((await fetch(locked.url + "/health")).status, 200);
        const auth = (key: string) => ({authorization: `Bearer ${key}`});
        for (const headers of [{}, auth("sk-wrong"), auth(KEY + "x"), {authorization: KEY}, {authorization: `Basic ${KEY}`}] as Record<string, string>[]) {
            const r = await post(locked.url, "/v1/answer", JSON.stringify(GOOD), headers);
            assert.equal(r.status, 401, JSON.stringify(headers));
            assert.match(r.headers.get("www-authenticate") ?? "", /^Bearer\b/);
            assert.equal(r.json.error.code, "UNAUTHORIZED");
            assert.match(r.json.error.message, /Authorization: Bearer KEY/);
            assert.ok(!JSON.stringify(r.json).includes(KEY), "the key is never in an answer");
        }
        const ok = await post(locked.url, "/v1/answer", JSON.stringify(GOOD), auth(KEY));
        assert.equal(ok.json.answer, "Paris.");
        assert.equal((await post(locked.url, "/v1/answer", JSON.stringify(GOOD), {authorization: `bearer  ${KEY} `})).status, 200, "scheme case-insensitive");
        // Every other route, GET ones and unknown paths included (no probing without the key).
        for (const route of ["/v1/stats", "/metrics", "/v1/nothing"]) assert.equal((await fetch(locked.url + route)).status, 401, route);
        assert.equal((await fetch(locked.url + "/v1/nothing", {headers: auth(KEY)})).status, 404);
        assert.equal((await fetch(locked.url + "/v1/stats", {headers: auth(KEY)})).status, 200);
        // OpenAI's shape on its routes.
        for (const [route, init] of [["/v1/models", {}], ["/v1/chat/completions", {method: "POST", body: "{}"}]] as const) {
            const res = await fetch(locked.url + route, init);
            assert.equal(res.status, 401);
            assert.deepEqual(((await res.json()) as Json).error, {message: "this server needs an API key: send \"Authorization: Bearer KEY\"",
                type: "authentication_error", param: null, code: "unauthorized"});
        }
        // A large body without the key: refused before it is read, and still readable by fetch.
        const big = await fetch(locked.url + "/v1/answer", {method: "POST", body: "x".repeat(8 << 20)});
        assert.equal(big.status, 401);
    });

    it("the official openai client's apiKey opens the server, streamed and not; a wrong key is its AuthenticationError", async () => {
        const {default: OpenAI} = await import("openai");
        const request = {model: "selfrag", messages: [{role: "user" as const, content: GOOD.question}], max_tokens: 16,
            ...{selfrag: {passages: CORPUS, ndocs: 3}} as object};
        const client = new OpenAI({baseURL: locked.url + "/v1", apiKey: KEY, maxRetries: 0});
        assert.equal((await client.models.list()).data.length, 1);
        assert.equal((await client.chat.completions.create(request)).choices[0].message.content, "Paris.");
        let content = "";
        for await (const chunk of await client.chat.completions.create({...request, stream: true})) content += chunk.choices[0]?.delta?.content ?? "";
        assert.equal(content, "Paris.");
        const wrong = new OpenAI({baseURL: locked.url + "/v1", apiKey: "sk-wrong", maxRetries: 0});
        const error = await wrong.chat.completions.create(request).then(() => undefined, (e: unknown) => e);
        assert.ok(error instanceof OpenAI.AuthenticationError, String(error));
        assert.equal(error.status, 401);
    });

    it("createHandler takes the same apiKey; paths it does not serve pass on without it; a bad key is refused without showing it", async () => {
        const handler = createHandler(model, {apiKey: KEY});
        const app = http.createServer((req, res) => handler(req, res, () => res.writeHead(200).end("the app's own page")));
        await new Promise<void>((resolve) => app.listen(0, "127.0.0.1", resolve));
        const base = `http://127.0.0.1:${(app.address() as AddressInfo).port}`;
        try {
            assert.equal(await (await fetch(base + "/elsewhere")).text(), "the app's own page");
            assert.equal((await fetch(base + "/v1/models")).status, 401);
            assert.equal((await fetch(base + "/v1/models", {headers: {authorization: `Bearer ${KEY}`}})).status, 200);
        } finally {
            await handler.close();
            await new Promise((resolve) => app.close(resolve));
        }
        for (const bad of ["", "my key", "k\u00e9y"]) {
            assert.throws(() => createHandler(model, {apiKey: bad}), (e: Error & {code?: string}) =>
                e.code === "INVALID_ARGUMENT" && /apiKey/.test(e.message) && (bad === "" || !e.message.includes(bad)));
        }
    });

    it("a stream opens when admitted: keep-alive comments while it waits for slots, then events with ids, the last `id: end` with a long retry", async () => {
        const held = model.context.acquire(6);
        let released = false;
        const res = await fetch(open.url + "/v1/answer", {method: "POST", body: JSON.stringify({...GOOD, stream: true})});
        assert.equal(res.status, 200, "open while it waits for slots");
        const read = readStream(res, (text) => {
            // Several keep-alive comments (100 ms apart) while every slot is held: then the slots come free.
            if (!released && (text.match(/^: keep-alive$/gm) ?? []).length >= 3) {
                released = true;
                void model.context.release(...held);
            }
        });
        const {text, firstChunkMs} = await read;
        assert.ok(released, "keep-alive comments arrived while waiting");
        assert.ok(firstChunkMs < 1000, `first bytes after ${firstChunkMs} ms`);
        const events = blocks(text).filter((b) => b.comment == null);
        assert.deepEqual(events.map((e) => e.event), ["retrieval", "candidate", "candidate", "candidate", "answer"]);
        assert.deepEqual(events.map((e) => e.id), ["1", "2", "3", "4", "end"]);
        assert.equal(events.at(-1)!.retry, String(24 * 60 * 60 * 1000));
        assert.equal(JSON.parse(events.at(-1)!.data!).answer, "Paris.");
    });

    it("a client that reconnects after the final event (Last-Event-ID: end) gets 204 at once; the work is not done again", async () => {
        const admitted = open.scheduler.stats.admitted;
        const started = performance.now();
        const res = await fetch(open.url + "/v1/answer", {method: "POST", body: JSON.stringify({...GOOD, stream: true}),
            headers: {"last-event-id": "end", "accept": "text/event-stream"}});
        assert.equal(res.status, 204);
        assert.equal(await res.text(), "");
        assert.ok(performance.now() - started < 1000);
        assert.equal(open.scheduler.stats.admitted, admitted, "nothing ran");
        // A reconnect mid-stream (its request was cancelled when the connection dropped) runs again.
        const again = await fetch(open.url + "/v1/answer", {method: "POST", body: JSON.stringify({...GOOD, stream: true}),
            headers: {"last-event-id": "2"}});
        assert.equal(blocks(await again.text()).filter((b) => b.event === "answer").length, 1);
    });

    it("an error once the stream is open is `event: selfrag-error` with the final id; refusals before admission keep their status", async () => {
        const limited = await SelfRagServer.listen({model, port: 0, streamKeepAliveMs: 50, scheduler: {timeoutMs: 1500, maxQueue: 1}});
        const held = model.context.acquire(6);
        try {
            const waiting = fetch(limited.url + "/v1/answer", {method: "POST", body: JSON.stringify({...GOOD, stream: true})});
            const first = await waiting;
            // The queue (1) is full now: the next stream is refused with its status, not a 200 stream.
            const refused = await fetch(limited.url + "/v1/answer", {method: "POST", body: JSON.stringify({...GOOD, stream: true})});
            assert.equal(refused.status, 503);
            assert.equal(((await refused.json()) as Json).error.code, "QUEUE_FULL");
            assert.equal(first.status, 200);
            const events = blocks(await first.text()).filter((b) => b.comment == null);
            assert.deepEqual(events.map((e) => [e.event, e.id]), [["selfrag-error", "end"]]);
            assert.equal(JSON.parse(events[0].data!).error.code, "TIMEOUT");
        } finally {
            await model.context.release(...held);
            await limited.close();
        }
    });

    it("--max-queue 2 with 6 free slots: of 24 concurrent streams, those the free slots serve are never refused while they retrieve", async () => {
        // An index whose search takes a while (a GGUF embedder, a large index): admitted requests
        // spend that time before they reach the slot pool, and are not waiting for slots meanwhile.
        const slowIndex = {size: CORPUS.length, searchMode: {mode: "exact"}, asRetriever: () => async (_query: string, k: number) => {
            await new Promise((resolve) => setTimeout(resolve, 400));
            return CORPUS.slice(1, 1 + k);
        }} as unknown as PassageIndex;
        const server = await SelfRagServer.listen({model, index: slowIndex, port: 0, scheduler: {maxQueue: 2}});
        try {
            const body = JSON.stringify({question: GOOD.question, ndocs: 1, maxNewTokens: 8, mode: "always", stream: true});
            const results = await Promise.all(Array.from({length: 24}, async () => {
                const res = await fetch(server.url + "/v1/answer", {method: "POST", body});
                if (res.status !== 200) return {status: res.status, code: ((await res.json()) as Json).error.code as string};
                return {status: 200, answered: /^event: answer$/m.test(await res.text())};
            }));
            const refused = results.filter((r) => r.status !== 200);
            assert.ok(refused.every((r) => r.status === 503 && r.code === "QUEUE_FULL"), JSON.stringify(refused));
            const answered = results.filter((r) => r.status === 200 && r.answered).length;
            // One slot each: six are served by the free slots, two may wait; 2 admitted before the fix.
            assert.ok(answered >= 8, `only ${answered} of 24 were answered (${refused.length} refused)`);
            assert.equal(answered + refused.length, 24);
            assert.equal(server.scheduler.stats.rejected, refused.length);
        } finally {
            await server.close();
        }
    });

    it("OpenAI streams share the mechanism: the role chunk at admission and keep-alive comments while waiting", async () => {
        const held = model.context.acquire(6);
        const started = performance.now();
        const res = await fetch(open.url + "/v1/chat/completions", {method: "POST", body: JSON.stringify({
            model: "selfrag", stream: true, max_tokens: 16, messages: [{role: "user", content: GOOD.question}], selfrag: {passages: CORPUS, ndocs: 3}})});
        assert.equal(res.status, 200);
        let released = false;
        let roleAtMs = -1;
        const {text} = await readStream(res, (sofar) => {
            if (roleAtMs < 0 && sofar.includes("\"role\":\"assistant\"")) roleAtMs = performance.now() - started;
            if (!released && (sofar.match(/^: keep-alive$/gm) ?? []).length >= 2) {
                released = true;
                void model.context.release(...held);
            }
        });
        assert.ok(released && roleAtMs >= 0 && roleAtMs < 1000, `role chunk at ${roleAtMs} ms`);
        assert.match(text, /"content":"Paris\."/);
        assert.match(text, /data: \[DONE\]\n\n$/);
    });
});

describe("selfrag serve: --api-key and its warning", function () {
    this.timeout(300_000);
    it("--api-key, --api-key-file and SELFRAG_API_KEY protect every route but /health; beyond loopback without a key it warns", async () => {
        const keyFile = path.join(tempDir, "api-key.txt");
        fs.writeFileSync(keyFile, `${KEY}\n`);
        const check = async (url: string) => {
            assert.equal((await fetch(url + "/health")).status, 200);
            assert.equal((await fetch(url + "/v1/stats")).status, 401);
            assert.equal((await fetch(url + "/v1/stats", {headers: {authorization: `Bearer ${KEY}`}})).status, 200);
        };
        for (const setup of [["--api-key", KEY], ["--api-key-file", keyFile], "env"] as const) {
            if (setup === "env") process.env.SELFRAG_API_KEY = KEY;
            try {
                const server = await serve("--sequences", "2", "--context-size", "256", "--host", "0.0.0.0", ...(setup === "env" ? [] : setup));
                try {
                    await check(server.url.replace("0.0.0.0", "127.0.0.1"));
                } finally {
                    await server.stop();
                }
                assert.doesNotMatch(server.stderr(), /warning/, "a key is set: no warning");
                assert.ok(!server.stderr().includes(KEY), "the key is not logged");
            } finally {
                delete process.env.SELFRAG_API_KEY;
            }
        }
        const bare = await serve("--sequences", "2", "--context-size", "256", "--host", "0.0.0.0");
        await bare.stop();
        assert.match(bare.stderr(), /warning: listening on 0\.0\.0\.0 without an API key/);
        const local = await serve("--sequences", "2", "--context-size", "256");
        await local.stop();
        assert.doesNotMatch(local.stderr(), /warning/, "loopback: no warning");
    });
});
