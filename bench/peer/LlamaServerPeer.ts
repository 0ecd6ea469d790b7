// llama.cpp's own `llama-server` as a child process: the serving-benchmark peer. It gets the same
// GGUF model and the same thread budget as our engine and batches concurrent requests across its
// parallel slots (continuous batching), which is the baseline our engine has to beat.
import {spawn, spawnSync, type ChildProcess} from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import {ensureLlamaServer} from "./buildLlamaServer.js";
import {freePort} from "../../test-support/net.js";

export interface LlamaServerPeerOptions {
    /** GGUF model file. */
    model: string;
    /** Parallel slots (`--parallel`): how many sequences llama-server decodes in one batch. */
    parallel: number;
    /** Context per slot; the server gets `-c parallel * ctxPerSlot` (default 2048). */
    ctxPerSlot?: number;
    /** Compute threads (`-t`/`-tb`), default 1: the same budget our engine gets in the comparison. */
    threads?: number;
    /** llama-server binary; default: ensureLlamaServer() (builds it on first use). */
    binary?: string;
    /** Appended to the command line as is. */
    extraArgs?: string[];
    /** Server log file (stdout + stderr); default: kept in memory, last lines shown on errors. */
    logFile?: string;
    /** How long to wait for `/health` to report ok (model load), default 120 s. */
    startupTimeoutMs?: number;
}

export interface HttpResult {
    status: number;
    body: string;
}

/** Counters from `/metrics` (Prometheus text), names without the `llamacpp:` prefix. */
export type PeerMetrics = Record<string, number>;

const LOG_TAIL_LINES = 60;

/** A free loopback port: bind port 0, read it, release it (llama-server binds it right after). */

const helpCache = new Map<string, string>();

/** `llama-server --help`, read once per binary to use flags only where this version has them. */
function serverHelp(binary: string): string {
    let help = helpCache.get(binary);
    if (help == null) {
        const result = spawnSync(binary, ["--help"], {encoding: "utf8", timeout: 30_000});
        help = `${result.stdout ?? ""}${result.stderr ?? ""}`;
        helpCache.set(binary, help);
    }
    return help;
}

/**
 * One HTTP request with `Connection: close` and no agent. llama-server serves HTTP from a fixed thread
 * pool; a keep-alive connection pins a pool thread while idle, so concurrent clients queue behind
 * idle connections (12 questions took 13.8 s with keep-alive). Node's fetch (undici) always pools
 * and refuses a Connection header, hence node:http.
 */
export function httpRequest(port: number, method: string, path: string, body?: unknown, timeoutMs = 600_000): Promise<HttpResult> {
    return new Promise((resolve, reject) => {
        const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
        const request = http.request({
            host: "127.0.0.1",
            port,
            method,
            path,
            agent: false,
            headers: {
                "Connection": "close",
                ...(payload == null ? {} : {"Content-Type": "application/json", "Content-Length": String(payload.length)}),
            },
        }, (response) => {
            const chunks: Buffer[] = [];
            response.on("data", (chunk: Buffer) => chunks.push(chunk));
            response.on("end", () => resolve({status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8")}));
            response.on("error", reject);
        });
        request.setTimeout(timeoutMs, () => request.destroy(new Error(`${method} ${path}: no answer in ${timeoutMs} ms`)));
        request.on("error", reject);
        request.end(payload);
    });
}

export class LlamaServerPeer {
    readonly port: number;
    readonly parallel: number;
    readonly ctxPerSlot: number;
    readonly args: readonly string[];
    private readonly child: ChildProcess;
    private readonly exited: Promise<void>;
    private readonly logTail: string[];
    private exitCode: number | null | undefined;
    private spawnError: Error | undefined;
    private readonly killOnParentExit: () => void;

    private constructor(child: ChildProcess, port: number, parallel: number, ctxPerSlot: number, args: string[], logTail: string[]) {
        this.child = child;
        this.port = port;
        this.parallel = parallel;
        this.ctxPerSlot = ctxPerSlot;
        this.args = args;
        this.logTail = logTail;
        this.exited = new Promise((resolve) => {
            child.once("exit", (code) => {
                this.exitCode = code;
                resolve();
            });
            // A binary that cannot start emits "error" and never "exit".
            child.once("error", (error) => {
                this.spawnError = error;
                this.exitCode = null;
                resolve();
            });
        });
        // A crashed benchmark must not leave a server holding the cores for the next run.
        this.killOnParentExit = () => {
            if (this.exitCode === undefined) child.kill("SIGKILL");
        };
        process.once("exit", this.killOnParentExit);
    }

    /** Starts llama-server on a free loopback port and waits until `/health` reports ok. */
    static async start(options: LlamaServerPeerOptions): Promise<LlamaServerPeer> {
        // The port is free when probed but another process may take it before llama-server binds it.
        let lastError: unknown;
        for (let attempt = 0; attempt < 3; attempt++) {
            try {
                return await LlamaServerPeer.startOnce(options);
            } catch (error) {
                lastError = error;
                if (!(error instanceof Error) || !/bind|address already in use/i.test(error.message)) throw error;
            }
        }
        throw lastError;
    }

    private static async startOnce(options: LlamaServerPeerOptions): Promise<LlamaServerPeer> {
        const binary = options.binary ?? await ensureLlamaServer();
        if (!fs.existsSync(options.model)) throw new Error(`model not found: ${options.model}`);
        const parallel = options.parallel;
        const ctxPerSlot = options.ctxPerSlot ?? 2048;
        const threads = options.threads ?? 1;
        const port = await freePort();
        const help = serverHelp(binary);
        const args = [
            "-m", options.model,
            "--host", "127.0.0.1",
            "--port", String(port),
            "--parallel", String(parallel),
            // -c is the whole KV cache, shared by the slots: each slot gets ctxPerSlot.
            "-c", String(parallel * ctxPerSlot),
            "-t", String(threads),
            // Prompt evaluation would otherwise use the default thread count in older releases.
            "-tb", String(threads),
            "--cont-batching",
            // Prometheus counters (prompt tokens processed/cached, tokens predicted, llama_decode calls).
            "--metrics",
            ...(help.includes("--no-webui") ? ["--no-webui"] : []),
            ...(options.extraArgs ?? []),
        ];
        const logTail: string[] = [];
        const logStream = options.logFile == null ? undefined : fs.createWriteStream(options.logFile, {flags: "a"});
        const child = spawn(binary, args, {stdio: ["ignore", "pipe", "pipe"]});
        const onOutput = (chunk: Buffer) => {
            logStream?.write(chunk);
            for (const line of chunk.toString("utf8").split("\n")) {
                if (line === "") continue;
                logTail.push(line);
                if (logTail.length > LOG_TAIL_LINES) logTail.shift();
            }
        };
        child.stdout?.on("data", onOutput);
        child.stderr?.on("data", onOutput);
        child.once("exit", () => logStream?.end());
        const peer = new LlamaServerPeer(child, port, parallel, ctxPerSlot, args, logTail);
        try {
            await peer.waitHealthy(options.startupTimeoutMs ?? 120_000);
        } catch (error) {
            await peer.close();
            throw error;
        }
        return peer;
    }

    private async waitHealthy(timeoutMs: number): Promise<void> {
        const deadline = Date.now() + timeoutMs;
        while (Date.now() < deadline) {
            if (this.spawnError != null) throw this.spawnError;
            if (this.exitCode !== undefined) {
                throw new Error(`llama-server exited (code ${this.exitCode}) before it was ready:\n${this.recentLog()}`);
            }
            try {
                // 503 while the model loads, 200 {"status":"ok"} once the slots are ready.
                const response = await httpRequest(this.port, "GET", "/health", undefined, 5_000);
                if (response.status === 200) return;
            } catch {
                // not listening yet
            }
            await new Promise((resolve) => setTimeout(resolve, 100));
        }
        throw new Error(`llama-server not healthy after ${timeoutMs} ms:\n${this.recentLog()}`);
    }

    /** The last lines the server logged, for error messages. */
    recentLog(): string {
        return this.logTail.join("\n");
    }

    /** A JSON request; throws with the server's error message on a non-2xx status. */
    async json<T>(method: string, path: string, body?: unknown): Promise<T> {
        const response = await this.raw(method, path, body);
        if (response.status < 200 || response.status >= 300) {
            throw new Error(`llama-server ${method} ${path}: HTTP ${response.status}: ${response.body.slice(0, 2000)}`);
        }
        return JSON.parse(response.body) as T;
    }

    /** A request whose body is returned as text (e.g. a complete server-sent-events stream). */
    async raw(method: string, path: string, body?: unknown): Promise<HttpResult> {
        if (this.exitCode !== undefined) throw new Error(`llama-server is not running (exit code ${this.exitCode})`);
        return httpRequest(this.port, method, path, body);
    }

    /** Token ids of `content` (`/tokenize`); parseSpecial turns `[Retrieval]` etc. into their single ids. */
    async tokenize(content: string, parseSpecial = true): Promise<number[]> {
        const response = await this.json<{tokens: number[]}>("POST", "/tokenize", {content, add_special: false, parse_special: parseSpecial});
        return response.tokens;
    }

    /** Counters of `/metrics`, e.g. prompt_tokens_total, prompt_tokens_cached_total, tokens_predicted_total, n_decode_total. */
    async metrics(): Promise<PeerMetrics> {
        const response = await this.raw("GET", "/metrics");
        if (response.status !== 200) throw new Error(`llama-server /metrics: HTTP ${response.status}: ${response.body.slice(0, 500)}`);
        const metrics: PeerMetrics = {};
        for (const line of response.body.split("\n")) {
            const match = /^llamacpp:([A-Za-z0-9_]+)\s+(\S+)$/.exec(line.trim());
            if (match != null) metrics[match[1]] = Number(match[2]);
        }
        return metrics;
    }

    /** `/slots`: per-slot state (enabled by default in this llama.cpp). */
    async slots(): Promise<unknown[]> {
        return this.json<unknown[]>("GET", "/slots");
    }

    /** Stops the server: SIGTERM, then SIGKILL if it has not exited after 10 s; resolves once it exited. */
    async close(): Promise<void> {
        process.removeListener("exit", this.killOnParentExit);
        if (this.exitCode !== undefined) return;
        this.child.kill("SIGTERM");
        const timer = setTimeout(() => this.child.kill("SIGKILL"), 10_000);
        await this.exited;
        clearTimeout(timer);
    }
}
