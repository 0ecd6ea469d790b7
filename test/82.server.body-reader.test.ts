// The server's request and stream plumbing without a model: readJson's limits and refusals, the
// lingering close that lets a client still sending read an early 413, and the lazily opened event
// stream (an error before the first event is a plain error; after it, an event).
import assert from "node:assert/strict";
import http from "node:http";
import type {AddressInfo} from "node:net";
import {SelfRagError} from "../lib/errors.js";
import {answerThenDrain, readJson} from "../lib/serving/bodyReader.js";
import {streamLazily} from "../lib/serving/EventStream.js";
import {asSelfRagError, send} from "../lib/serving/replies.js";

/** A loopback server running `handle` for every request; its URL. */
async function listen(handle: (req: http.IncomingMessage, res: http.ServerResponse) => Promise<void>): Promise<{url: string, close: () => Promise<void>}> {
    const server = http.createServer((req, res) => void handle(req, res));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return {
        url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        close: () => new Promise((resolve) => {
            server.closeAllConnections();
            server.close(() => resolve());
        })
    };
}

describe("serving: body reader", () => {
    const LIMIT = 64;
    let server: Awaited<ReturnType<typeof listen>>;
    before(async () => {
        // Echoes the JSON read, or answers the error as the handler does (lingering close if unread).
        server = await listen(async (req, res) => {
            try {
                send(res, 200, {body: await readJson(req, LIMIT)});
            } catch (error) {
                const e = asSelfRagError(error);
                const body = {error: {code: e.code}};
                if (!req.complete && !req.readableEnded) answerThenDrain(req, res, 413, body, {maxBytes: 1 << 20, timeoutMs: 5_000});
                else send(res, 400, body);
            }
        });
    });
    after(() => server.close());

    const post = async (body: string, headers: Record<string, string> = {}) => {
        const res = await fetch(server.url, {method: "POST", body, headers});
        return {status: res.status, json: await res.json() as {body?: unknown, error?: {code: string}}};
    };

    it("reads JSON of any content type but multipart; a non-JSON body of another type is 415; empty and malformed bodies by code", async () => {
        assert.deepEqual(await post("{\"a\": [1, 2]}", {"content-type": "application/x-www-form-urlencoded"}), {status: 200, json: {body: {a: [1, 2]}}});
        assert.equal((await post("a=1&b=2", {"content-type": "application/x-www-form-urlencoded"})).json.error?.code, "UNSUPPORTED_MEDIA_TYPE");
        assert.equal((await post("a=1", {"content-type": "application/json"})).json.error?.code, "INVALID_JSON");
        assert.equal((await post("  ")).json.error?.code, "INVALID_REQUEST");
        assert.equal((await post("{\"a\": ")).json.error?.code, "INVALID_JSON");
        assert.equal((await post("{}", {"content-type": "multipart/form-data; boundary=x"})).json.error?.code, "UNSUPPORTED_MEDIA_TYPE");
    });

    it("refuses a body over the limit, declared or streamed, and the client sending it still reads the 413", async () => {
        const declared = await post("x".repeat(LIMIT + 1));
        assert.deepEqual(declared, {status: 413, json: {error: {code: "PAYLOAD_TOO_LARGE"}}});
        // No Content-Length: the limit is found while reading; the rest (1 MiB) is drained, not buffered.
        const chunks = new ReadableStream<Uint8Array>({
            start(controller) {
                for (let i = 0; i < 16; i++) controller.enqueue(new Uint8Array(64 * 1024).fill(0x20));
                controller.close();
            }
        });
        const res = await fetch(server.url, {method: "POST", body: chunks, duplex: "half"} as RequestInit);
        assert.equal(res.status, 413);
        assert.equal(res.headers.get("connection"), "close");
        assert.deepEqual(await res.json(), {error: {code: "PAYLOAD_TOO_LARGE"}});
    });

    it("returns a body a framework's parser already read", async () => {
        const req = {body: {question: "q"}, readableEnded: true, headers: {}} as unknown as http.IncomingMessage;
        assert.deepEqual(await readJson(req, LIMIT), {question: "q"});
    });
});

describe("serving: lazily opened event stream", () => {
    let server: Awaited<ReturnType<typeof listen>>;
    /** What the producer does for a request to `/<case>`. */
    const cases: Record<string, (open: () => {send(event: string | undefined, data: unknown): void}) => Promise<void>> = {
        "ok": async (open) => {
            open().send("progress", {n: 1});
            open().send("answer", {text: "Paris."});
        },
        "early": async () => {
            throw new SelfRagError("refused before any event", "INVALID_REQUEST");
        },
        "late": async (open) => {
            open().send("progress", {n: 1});
            throw new Error("broke after an event");
        }
    };
    before(async () => {
        server = await listen(async (req, res) => {
            try {
                await streamLazily(res, {
                    opening: (events) => events.send(undefined, "opened"),
                    failed: (events, e) => events.send("error", {code: e.code, message: e.message}),
                    closing: (events) => events.send(undefined, "[DONE]")
                }, cases[req.url!.slice(1)]);
            } catch (error) {
                send(res, 400, {error: {code: asSelfRagError(error).code}});
            }
        });
    });
    after(() => server.close());

    it("frames the producer's events: opening first, closing last, then the end", async () => {
        const res = await fetch(server.url + "/ok");
        assert.equal(res.status, 200);
        assert.equal(res.headers.get("content-type"), "text/event-stream; charset=utf-8");
        assert.equal(await res.text(), "data: opened\n\nevent: progress\ndata: {\"n\":1}\n\n" +
            "event: answer\ndata: {\"text\":\"Paris.\"}\n\ndata: [DONE]\n\n");
    });

    it("an error before the first event is thrown, so it can still be a plain error with its status", async () => {
        const res = await fetch(server.url + "/early");
        assert.equal(res.status, 400);
        assert.deepEqual(await res.json(), {error: {code: "INVALID_REQUEST"}});
    });

    it("an error after the first event is the last event, as a SelfRagError (INTERNAL if it was not one)", async () => {
        const res = await fetch(server.url + "/late");
        assert.equal(res.status, 200);
        assert.equal(await res.text(), "data: opened\n\nevent: progress\ndata: {\"n\":1}\n\n" +
            "event: error\ndata: {\"code\":\"INTERNAL\",\"message\":\"broke after an event\"}\n\ndata: [DONE]\n\n");
    });
});
