// The HTTP surface as one framework-neutral request handler: node:http, Express or Fastify can
// mount it (`createHandler(model, options)`), and SelfRagServer is node:http around it. This file
// composes the parts: the route table (routes.ts, chatCompletions.ts), body reading and the
// lingering close (bodyReader.ts), whole replies (replies.ts) and streams (EventStream.ts).
//
// Access: with an API key every route but /health needs `Authorization: Bearer KEY` (compared
// in constant time), else 401 UNAUTHORIZED in the route's error shape, as llama-server's and
// vLLM's --api-key; the key is never written to a log or an error.
//
// Robustness rules: a body is read up to maxBodyBytes and refused past it (413) without being
// buffered; anything that is not a JSON object of known fields is a 400 naming the field; a
// client that goes away cancels its question (its slots are freed at the next decode step); a
// request past its time limit gets a 504; no request can take the process down. Early
// rejections (413, 404, 405, 415 ... answered before the body is read) use a lingering close
// (`answerThenDrain`).
import {createHash, timingSafeEqual} from "node:crypto";
import type http from "node:http";
import path from "node:path";
import {SelfRagError, httpStatusOf, requireInteger, requireNumberInRange, requirePositiveInteger} from "../errors.js";
import type {PassageIndex} from "../retrieval/PassageIndex.js";
import type {SelfRagModel} from "../SelfRagModel.js";
import {answerThenDrain, readJson, type DrainLimits} from "./bodyReader.js";
import {KEEP_ALIVE_MS} from "./EventStream.js";
import {openAiErrorBody} from "./openai.js";
import {asSelfRagError, errorBody, send, sendText} from "./replies.js";
import {RequestScheduler, type RequestSchedulerOptions} from "./RequestScheduler.js";
import {routeTable, type Route} from "./routes.js";
import {answerRunner} from "./runAnswer.js";

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
    /**
     * Requests to every route but /health must send `Authorization: Bearer <apiKey>` (OpenAI
     * clients send their `apiKey` so), else 401 UNAUTHORIZED. Printable ASCII without spaces.
     */
    apiKey?: string;
    /** A streamed answer gets a `: keep-alive` comment when nothing was sent for this long (5000 ms; 0: none). */
    streamKeepAliveMs?: number;
}

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
    requirePositiveInteger("maxBodyBytes", maxBodyBytes);
    const drain: DrainLimits = {maxBytes: options.drain?.maxBytes ?? 64 * 1024 * 1024, timeoutMs: options.drain?.timeoutMs ?? 10_000};
    requireInteger("drain.maxBytes", drain.maxBytes, 0, Number.MAX_SAFE_INTEGER);
    requireNumberInRange("drain.timeoutMs", drain.timeoutMs, 0, Number.MAX_SAFE_INTEGER);
    const keepAliveMs = options.streamKeepAliveMs ?? KEEP_ALIVE_MS;
    requireNumberInRange("streamKeepAliveMs", keepAliveMs, 0, 2 ** 31 - 1);
    const authorized = bearerCheck(options.apiKey);
    const scheduler = new RequestScheduler(model, options.scheduler);
    const routes = routeTable({
        model, scheduler, index: options.index,
        modelName: options.modelName ?? path.basename(model.path, ".gguf"),
        retriever: options.index?.asRetriever(),
        run: answerRunner(scheduler),
        streaming: {keepAliveMs}
    });
    const inflight = new Set<Promise<void>>();
    const handler = ((req, res, next) => {
        const serving = serve(routes, {maxBodyBytes, drain, authorized}, req, res, next);
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

/** One request: find its route, read its body, write the reply; every error becomes an answer, none escapes. */
async function serve(routes: Record<string, Route>, limits: {maxBodyBytes: number, drain: DrainLimits, authorized: (req: http.IncomingMessage) => boolean},
    req: http.IncomingMessage & {body?: unknown}, res: http.ServerResponse, next?: (error?: unknown) => void): Promise<void> {
    // The client may go away at any point: then its question is cancelled and its slots freed.
    const abort = new AbortController();
    res.on("close", () => {
        if (!res.writableFinished) abort.abort(new SelfRagError("the client closed the connection", "ABORTED"));
    });
    const pathname = new URL(req.url ?? "/", "http://localhost").pathname;
    const openAi = pathname.startsWith("/v1/chat/") || pathname === "/v1/completions" || pathname === "/v1/models";
    try {
        const route = routes[pathname];
        if (route == null && next != null) return next();
        if (pathname !== "/health" && !limits.authorized(req)) {
            res.setHeader("WWW-Authenticate", req.headers.authorization == null ? "Bearer realm=\"selfrag\"" : "Bearer realm=\"selfrag\", error=\"invalid_token\"");
            throw new SelfRagError(req.headers.authorization == null
                ? "this server needs an API key: send \"Authorization: Bearer KEY\""
                : "the API key sent in Authorization is not this server's (\"Authorization: Bearer KEY\")", "UNAUTHORIZED");
        }
        if (route == null) {
            throw new SelfRagError(`no route ${pathname} (routes: ${Object.keys(routes).join(", ")})`, "NOT_FOUND");
        }
        if (req.method !== route.method) {
            res.setHeader("Allow", route.method);
            throw new SelfRagError(`${pathname} takes ${route.method}, not ${req.method}`, "METHOD_NOT_ALLOWED");
        }
        const body = route.method === "POST" ? await readJson(req, limits.maxBodyBytes) : undefined;
        const reply = await route.handle(req, res, body, abort.signal);
        if (reply.kind === "json") send(res, reply.status ?? 200, reply.body);
        else if (reply.kind === "text") sendText(res, reply.body, reply.type);
    } catch (error) {
        if (res.destroyed) return; // nobody to answer (client gone, or Node closed it: 408)
        const e = asSelfRagError(error);
        const status = httpStatusOf(e.code);
        if (status === 503) res.setHeader("Retry-After", "1");
        const body = openAi ? openAiErrorBody(e, status) : errorBody(e);
        // Answered before the body was read (413, 404, 405, 415 ...): a lingering close.
        if (!req.complete && !req.readableEnded && !res.headersSent) answerThenDrain(req, res, status, body, limits.drain);
        else send(res, status, body);
    }
}

/**
 * Whether a request carries the API key (always true without one). The key and what was sent are
 * compared as SHA-256 digests with timingSafeEqual: equal lengths, constant time, nothing about the
 * key learned from how long a refusal takes.
 */
function bearerCheck(apiKey: string | undefined): (req: http.IncomingMessage) => boolean {
    if (apiKey === undefined) return () => true;
    // The message never shows the value: it may be a key with a typo.
    if (typeof apiKey !== "string" || !/^[\x21-\x7e]+$/.test(apiKey)) {
        throw new SelfRagError("apiKey must be a non-empty string of printable ASCII without spaces", "INVALID_ARGUMENT", {option: "apiKey"});
    }
    const expected = createHash("sha256").update(apiKey).digest();
    return (req) => {
        const sent = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(req.headers.authorization ?? "")?.[1];
        return sent != null && timingSafeEqual(createHash("sha256").update(sent).digest(), expected);
    };
}
