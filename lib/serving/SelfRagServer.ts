// The HTTP server: node:http around createHandler (see handler.ts for the routes and rules).
import http from "node:http";
import type {AddressInfo} from "node:net";
import type {PassageIndex} from "../retrieval/PassageIndex.js";
import type {SelfRagModel} from "../SelfRagModel.js";
import {createHandler, type HandlerOptions, type SelfRagHandler} from "./handler.js";
import type {RequestScheduler} from "./RequestScheduler.js";

export interface SelfRagServerOptions extends HandlerOptions {
    model: SelfRagModel;
    index?: PassageIndex;
    port?: number;
    /** 127.0.0.1 unless given: the server has no authentication. */
    host?: string;
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
        this.handler = createHandler(options.model, options);
        this.http = http.createServer((req, res) => this.handler(req, res));
        // A long-form answer from a 7B model on a CPU can take minutes: no total-request timeout
        // here (the scheduler's timeoutMs is the per-request limit), but a client must send its
        // headers promptly.
        this.http.requestTimeout = 0;
        this.http.headersTimeout = 30_000;
    }

    public get scheduler(): RequestScheduler {
        return this.handler.scheduler;
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

    /** Stops accepting connections, ends queued requests (503), lets running ones write their answers, then drops connections. */
    public async close(): Promise<void> {
        const closed = new Promise<void>((resolve) => this.http.close(() => resolve()));
        this.http.closeIdleConnections();
        await this.handler.close();
        this.http.closeAllConnections();
        await closed;
    }
}
