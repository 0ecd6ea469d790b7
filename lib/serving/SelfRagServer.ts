// The HTTP server: node:http around createHandler (see handler.ts for the rules, routes.ts for the routes).
import http from "node:http";
import {SelfRagError, invalidParameterError} from "../errors.js";
import type {AddressInfo} from "node:net";
import type {PassageIndex} from "../retrieval/PassageIndex.js";
import type {SelfRagModel} from "../SelfRagModel.js";
import {createHandler, type HandlerOptions, type SelfRagHandler} from "./handler.js";
import type {RequestScheduler} from "./RequestScheduler.js";

export interface SelfRagServerOptions extends HandlerOptions {
    model: SelfRagModel;
    index?: PassageIndex;
    port?: number;
    /** 127.0.0.1 unless given; beyond loopback, set `apiKey`. */
    host?: string;
    /** A client must send its request headers within this (default 30 s); past it: 408 and the connection closed. */
    headersTimeoutMs?: number;
    /**
     * ... and the whole request, body included, within this (default 60 s): a client trickling a
     * body (slow loris) cannot hold a connection for longer. It does not limit the answer, which
     * can take minutes (the scheduler's `timeoutMs` does).
     */
    requestTimeoutMs?: number;
}

/**
 * ```ts
 * const server = await SelfRagServer.listen({model, index, port: 8080, scheduler: {timeoutMs: 60_000}});
 * // curl -s localhost:8080/v1/answer -d '{"question": "Who wrote Carmen?"}'
 * // curl -sN localhost:8080/v1/answer -d '{"question": "Who wrote Carmen?", "stream": true}'
 * await server.close();
 * ```
 */
export class SelfRagServer {
    public readonly handler: SelfRagHandler;
    private readonly http: http.Server;

    private constructor(options: SelfRagServerOptions) {
        const headersTimeout = options.headersTimeoutMs ?? 30_000;
        const requestTimeout = options.requestTimeoutMs ?? 60_000;
        for (const [name, value] of [["headersTimeoutMs", headersTimeout], ["requestTimeoutMs", requestTimeout]] as const) {
            if (!Number.isFinite(value) || value < 1) throw invalidParameterError(name, "a positive number of milliseconds", value);
        }
        if (headersTimeout > requestTimeout) {
            throw new SelfRagError(`headersTimeoutMs (${headersTimeout}) must not exceed requestTimeoutMs (${requestTimeout})`, "INVALID_ARGUMENT");
        }
        this.handler = createHandler(options.model, options);
        // Node's timeouts cover receiving the request (headers, then headers and body), checked
        // every connectionsCheckingInterval; the answer itself (minutes for a long-form answer of
        // a 7B model on a CPU) is limited by the scheduler's timeoutMs instead.
        this.http = http.createServer({
            headersTimeout, requestTimeout,
            connectionsCheckingInterval: Math.max(25, Math.min(1000, Math.floor(headersTimeout / 4)))
        }, (req, res) => this.handler(req, res));
    }

    public get scheduler(): RequestScheduler {
        return this.handler.scheduler;
    }

    /**
     * Starts listening; resolves once the port is bound (port 0: any free port, see `url`). A port
     * in use is PORT_IN_USE; a host that does not resolve or is no address of this machine, or a
     * port that needs privileges, is INVALID_ARGUMENT naming `host` / `port` (see `listenError`).
     */
    public static async listen(options: SelfRagServerOptions): Promise<SelfRagServer> {
        const server = new SelfRagServer(options);
        const port = options.port ?? 8080;
        const host = options.host ?? "127.0.0.1";
        await new Promise<void>((resolve, reject) => {
            const fail = (error: Error) => reject(listenError(error, host, port));
            server.http.once("error", fail);
            server.http.listen(port, host, () => {
                server.http.off("error", fail);
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

    /** Stops accepting connections, ends queued requests (503), lets running ones write their answers, then drops connections. */
    public async close(): Promise<void> {
        const closed = new Promise<void>((resolve) => this.http.close(() => resolve()));
        this.http.closeIdleConnections();
        await this.handler.close();
        this.http.closeAllConnections();
        await closed;
    }
}

/**
 * A failure to listen as selfrag reports it, the options named as the caller spells them
 * (`names`: the library's `port` / `host`, the CLI's `--port` / `--host`); an error of another
 * kind is returned as it is.
 */
export function listenError(error: Error, host: string, port: number,
    names: {port: string, host: string} = {port: "port", host: "host"}): Error {
    const errno = (error as NodeJS.ErrnoException).code;
    const at = `${host.includes(":") ? `[${host}]` : host}:${port}`;
    if (errno === "EADDRINUSE") {
        return new SelfRagError(`cannot listen on ${at}: port ${port} is in use (another server?); choose another ${names.port} ` +
            "(0 takes any free port)", "PORT_IN_USE", {cause: error, option: names.port});
    }
    if (errno === "EACCES") {
        return new SelfRagError(`cannot listen on ${at}: permission denied (ports below 1024 need privileges); choose another ${names.port}`,
            "INVALID_ARGUMENT", {cause: error, option: names.port});
    }
    if (errno === "ENOTFOUND" || errno === "EAI_AGAIN" || errno === "EAI_NONAME") {
        return new SelfRagError(`cannot listen on ${at}: ${names.host} ${JSON.stringify(host)} is not an address and does not resolve to one ` +
            "(127.0.0.1 for this machine only, 0.0.0.0 for every interface)", "INVALID_ARGUMENT", {cause: error, option: names.host});
    }
    if (errno === "EADDRNOTAVAIL") {
        return new SelfRagError(`cannot listen on ${at}: ${names.host} ${JSON.stringify(host)} is not an address of this machine ` +
            "(127.0.0.1 for this machine only, 0.0.0.0 for every interface)", "INVALID_ARGUMENT", {cause: error, option: names.host});
    }
    return error;
}
