// The route table: one entry per path, each a method and a function from a read body to a reply.
//
//   GET  /health                GET /v1/stats             GET /metrics (Prometheus)
//   POST /v1/answer             {"question", ...options, "stream"?}: JSON, or text/event-stream
//                               (ids, `selfrag-error`; a reconnect after the answer gets 204)
//   POST /v1/chat/completions   OpenAI-compatible (stream and not; chatCompletions.ts)
//   GET  /v1/models             the one model, for OpenAI clients that list first
//   POST /v1/search             {"query", "k"?} (with an index)
import {invalidParameterError} from "../errors.js";
import type {Retriever} from "../selfrag/plan.js";
import type http from "node:http";
import {SelfRagError} from "../errors.js";
import type {PassageIndex} from "../retrieval/PassageIndex.js";
import type {LongFormAnswer} from "../selfrag/LongForm.js";
import type {ShortFormAnswer} from "../selfrag/ShortForm.js";
import type {SelfRagModel} from "../SelfRagModel.js";
import {chatCompletionRoute, completionRoute} from "./chatCompletions.js";
import {endedStreamReply, isReconnectAfterEnd, streamLazily} from "./EventStream.js";
import {prometheusText} from "./metrics.js";
import {errorBody} from "./replies.js";
import type {RequestScheduler} from "./RequestScheduler.js";
import {parseAnswerRequest, parseSearchRequest, type AnswerRequest} from "./requestBodies.js";
import {longFormJson, searchResultsJson, shortFormJson} from "./responses.js";
import type {RunAnswer} from "./runAnswer.js";

/** What a route answers: a body for the handler to write, or "streamed" when it wrote the response itself. */
export type Reply = {kind: "json", status?: number, body: unknown} | {kind: "text", body: string, type: string} | {kind: "streamed"};

/** `body` is the JSON read for a POST (undefined for a GET); `signal` aborts when the client goes away. */
export interface Route {
    method: "GET" | "POST";
    handle(req: http.IncomingMessage, res: http.ServerResponse, body: unknown, signal: AbortSignal): Promise<Reply>;
}

/** What the routes share, made once by createHandler. */
export interface RouteContext {
    model: SelfRagModel;
    scheduler: RequestScheduler;
    index: PassageIndex | undefined;
    /** The model name OpenAI responses report. */
    modelName: string;
    /** The index's retriever, planned into a question that brings no passages. */
    retriever: Retriever | undefined;
    run: RunAnswer;
    /** How streams are kept alive (StreamFraming's keepAliveMs), for every streaming route. */
    streaming: {keepAliveMs: number};
}

export function routeTable(ctx: RouteContext): Record<string, Route> {
    const {model, scheduler, index} = ctx;
    return {
        "/health": {method: "GET", handle: async () => ({kind: "json", body: {status: "ok"}})},
        "/v1/stats": {method: "GET", handle: async () => ({kind: "json", body: {
            scheduler: scheduler.stats, engine: {...scheduler.monitor.report(), contextPerSequence: model.context.info.contextPerSequence,
                kvCacheBytes: model.context.info.kvCacheBytes},
            index: index != null ? {passages: index.size, search: index.searchMode} : null,
            process: processMemory()
        }})},
        "/metrics": {method: "GET", handle: async () => ({kind: "text", type: "text/plain; version=0.0.4; charset=utf-8",
            body: prometheusText(scheduler.monitor.report(), scheduler.stats)})},
        "/v1/models": {method: "GET", handle: async () => ({kind: "json", body: {object: "list",
            data: [{id: ctx.modelName, object: "model", created: 0, owned_by: "selfrag"}]}})},
        "/v1/search": {method: "POST", handle: async (_req, _res, body) => {
            // The route exists, but not without an index: 501 (as llama-server answers a feature it was not started with), not 404.
            if (index == null) throw new SelfRagError("this server has no index to search: start it with --index DIR", "NO_INDEX");
            const request = parseSearchRequest(body);
            return {kind: "json", body: searchResultsJson(await index.search(request.query, request.k))};
        }},
        "/v1/answer": answerRoute(ctx),
        "/v1/chat/completions": chatCompletionRoute(ctx),
        "/v1/completions": completionRoute(ctx)
    };
}

/** The native stream's error event: not `error`, which EventSource clients take for a transport failure. */
export const STREAM_ERROR_EVENT = "selfrag-error";

function answerRoute({run, retriever, streaming}: Pick<RouteContext, "run" | "retriever" | "streaming">): Route {
    return {method: "POST", handle: async (req, res, raw, signal) => {
        const {stream, rest} = takeStreamFlag(raw);
        const request = parseAnswerRequest(rest, {retriever});
        if (!stream) return {kind: "json", body: answerJson(request, await run(request, signal))};
        // An event-stream client that reconnects after the final event (it re-sends the request
        // with Last-Event-ID): nothing to do again; 204 tells it to stop.
        if (isReconnectAfterEnd(req)) {
            endedStreamReply(res);
            return {kind: "streamed"};
        }
        // Events as they happen; the last one is the same body the plain request returns. The
        // stream opens once the request is admitted (keep-alive comments while it waits for slots).
        await streamLazily(res, {
            ...streaming, ids: true,
            opening: (events) => events.comment("keep-alive"),
            failed: (events, e) => events.send(STREAM_ERROR_EVENT, errorBody(e), {final: true})
        }, async (open, admitted) => {
            const result = await run(request, signal, (event) => open().send(event.type, event), admitted);
            open().send("answer", answerJson(request, result), {final: true});
        });
        return {kind: "streamed"};
    }};
}

/** `"stream"` is the transport's, not an answer option: taken off before the body is parsed. */
function takeStreamFlag(raw: unknown): {stream: boolean, rest: unknown} {
    if (raw == null || typeof raw !== "object" || Array.isArray(raw) || !("stream" in raw)) return {stream: false, rest: raw};
    const {stream, ...rest} = raw as Record<string, unknown>;
    if (typeof stream !== "boolean") throw invalidParameterError("stream", "true or false", stream);
    return {stream, rest};
}

function answerJson(request: AnswerRequest, result: ShortFormAnswer | LongFormAnswer) {
    return request.long ? longFormJson(result as LongFormAnswer) : shortFormJson(result as ShortFormAnswer);
}

/** The server process's memory, for watching it over a long run (RSS, the JS heap, and native memory V8 knows of). */
function processMemory() {
    const m = process.memoryUsage();
    return {rssBytes: m.rss, heapUsedBytes: m.heapUsed, heapTotalBytes: m.heapTotal, externalBytes: m.external, arrayBuffersBytes: m.arrayBuffers};
}
