// The HTTP server: JSON over node:http, every answer request through one RequestScheduler so
// concurrent requests share batches.
//
// Robustness rules: a body is read up to maxBodyBytes and refused past it (413) without being
// buffered; anything that is not a JSON object of known fields is a 400 naming the field; a
// request whose client went away while it waited leaves the queue; no request can take the
// process down (every handler's error becomes a JSON error response).
import http from "node:http";
import type {AddressInfo} from "node:net";
import {SelfRagError} from "../errors.js";
import {RequestScheduler, type RequestSchedulerOptions} from "./RequestScheduler.js";
import type {PassageIndex} from "../retrieval/PassageIndex.js";
import {searchResultsJson, shortFormJson} from "./responses.js";
import type {SelfRagModel} from "../SelfRagModel.js";
import {parseAnswerRequest, parseSearchRequest} from "./requestBodies.js";

export interface SelfRagServerOptions {
    model: SelfRagModel;
    /** Passages for requests that bring none (short form: top ndocs; long form: per segment). */
    index?: PassageIndex;
    port?: number;
    /** 127.0.0.1 unless given: the server has no authentication. */
    host?: string;
    /** Largest request body accepted (1 MiB). */
    maxBodyBytes?: number;
    scheduler?: RequestSchedulerOptions;
}

const STATUS: Record<string, number> = {
    INVALID_REQUEST: 400, INVALID_ARGUMENT: 400, EMPTY_PASSAGES: 400, INVALID_JSON: 400, EMBEDDER_MISMATCH: 400,
    NOT_FOUND: 404, METHOD_NOT_ALLOWED: 405, PAYLOAD_TOO_LARGE: 413, UNSUPPORTED_MEDIA_TYPE: 415,
    CONTEXT_OVERFLOW: 422, SEQUENCE_OUT_OF_RANGE: 422, QUEUE_FULL: 503, SCHEDULER_CLOSED: 503
};

type Route = {method: "GET" | "POST", handle: (body: unknown, signal: AbortSignal) => Promise<unknown>};

/**
 * ```ts
 * const server = await SelfRagServer.listen({model, index, port: 8080});
 * // curl -s localhost:8080/v1/answer -d '{"question": "Who wrote Carmen?"}'
 * await server.close();
 * ```
 */
export class SelfRagServer {
    public readonly scheduler: RequestScheduler;
    private readonly http: http.Server;
    private readonly maxBodyBytes: number;
    private readonly routes: Record<string, Route>;
    /** Requests being handled: close() lets them write their answers before dropping connections. */
    private readonly inflight = new Set<Promise<void>>();

    private constructor(private readonly options: SelfRagServerOptions) {
        this.scheduler = new RequestScheduler(options.model, options.scheduler);
        this.maxBodyBytes = options.maxBodyBytes ?? 1024 * 1024;
        if (!Number.isInteger(this.maxBodyBytes) || this.maxBodyBytes < 1) {
            throw new SelfRagError(`maxBodyBytes must be a positive integer, got ${this.maxBodyBytes}`, "INVALID_ARGUMENT");
        }
        this.routes = {
            "/health": {method: "GET", handle: async () => ({status: "ok"})},
            "/v1/stats": {method: "GET", handle: async () => this.statsJson()},
            "/v1/answer": {method: "POST", handle: (body, signal) => this.answer(body, signal)},
            "/v1/search": {method: "POST", handle: (body) => this.search(body)}
        };
        this.http = http.createServer((req, res) => {
            const serving = this.serve(req, res);
            this.inflight.add(serving);
            void serving.finally(() => this.inflight.delete(serving));
        });
        // A long-form answer from a 7B model on a CPU can take minutes: no total-request timeout,
        // but a client must send its headers promptly.
        this.http.requestTimeout = 0;
        this.http.headersTimeout = 30_000;
    }

    /** Starts listening; resolves once the port is bound (port 0: any free port, see `url`). */
    public static async listen(options: SelfRagServerOptions): Promise<SelfRagServer> {
        const server = new SelfRagServer(options);
        await new Promise<void>((resolve, reject) => {
            server.http.once("error", reject);
            server.http.listen(options.port ?? 8080, options.host ?? "127.0.0.1", () => {
                server.http.off("error", reject);
                resolve();
            });
        });
        return server;
    }

    public get url(): string {
        const address = this.http.address() as AddressInfo;
        const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
        return `http://${host}:${address.port}`;
    }

    /** Stops accepting connections, rejects queued requests (503) and waits for the running batch. */
    public async close(): Promise<void> {
        const closed = new Promise<void>((resolve) => this.http.close(() => resolve()));
        this.http.closeIdleConnections();
        await this.scheduler.close();
        await Promise.allSettled([...this.inflight]);
        this.http.closeAllConnections();
        await closed;
    }

    private async serve(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
        // The client may go away while its request waits: then it leaves the queue.
        const abort = new AbortController();
        res.on("close", () => {
            if (!res.writableFinished) abort.abort();
        });
        try {
            const path = new URL(req.url ?? "/", "http://localhost").pathname;
            const route = this.routes[path];
            if (route == null) throw new SelfRagError(`no route ${path} (routes: ${Object.keys(this.routes).join(", ")})`, "NOT_FOUND");
            if (req.method !== route.method) {
                res.setHeader("Allow", route.method);
                throw new SelfRagError(`${path} takes ${route.method}, not ${req.method}`, "METHOD_NOT_ALLOWED");
            }
            const body = route.method === "POST" ? await this.readJson(req) : undefined;
            send(res, 200, await route.handle(body, abort.signal));
        } catch (error) {
            if (abort.signal.aborted) return; // nobody to answer
            const e = error instanceof SelfRagError ? error : new SelfRagError((error as Error).message ?? String(error), "INTERNAL");
            const status = STATUS[e.code] ?? 500;
            if (status === 503) res.setHeader("Retry-After", "1");
            if (status === 413) res.setHeader("Connection", "close");
            send(res, status, {error: {code: e.code, message: e.message}});
            // A body refused part-way is not read further: drop the connection once the answer is out.
            if (status === 413) res.on("finish", () => req.destroy());
        }
    }

    private async readJson(req: http.IncomingMessage): Promise<unknown> {
        const type = req.headers["content-type"];
        // Any body is read as JSON (`curl -d` sends a form content-type with a JSON body); only a
        // multipart upload is certainly not JSON.
        if (type != null && /^multipart\//i.test(type)) {
            throw new SelfRagError(`the body must be JSON, not ${type.split(";")[0]}`, "UNSUPPORTED_MEDIA_TYPE");
        }
        const declared = Number(req.headers["content-length"] ?? NaN);
        if (declared > this.maxBodyBytes) {
            throw new SelfRagError(`the body is ${declared} bytes; the limit is ${this.maxBodyBytes}`, "PAYLOAD_TOO_LARGE");
        }
        const chunks: Buffer[] = [];
        let size = 0;
        for await (const chunk of req as AsyncIterable<Buffer>) {
            size += chunk.length;
            if (size > this.maxBodyBytes) {
                throw new SelfRagError(`the body is over ${this.maxBodyBytes} bytes, the limit`, "PAYLOAD_TOO_LARGE");
            }
            chunks.push(chunk);
        }
        const text = Buffer.concat(chunks).toString("utf8");
        if (text.trim() === "") throw new SelfRagError("the body is empty; send a JSON object", "INVALID_REQUEST");
        try {
            return JSON.parse(text);
        } catch (error) {
            throw new SelfRagError(`the body is not valid JSON: ${(error as Error).message}`, "INVALID_JSON");
        }
    }

    private async answer(raw: unknown, signal: AbortSignal): Promise<unknown> {
        const request = parseAnswerRequest(raw);
        const retriever = this.retriever();
        const hasPassages = request.question.passages != null;
        if (!hasPassages && retriever == null && request.options.mode !== "never") {
            throw new SelfRagError("no passages: send \"passages\" with the question, start the server with an index (--index DIR), " +
                "or set \"mode\": \"never\"", "INVALID_REQUEST");
        }
        if (!request.long) {
            const result = await this.scheduler.answer(request.question, {...request.options, retriever: hasPassages ? undefined : retriever},
                {signal});
            return {id: request.question.id ?? null, ...shortFormJson(result)};
        }
        return this.scheduler.answerLong(request.question, {...request.options, retriever: hasPassages ? undefined : retriever}, {signal});
    }

    private sharedRetriever?: ReturnType<PassageIndex["asRetriever"]>;

    /** One retriever function for the server's lifetime: requests batch only with the same retriever. */
    private retriever(): ReturnType<PassageIndex["asRetriever"]> | undefined {
        if (this.options.index == null) return undefined;
        return this.sharedRetriever ??= this.options.index.asRetriever();
    }

    private async search(raw: unknown): Promise<unknown> {
        const request = parseSearchRequest(raw);
        if (this.options.index == null) throw new SelfRagError("this server has no index (start it with --index DIR)", "NOT_FOUND");
        return searchResultsJson(await this.options.index.search(request.query, request.k));
    }

    private statsJson(): unknown {
        const ctx = this.options.model.context;
        return {
            scheduler: this.scheduler.stats,
            engine: {...ctx.stats, sequences: ctx.info.sequences, contextPerSequence: ctx.info.contextPerSequence},
            index: this.options.index != null ? {passages: this.options.index.size, search: this.options.index.searchMode} : null
        };
    }
}

function send(res: http.ServerResponse, status: number, value: unknown): void {
    if (res.headersSent) return;
    const body = JSON.stringify(value) + "\n";
    res.writeHead(status, {"Content-Type": "application/json; charset=utf-8", "Content-Length": Buffer.byteLength(body)});
    res.end(body);
}
