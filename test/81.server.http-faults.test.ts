// HTTP abuse against a real `selfrag serve` process (the client in this process, the server in
// its own, as in production: some failures, like a reset that hides a 413 from Node's fetch, only
// show across processes): early rejections readable by fetch and raw sockets, malformed bodies,
// slow clients, a flood against a small queue, and aborts at random moments. After each, the
// server's own counters say every slot is back and it answers as before.
import assert from "node:assert/strict";
import http from "node:http";
import net from "node:net";
import {mulberry32} from "../test-support/random.js";
import {serve, type Served} from "../test-support/server.js";

const CORPUS = [
    {id: "b", title: "Berlin", text: "Berlin is the capital of Germany."},
    {id: "p", title: "Paris", text: "Paris is the capital and largest city of France. Paris"},
    {id: "r", title: "Rome", text: "Rome is the capital of Italy."}
];
const GOOD = {question: "What is the capital of France?", passages: CORPUS, ndocs: 3, maxNewTokens: 16};

async function stats(url: string) {
    return (await (await fetch(url + "/v1/stats")).json()) as {scheduler: {queued: number, running: number, rejected: number, aborted: number},
        engine: {activeSlots: number, pendingWork: number}};
}

/** Polls the server's counters until no request holds or waits for slots. */
async function drained(url: string): Promise<void> {
    const deadline = Date.now() + 60_000;
    for (;;) {
        const s = await stats(url);
        if (s.engine.activeSlots === 0 && s.scheduler.running === 0 && s.scheduler.queued === 0 && s.engine.pendingWork === 0) return;
        if (Date.now() > deadline) assert.fail(`the server kept busy: ${JSON.stringify(s)}`);
        await new Promise((resolve) => setTimeout(resolve, 20));
    }
}

async function answersParis(url: string): Promise<void> {
    const res = await fetch(url + "/v1/answer", {method: "POST", body: JSON.stringify(GOOD)});
    assert.equal(res.status, 200);
    assert.equal(((await res.json()) as {answer: string}).answer, "Paris.");
}

/** A raw HTTP/1.1 exchange: writes `head` and `body` parts, collects what the server sends until it closes. */
function rawExchange(port: number, head: string, parts: (Buffer | string)[], options: {end?: boolean, closeAfterAnswer?: boolean} = {}) {
    return new Promise<{received: string, closedByServer: boolean, error?: string}>((resolve) => {
        const socket = net.connect(port, "127.0.0.1");
        let received = "";
        let closedByClient = false;
        socket.on("data", (d) => {
            received += d.toString("latin1");
            if (options.closeAfterAnswer && /\r\n\r\n[\s\S]*\}\n$/.test(received)) {
                closedByClient = true;
                socket.destroy();
            }
        });
        socket.on("error", (e) => resolve({received, closedByServer: !closedByClient, error: (e as NodeJS.ErrnoException).code}));
        socket.on("close", () => resolve({received, closedByServer: !closedByClient}));
        socket.on("connect", () => {
            socket.write(head);
            for (const part of parts) socket.write(part);
            if (options.end) socket.end();
        });
    });
}

describe("HTTP faults (selfrag serve in its own process)", function () {
    this.timeout(300_000);
    let server: Served;
    before(async () => {
        server = await serve("--sequences", "6", "--context-size", "512", "--max-body", "4096", "--max-queue", "8",
            "--header-timeout", "1", "--body-timeout", "2");
    });
    after(async () => {
        await server?.stop();
        assert.doesNotMatch(server?.stderr() ?? "", /uncaught|FATAL|Segmentation|Aborted/i);
    });

    it("early rejections (413 by length and by stream, 404, 405, 415 with large bodies) are readable by Node's fetch", async () => {
        const big = JSON.stringify({question: "x".repeat(4 * 1024 * 1024)});
        const stream = () => new ReadableStream({start(c) {
            for (let i = 0; i < 64; i++) c.enqueue(new Uint8Array(65536).fill(120));
            c.close();
        }});
        const multipart = new FormData();
        multipart.set("file", new Blob([new Uint8Array(2 * 1024 * 1024)]), "big.bin");
        const cases: [string, string, RequestInit, number, string][] = [
            ["4 MB body with a content-length", "/v1/answer", {method: "POST", body: big}, 413, "PAYLOAD_TOO_LARGE"],
            ["4 MB streamed body, no content-length", "/v1/answer", {method: "POST", body: stream(), duplex: "half"} as RequestInit, 413, "PAYLOAD_TOO_LARGE"],
            ["4 MB body to an unknown route", "/v1/nothing", {method: "POST", body: big}, 404, "NOT_FOUND"],
            ["4 MB body to a GET route", "/health", {method: "POST", body: big}, 405, "METHOD_NOT_ALLOWED"],
            ["2 MB multipart upload", "/v1/answer", {method: "POST", body: multipart}, 415, "UNSUPPORTED_MEDIA_TYPE"]
        ];
        for (const [what, route, init, status, code] of cases) {
            for (let i = 0; i < 4; i++) {
                const fresh = what.includes("streamed") ? {...init, body: stream()} : init;
                const res = await fetch(server.url + route, fresh).catch((e: Error & {cause?: {code?: string}}) => {
                    throw new Error(`${what} (#${i}): fetch failed: ${e.message} ${e.cause?.code ?? ""}`);
                });
                assert.equal(res.status, status, what);
                assert.equal(res.headers.get("connection"), "close", what);
                assert.equal(((await res.json()) as {error: {code: string}}).error.code, code, what);
            }
        }
        await answersParis(server.url);
    });

    it("a raw client that stops sending part-way gets its 413; the server closes the connection itself", async () => {
        const head = "POST /v1/answer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n\r\n";
        // curl-style: sends part of the body, reads the answer, closes.
        const early = await rawExchange(server.port, head, [Buffer.alloc(100_000, 120)], {closeAfterAnswer: true});
        assert.match(early.received, /^HTTP\/1\.1 413 /);
        assert.match(early.received, /"code":"PAYLOAD_TOO_LARGE"/);
        // Stalls with the connection open: the answer is there, and the server closes after its body timeout.
        const stalled = await rawExchange(server.port, head, [Buffer.alloc(50_000, 120)]);
        assert.match(stalled.received, /^HTTP\/1\.1 413 [\s\S]*Connection: close[\s\S]*"code":"PAYLOAD_TOO_LARGE"/i);
        assert.ok(stalled.closedByServer);
        // A declared length far past the drain limit: the answer is written before the reset.
        const huge = "POST /v1/answer HTTP/1.1\r\nHost: x\r\nContent-Length: 900000000\r\n\r\n";
        const flood = await rawExchange(server.port, huge, Array.from({length: 4}, () => Buffer.alloc(1 << 20, 120)), {closeAfterAnswer: true});
        assert.match(flood.received, /^HTTP\/1\.1 413 /);
        await answersParis(server.url);
        await drained(server.url);
    });

    it("slow loris: headers or a body trickled in get 408 and a closed connection at the time limits; others are answered meanwhile", async () => {
        const slowHeaders = new Promise<string>((resolve) => {
            const socket = net.connect(server.port, "127.0.0.1");
            let received = "";
            const text = "POST /v1/answer HTTP/1.1\r\nHost: x\r\nX-Slow: " + "y".repeat(200);
            let i = 0;
            const timer = setInterval(() => {
                if (!socket.destroyed && i < text.length) socket.write(text[i++]);
            }, 50);
            socket.on("data", (d) => void (received += d.toString()));
            socket.on("error", () => undefined);
            socket.on("close", () => {
                clearInterval(timer);
                resolve(received);
            });
        });
        const slowBody = new Promise<string>((resolve) => {
            const socket = net.connect(server.port, "127.0.0.1");
            let received = "";
            const body = JSON.stringify(GOOD);
            let timer: NodeJS.Timeout | undefined;
            socket.on("connect", () => {
                socket.write(`POST /v1/answer HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n`);
                let i = 0;
                timer = setInterval(() => {
                    if (!socket.destroyed && i < body.length) socket.write(body[i++]);
                }, 100);
            });
            socket.on("data", (d) => void (received += d.toString()));
            socket.on("error", () => undefined);
            socket.on("close", () => {
                clearInterval(timer);
                resolve(received);
            });
        });
        // While both trickle, a normal client is served.
        await answersParis(server.url);
        const [headersAnswer, bodyAnswer] = await Promise.all([slowHeaders, slowBody]);
        assert.match(headersAnswer, /^HTTP\/1\.1 408 /);
        assert.match(bodyAnswer, /^HTTP\/1\.1 408 /);
        await drained(server.url);
        await answersParis(server.url);
    });

    it("malformed, mistyped and hostile JSON bodies get a 400 naming the problem", async () => {
        const deep = "[".repeat(1500) + "]".repeat(1500);
        const cases: [string, string, RegExp][] = [
            ["{\"question\": \"q\",}", "INVALID_JSON", /not valid JSON/],
            ["\u0000\u0001\u0002", "INVALID_JSON", /not valid JSON/],
            ["\"just a string\"", "INVALID_REQUEST", /expected a JSON object/],
            ["null", "INVALID_REQUEST", /expected a JSON object/],
            [deep, "INVALID_REQUEST", /expected a JSON object/],
            [JSON.stringify({question: "q", passages: CORPUS, ndocs: 1e308}), "INVALID_ARGUMENT", /for ndocs/],
            [JSON.stringify({question: "q", passages: CORPUS, threshold: "0.5"}), "INVALID_ARGUMENT", /for threshold/],
            [JSON.stringify({question: ["q"]}), "INVALID_ARGUMENT", /for question/],
            [JSON.stringify({question: "q", passages: [{title: 1, text: "t"}]}), "INVALID_ARGUMENT", /passages\[0\]\.title/],
            [JSON.stringify({question: "q", passages: CORPUS, weights: {relevance: "high"}}), "INVALID_ARGUMENT", /weights\.relevance/],
            ["{\"question\": \"q\", \"__proto__\": {\"polluted\": true}}", "INVALID_ARGUMENT", /unknown field "__proto__"/],
            [JSON.stringify({question: "q", constructor: {prototype: {x: 1}}}), "INVALID_ARGUMENT", /unknown field "constructor"/],
            [JSON.stringify({question: "q", long: "yes"}), "INVALID_ARGUMENT", /for long/],
            [JSON.stringify({question: "q", passages: CORPUS, stream: 1}), "INVALID_ARGUMENT", /for stream/]
        ];
        for (const [body, code, message] of cases) {
            const res = await fetch(server.url + "/v1/answer", {method: "POST", body});
            const json = (await res.json()) as {error: {code: string, message: string}};
            assert.equal(res.status, 400, `${body.slice(0, 60)}: ${JSON.stringify(json)}`);
            assert.equal(json.error.code, code, `${body.slice(0, 60)}: ${JSON.stringify(json)}`);
            assert.match(json.error.message, message, `${body.slice(0, 60)}: ${JSON.stringify(json)}`);
        }
        assert.equal(({} as {polluted?: boolean}).polluted, undefined);
        await answersParis(server.url);
    });

    it("1,000 concurrent connections against --max-queue 8: 200 or 503 QUEUE_FULL with Retry-After, nothing else, no crash", async () => {
        // Default header and body time limits: under this flood a request may wait seconds to be read.
        const flooded = await serve("--sequences", "6", "--context-size", "512", "--max-queue", "8");
        try {
            await flood(flooded);
        } finally {
            await flooded.stop();
        }
    });

    async function flood(server: Served): Promise<void> {
        const body = JSON.stringify({...GOOD, ndocs: 1, passages: [CORPUS[1]]});
        const results = await Promise.all(Array.from({length: 1000}, () => new Promise<{status: number, retry?: string, answer?: string, code?: string}>((resolve, reject) => {
            const req = http.request(server.url + "/v1/answer", {method: "POST", agent: false, headers: {"Content-Type": "application/json"}}, (res) => {
                let text = "";
                res.on("data", (d: Buffer) => void (text += d.toString()));
                res.on("end", () => {
                    const json = JSON.parse(text) as {answer?: string, error?: {code: string}};
                    resolve({status: res.statusCode!, retry: res.headers["retry-after"] as string | undefined, answer: json.answer, code: json.error?.code});
                });
            });
            req.on("error", reject);
            req.end(body);
        })));
        const byStatus = new Map<number, number>();
        for (const r of results) byStatus.set(r.status, (byStatus.get(r.status) ?? 0) + 1);
        assert.deepEqual([...byStatus.keys()].filter((s) => s !== 200 && s !== 503), [], `statuses: ${JSON.stringify([...byStatus])}`);
        assert.ok((byStatus.get(503) ?? 0) > 0, "the queue limit was reached");
        assert.ok((byStatus.get(200) ?? 0) >= 8, "requests within the limit were answered");
        for (const r of results) {
            if (r.status === 200) assert.equal(r.answer, "Paris.");
            else assert.deepEqual([r.code, r.retry], ["QUEUE_FULL", "1"]);
        }
        await drained(server.url);
        assert.ok((await stats(server.url)).scheduler.rejected >= byStatus.get(503)!);
        await answersParis(server.url);
    }

    it("requests aborted at random moments (waiting, prefilling, generating, streaming) leave every slot free", async () => {
        const rng = mulberry32(27);
        const kinds = [
            {...GOOD},
            {...GOOD, stream: true},
            {question: GOOD.question, passages: CORPUS.slice(0, 2), long: true, beamWidth: 2, ndocs: 2, maxDepth: 3, maxNewTokens: 16},
            {question: GOOD.question, passages: CORPUS.slice(0, 2), long: true, beamWidth: 2, ndocs: 2, maxDepth: 3, maxNewTokens: 16, stream: true}
        ];
        const outcomes = await Promise.all(Array.from({length: 60}, async (_, i) => {
            const abort = new AbortController();
            const delay = Math.floor(rng() * 150);
            setTimeout(() => abort.abort(), delay);
            try {
                const res = await fetch(server.url + "/v1/answer", {method: "POST", body: JSON.stringify(kinds[i % kinds.length]), signal: abort.signal});
                await res.text();
                return `status ${res.status}`;
            } catch (error) {
                return (error as Error).name;
            }
        }));
        assert.ok(outcomes.every((o) => o === "AbortError" || o === "status 200" || o === "status 503"), JSON.stringify(outcomes));
        assert.ok(outcomes.some((o) => o === "AbortError"));
        await drained(server.url);
        await answersParis(server.url);
    });
});
