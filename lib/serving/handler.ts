// The HTTP surface as one framework-neutral request handler: node:http, Express or Fastify can
// mount it (`createHandler(model, options)`), and SelfRagServer is node:http around it.
//
//   GET  /health                GET /v1/stats             GET /metrics (Prometheus)
//   POST /v1/answer             {"question", ...options, "stream"?}: JSON, or text/event-stream
//   POST /v1/chat/completions   OpenAI-compatible (stream and not)
//   GET  /v1/models             the one model, for OpenAI clients that list first
//   POST /v1/search             {"query", "k"?} (with an index)
//
// Robustness rules: a body is read up to maxBodyBytes and refused past it (413) without being
// buffered; anything that is not a JSON object of known fields is a 400 naming the field; a
// client that goes away cancels its question (its slots are freed at the next decode step); a
// request past its time limit gets a 504; no request can take the process down.
//
// Early rejections (413, 404, 405, 415 ... answered before the body is read) use a lingering
// close, as Apache and nginx do: the whole answer is written with `Connection: close`, then the
// rest of the body is read and discarded (up to `drain.maxBytes` / `drain.timeoutMs`) before the
// connection is closed. Closing at once would reset a connection the client is still writing to,
// and a client that reads its answer only after sending (Node's fetch) then sees ECONNRESET
// instead of the 413.
import type http from "node:http";
import path from "node:path";
import {SelfRagError, httpStatusOf} from "../errors.js";
import type {PassageIndex} from "../retrieval/PassageIndex.js";
import type {AnswerEvent} from "../selfrag/events.js";
import {formatPrompt, taskInstruction} from "../selfrag/prompts.js";
import type {LongFormAnswer} from "../selfrag/LongForm.js";
import type {ShortFormAnswer} from "../selfrag/ShortForm.js";
import type {SelfRagModel} from "../SelfRagModel.js";
import {EventStream} from "./EventStream.js";
import {prometheusText} from "./metrics.js";
import {completionId, finishReason, OpenAiError, openAiErrorType, parseChatRequest, selfragField, usageOf} from "./openai.js";
import {RequestScheduler, type RequestSchedulerOptions} from "./RequestScheduler.js";
import {parseAnswerRequest, parseSearchRequest, type AnswerRequest} from "./requestBodies.js";
import {longFormJson, searchResultsJson, shortFormJson} from "./responses.js";

export interface HandlerOptions {
    /** Passages for requests that bring none (short form: top ndocs; long form: per segment). */
    index?: PassageIndex;
    /** Largest request body accepted (1 MiB). */
    maxBodyBytes?: number;
    /** Admission: queue limit and the default time limit per request (`timeoutMs`, 504 past it). */
    scheduler?: RequestSchedulerOptions;
    /** The model name OpenAI responses report (default: the GGUF file name). */
    modelName?: string;
    /**
     * After an early rejection, how much of the rest of the body is read and discarded so the
     * client can read the answer (default 64 MiB, 10 s); past either the connection is reset.
     */
    drain?: {maxBytes?: number, timeoutMs?: number};
}


type Reply = {kind: "json", status?: number, body: unknown} | {kind: "text", body: string, type: string} | {kind: "streamed"};
type Route = {method: "GET" | "POST", handle: (req: http.IncomingMessage, res: http.ServerResponse, body: unknown, signal: AbortSignal) => Promise<Reply>};

/** `(req, res, next?)`: Express calls `next` for paths it does not serve; without `next` they get a JSON 404. */
export interface SelfRagHandler {
    (req: http.IncomingMessage & {body?: unknown}, res: http.ServerResponse, next?: (error?: unknown) => void): void;
    readonly scheduler: RequestScheduler;
    /** Requests being handled (close() of a server waits for them). */
    readonly inflight: ReadonlySet<Promise<void>>;
    /** Refuses new requests, ends queued ones (503) and waits for those running. */
    close(): Promise<void>;
}

/**
 * ```ts
 * import express from "express";
 * const app = express();
 * app.use("/selfrag", createHandler(model, {index}));   // POST /selfrag/v1/answer ...
 * // node:http: http.createServer(createHandler(model)).listen(8080)
 * // Fastify:   fastify.all("/*", (req, reply) => { reply.hijack(); handler(req.raw, reply.raw); })
 * ```
 */
export function createHandler(model: SelfRagModel, options: HandlerOptions = {}): SelfRagHandler {
    const maxBodyBytes = options.maxBodyBytes ?? 1024 * 1024;
    if (!Number.isInteger(maxBodyBytes) || maxBodyBytes < 1) {
        throw new SelfRagError(`maxBodyBytes must be a positive integer, got ${maxBodyBytes}`, "INVALID_ARGUMENT");
    }
    const drainBytes = options.drain?.maxBytes ?? 64 * 1024 * 1024;
    const drainMs = options.drain?.timeoutMs ?? 10_000;
    if (!Number.isInteger(drainBytes) || drainBytes < 0 || !Number.isFinite(drainMs) || drainMs < 0) {
        throw new SelfRagError(`drain.maxBytes and drain.timeoutMs must be >= 0, got ${drainBytes} and ${drainMs}`, "INVALID_ARGUMENT");
    }
    const scheduler = new RequestScheduler(model, options.scheduler);
    const modelName = options.modelName ?? path.basename(model.path, ".gguf");
    const retriever = options.index?.asRetriever();
    const inflight = new Set<Promise<void>>();

    const run = (request: AnswerRequest, signal: AbortSignal, onEvent?: (e: AnswerEvent) => void): Promise<ShortFormAnswer | LongFormAnswer> => {
        // The plan holds the server's retriever when the question brought no passages (parseAnswerRequest).
        if (request.question.passages == null && request.options.retriever == null && request.options.mode !== "never") {
            throw new SelfRagError("no passages: send \"passages\" with the question, start the server with an index (--index DIR), " +
                "or set \"mode\": \"never\"", "INVALID_REQUEST");
        }
        return request.long
            ? scheduler.answerLong(request.question, request.options, {signal, onEvent})
            : scheduler.answer(request.question, request.options, {signal, onEvent});
    };
    const answerBody = (request: AnswerRequest, result: ShortFormAnswer | LongFormAnswer) =>
        (request.long ? longFormJson(result as LongFormAnswer) : shortFormJson(result as ShortFormAnswer));

    const routes: Record<string, Route> = {
        "/health": {method: "GET", handle: async () => ({kind: "json", body: {status: "ok"}})},
        "/v1/stats": {method: "GET", handle: async () => ({kind: "json", body: {
            scheduler: scheduler.stats, engine: {...scheduler.monitor.report(), contextPerSequence: model.context.info.contextPerSequence,
                kvCacheBytes: model.context.info.kvCacheBytes},
            index: options.index != null ? {passages: options.index.size, search: options.index.searchMode} : null,
            process: processMemory()
        }})},
        "/metrics": {method: "GET", handle: async () => ({kind: "text", type: "text/plain; version=0.0.4; charset=utf-8",
            body: prometheusText(scheduler.monitor.report(), scheduler.stats)})},
        "/v1/models": {method: "GET", handle: async () => ({kind: "json", body: {object: "list",
            data: [{id: modelName, object: "model", created: 0, owned_by: "selfrag"}]}})},
        "/v1/search": {method: "POST", handle: async (_req, _res, body) => {
            const request = parseSearchRequest(body);
            if (options.index == null) throw new SelfRagError("this server has no index (start it with --index DIR)", "NOT_FOUND");
            return {kind: "json", body: searchResultsJson(await options.index.search(request.query, request.k))};
        }},
        "/v1/answer": {method: "POST", handle: async (_req, res, raw, signal) => {
            let stream = false;
            if (raw != null && typeof raw === "object" && !Array.isArray(raw) && "stream" in raw) {
                const {stream: flag, ...rest} = raw as Record<string, unknown>;
                if (typeof flag !== "boolean") throw new SelfRagError(`field "stream": expected true or false, got ${JSON.stringify(flag)}`, "INVALID_REQUEST");
                stream = flag;
                raw = rest;
            }
            const request = parseAnswerRequest(raw, {retriever});
            if (!stream) return {kind: "json", body: answerBody(request, await run(request, signal))};
            // Events as they happen; the last one is the same body the plain request returns.
            let events: EventStream | undefined;
            const open = () => (events ??= new EventStream(res));
            try {
                const result = await run(request, signal, (event) => open().send(event.type, event));
                open().send("answer", answerBody(request, result));
            } catch (error) {
                if (events == null) throw error; // nothing sent yet: a plain JSON error with its status
                const e = asSelfRagError(error);
                events.send("error", {error: {code: e.code, message: e.message}});
            }
            events!.end();
            return {kind: "streamed"};
        }},
        "/v1/chat/completions": {method: "POST", handle: async (_req, res, raw, signal) => {
            const chat = parseChatRequest(raw, modelName, retriever);
            const id = completionId();
            const created = Math.floor(Date.now() / 1000);
            // Long form: the formatted prompt's tokens (short form reads its own counts from the answer).
            const promptTokens = () => (chat.answer.long
                ? model.tokenize(formatPrompt(taskInstruction(chat.answer.options.task ?? "none", chat.answer.question.question),
                    chat.answer.options.input)).length
                : 0);
            if (!chat.stream) {
                const result = await run(chat.answer, signal);
                return {kind: "json", body: {
                    id, object: "chat.completion", created, model: chat.model,
                    choices: [{index: 0, message: {role: "assistant", content: result.answer, refusal: null}, logprobs: null,
                        finish_reason: finishReason(result, chat.answer.long)}],
                    usage: usageOf(result, chat.answer.long, promptTokens()),
                    selfrag: selfragField(result, chat.answer.long)
                }};
            }
            // OpenAI's chunk format: role first, Self-RAG progress in `selfrag` (content-free
            // chunks that clients skip), the answer once chosen, then finish_reason and [DONE].
            const chunk = (delta: object, finish: string | null, extra: object = {}) => ({
                id, object: "chat.completion.chunk", created, model: chat.model,
                choices: [{index: 0, delta, logprobs: null, finish_reason: finish}], ...extra
            });
            let events: EventStream | undefined;
            const open = () => {
                if (events == null) {
                    events = new EventStream(res);
                    events.send(undefined, chunk({role: "assistant", content: ""}, null));
                }
                return events;
            };
            try {
                const result = await run(chat.answer, signal, (event) => open().send(undefined, chunk({}, null, {selfrag: event})));
                const stream = open();
                stream.send(undefined, chunk({content: result.answer}, null));
                stream.send(undefined, chunk({}, finishReason(result, chat.answer.long), {selfrag: selfragField(result, chat.answer.long)}));
                if (chat.includeUsage) stream.send(undefined, {...chunk({}, null), choices: [], usage: usageOf(result, chat.answer.long, promptTokens())});
            } catch (error) {
                if (events == null) throw error;
                const e = asSelfRagError(error);
                events.send(undefined, openAiErrorBody(e, httpStatusOf(e.code)));
            }
            events!.send(undefined, "[DONE]");
            events!.end();
            return {kind: "streamed"};
        }}
    };

    const serve = async (req: http.IncomingMessage & {body?: unknown}, res: http.ServerResponse, next?: (error?: unknown) => void) => {
        // The client may go away at any point: then its question is cancelled and its slots freed.
        const abort = new AbortController();
        res.on("close", () => {
            if (!res.writableFinished) abort.abort(new SelfRagError("the client closed the connection", "ABORTED"));
        });
        const pathname = new URL(req.url ?? "/", "http://localhost").pathname;
        const openAi = pathname.startsWith("/v1/chat/") || pathname === "/v1/models";
        try {
            const route = routes[pathname];
            if (route == null) {
                if (next != null) return next();
                throw new SelfRagError(`no route ${pathname} (routes: ${Object.keys(routes).join(", ")})`, "NOT_FOUND");
            }
            if (req.method !== route.method) {
                res.setHeader("Allow", route.method);
                throw new SelfRagError(`${pathname} takes ${route.method}, not ${req.method}`, "METHOD_NOT_ALLOWED");
            }
            const body = route.method === "POST" ? await readJson(req, maxBodyBytes) : undefined;
            const reply = await route.handle(req, res, body, abort.signal);
            if (reply.kind === "json") send(res, reply.status ?? 200, reply.body);
            else if (reply.kind === "text") sendText(res, reply.body, reply.type);
        } catch (error) {
            if (res.destroyed) return; // nobody to answer (client gone, or Node closed it: 408)
            const e = asSelfRagError(error);
            const status = httpStatusOf(e.code);
            if (status === 503) res.setHeader("Retry-After", "1");
            const body = openAi ? openAiErrorBody(e, status) : {error: {code: e.code, message: e.message}};
            // Answered before the body was read (413, 404, 405, 415 ...): a lingering close.
            if (!req.complete && !req.readableEnded && !res.headersSent) answerThenDrain(req, res, status, body, drainBytes, drainMs);
            else send(res, status, body);
        }
    };

    const handler = ((req, res, next) => {
        const serving = serve(req, res, next);
        inflight.add(serving);
        void serving.finally(() => inflight.delete(serving));
    }) as SelfRagHandler;
    Object.defineProperties(handler, {
        scheduler: {value: scheduler},
        inflight: {value: inflight},
        close: {value: async () => {
            await scheduler.close();
            await Promise.allSettled([...inflight]);
        }}
    });
    return handler;
}

/** The server process's memory, for watching it over a long run (RSS, the JS heap, and native memory V8 knows of). */
function processMemory() {
    const m = process.memoryUsage();
    return {rssBytes: m.rss, heapUsedBytes: m.heapUsed, heapTotalBytes: m.heapTotal, externalBytes: m.external, arrayBuffersBytes: m.arrayBuffers};
}

function asSelfRagError(error: unknown): SelfRagError {
    return error instanceof SelfRagError ? error : new SelfRagError((error as Error)?.message ?? String(error), "INTERNAL");
}

function openAiErrorBody(e: SelfRagError, status: number) {
    return {error: {message: e.message, type: openAiErrorType(status), param: e instanceof OpenAiError ? e.param : null,
        code: e.code.toLowerCase()}};
}

async function readJson(req: http.IncomingMessage & {body?: unknown}, maxBodyBytes: number): Promise<unknown> {
    // A framework's body parser (express.json()) may have read it already.
    if (req.body !== undefined && (req.readableEnded || req.body !== null && typeof req.body === "object" && !Buffer.isBuffer(req.body))) {
        return req.body;
    }
    const type = req.headers["content-type"];
    // Any body is read as JSON (`curl -d` sends a form content-type with a JSON body); only a
    // multipart upload is certainly not JSON.
    if (type != null && /^multipart\//i.test(type)) {
        throw new SelfRagError(`the body must be JSON, not ${type.split(";")[0]}`, "UNSUPPORTED_MEDIA_TYPE");
    }
    const declared = Number(req.headers["content-length"] ?? NaN);
    if (declared > maxBodyBytes) {
        throw new SelfRagError(`the body is ${declared} bytes; the limit is ${maxBodyBytes}`, "PAYLOAD_TOO_LARGE");
    }
    const text = (await readBody(req, maxBodyBytes)).toString("utf8");
    if (text.trim() === "") throw new SelfRagError("the body is empty; send a JSON object", "INVALID_REQUEST");
    try {
        return JSON.parse(text);
    } catch (error) {
        throw new SelfRagError(`the body is not valid JSON: ${(error as Error).message}`, "INVALID_JSON");
    }
}

/**
 * The body, up to `max` bytes. Past the limit it stops listening and leaves the request paused
 * but open (a `for await` loop would destroy it, and with it the socket the answer goes out on).
 */
function readBody(req: http.IncomingMessage, max: number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
        const chunks: Buffer[] = [];
        let size = 0;
        const done = () => {
            req.off("data", onData);
            req.off("end", onEnd);
            req.off("close", onClose);
            req.off("error", onClose);
        };
        const onData = (chunk: Buffer) => {
            size += chunk.length;
            if (size > max) {
                done();
                req.pause();
                reject(new SelfRagError(`the body is over ${max} bytes, the limit`, "PAYLOAD_TOO_LARGE"));
            } else {
                chunks.push(chunk);
            }
        };
        const onEnd = () => {
            done();
            resolve(Buffer.concat(chunks));
        };
        const onClose = () => {
            done();
            reject(new SelfRagError("the client closed the connection while sending the body", "ABORTED"));
        };
        req.on("data", onData);
        req.on("end", onEnd);
        req.on("close", onClose);
        req.on("error", onClose);
    });
}

/**
 * A lingering close: writes the whole answer (`Connection: close`, Content-Length) at once, so a
 * client that reads while sending has it, then reads and discards the rest of the body, and ends
 * the response, which closes the connection, once the body is in: a client that reads its answer
 * only after sending everything also gets it. Past `maxBytes` or `timeoutMs` of draining the
 * connection is reset instead.
 */
function answerThenDrain(req: http.IncomingMessage, res: http.ServerResponse, status: number, value: unknown,
    maxBytes: number, timeoutMs: number): void {
    const body = JSON.stringify(value) + "\n";
    res.shouldKeepAlive = false;
    res.writeHead(status, {"Content-Type": "application/json; charset=utf-8", "Content-Length": Buffer.byteLength(body), "Connection": "close"});
    res.write(body);
    let drained = 0;
    let settled = false;
    const finish = (reset: boolean) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        req.off("data", onData);
        req.off("end", onEnd);
        req.off("close", onGone);
        req.off("error", onGone);
        if (reset) {
            // Flushed answer first, then the reset (the client may still lose it: documented).
            res.end(() => req.socket?.destroy());
            req.pause();
        } else {
            res.end(); // Connection: close ends the socket once the answer is flushed
        }
    };
    const onData = (chunk: Buffer) => {
        drained += chunk.length;
        if (drained > maxBytes) finish(true);
    };
    const onEnd = () => finish(false);
    const onGone = () => finish(false);
    const timer = setTimeout(() => finish(true), timeoutMs);
    timer.unref();
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("close", onGone);
    req.on("error", onGone);
    req.resume();
}

function send(res: http.ServerResponse, status: number, value: unknown): void {
    if (res.headersSent) return;
    const body = JSON.stringify(value) + "\n";
    res.writeHead(status, {"Content-Type": "application/json; charset=utf-8", "Content-Length": Buffer.byteLength(body)});
    res.end(body);
}

function sendText(res: http.ServerResponse, body: string, type: string): void {
    if (res.headersSent) return;
    res.writeHead(200, {"Content-Type": type, "Content-Length": Buffer.byteLength(body)});
    res.end(body);
}
