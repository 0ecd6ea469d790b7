import fs from "node:fs";
import net from "node:net";
import {SelfRagError, invalidParameterError} from "../errors.js";
import {PassageIndex} from "../retrieval/PassageIndex.js";
import {SelfRagModel} from "../SelfRagModel.js";
import {SelfRagServer, listenError} from "../serving/SelfRagServer.js";
import {integerOption, requireModel} from "./options.js";
import {CACHE_FLAGS_HELP, cacheFlags, cacheOptions, parseCommand} from "./contract.js";

const help = `Usage: selfrag serve [--model FILE] [--index DIR] [--port N] [options]

An HTTP server over one model. Every question in flight shares each decode step, whatever its
options; a request arriving while others generate starts at the next step (docs/server.md
lists the request fields).
  POST /v1/answer            {"question", "passages"?, "long"?, "ndocs"?, "mode"?, "threshold"?, "maxNewTokens"?,
                              "weights"?, "task"?, "choices"?, "beamWidth"?, "maxDepth"?, "stream"?, ...}
                             "stream": true answers text/event-stream: retrieval, candidate|segment, answer
                             (or selfrag-error); ": keep-alive" comments while waiting for slots
  POST /v1/chat/completions  OpenAI-compatible (last user message = the question; Self-RAG data in "selfrag")
  POST /v1/search            {"query", "k"?}                 (with --index)
  GET  /health   GET /v1/stats   GET /metrics (Prometheus)   GET /v1/models
  --model FILE          a Self-RAG GGUF (default: $SELFRAG_MODEL, else the model \`selfrag pull\` recorded)
  --index DIR           retrieve for requests that bring no passages
  --port N (8080)       --host H (127.0.0.1; beyond loopback, set an API key)
  --api-key KEY         every route but /health needs "Authorization: Bearer KEY" (else 401); the
                        key is visible in the process list: prefer $SELFRAG_API_KEY or --api-key-file
  --api-key-file FILE   the key from the first line of FILE
  --sequences N         decoding slots (10): a short-form question takes ndocs of them, a long-form one
                        beamWidth x ndocs; more slots let more questions share each decode step
  --context-size N      tokens per slot (2048)
  --step-tokens N       tokens per decode step (512): generation first, then prefill chunks
  --kv-cells N          KV cache cells (sequences x context size): fewer overcommit memory; work waits
                        for free cells, and only work that can never get one fails (KV_FULL)
  --max-queue N         requests waiting for slots before 503 (1024)
  --timeout SECONDS     time limit per request, queue wait included (none); past it: 504
  --max-body BYTES      largest request body (1048576)
  --header-timeout S    a client must send its request headers within S seconds (30), ...
  --body-timeout S      ... and its whole request, body included, within S seconds (60); past either: 408
  --threads N --cpu
  ${CACHE_FLAGS_HELP}`;

export async function serveCommand(args: string[]): Promise<void> {
    const parsed = parseCommand("selfrag serve", help, {args, options: {
        model: {type: "string"}, index: {type: "string"}, port: {type: "string"}, host: {type: "string"}, sequences: {type: "string"},
        "context-size": {type: "string"}, "step-tokens": {type: "string"}, "kv-cells": {type: "string"}, timeout: {type: "string"}, "max-queue": {type: "string"}, "max-body": {type: "string"},
        threads: {type: "string"}, cpu: {type: "boolean"}, "header-timeout": {type: "string"}, "body-timeout": {type: "string"},
        "api-key": {type: "string"}, "api-key-file": {type: "string"}, ...cacheFlags
    }});
    if (parsed == null) return;
    const {values} = parsed;
    const port = integerOption("--port", values.port) ?? 8080;
    if (port < 0 || port > 65535) throw invalidParameterError("--port", "a port number from 0 to 65535", values.port);
    const apiKey = apiKeyOf(values["api-key"], values["api-key-file"]);
    const index = values.index != null ? await PassageIndex.open(values.index, {view: true}) : undefined;
    let model: SelfRagModel | undefined;
    let server: SelfRagServer | undefined;
    try {
        model = await SelfRagModel.load({
            modelPath: requireModel(values.model), sequences: integerOption("--sequences", values.sequences) ?? 10,
            contextSize: integerOption("--context-size", values["context-size"]) ?? 2048, threads: integerOption("--threads", values.threads),
            stepTokens: integerOption("--step-tokens", values["step-tokens"]), kvCells: integerOption("--kv-cells", values["kv-cells"]),
            gpu: values.cpu ? false : "auto", nodeLlamaCpp: false, ...cacheOptions(values)
        });
        const timeout = values.timeout != null ? Number(values.timeout) : 0;
        if (!Number.isFinite(timeout) || timeout < 0) throw invalidParameterError("--timeout", "a number of seconds >= 0", values.timeout);
        const seconds = (flag: string, value: string | undefined) => {
            if (value == null) return undefined;
            const n = Number(value);
            if (!Number.isFinite(n) || n <= 0) throw invalidParameterError(flag, "a number of seconds > 0", value);
            return n * 1000;
        };
        server = await SelfRagServer.listen({
            model, index, port, host: values.host, apiKey, maxBodyBytes: integerOption("--max-body", values["max-body"]),
            headersTimeoutMs: seconds("--header-timeout", values["header-timeout"]), requestTimeoutMs: seconds("--body-timeout", values["body-timeout"]),
            scheduler: {maxQueue: integerOption("--max-queue", values["max-queue"]), timeoutMs: timeout * 1000}
        });
    } catch (error) {
        await model?.dispose();
        await index?.close();
        // A failure to listen names the flags (--port, --host) rather than the library's options.
        if (error instanceof SelfRagError && (error.option === "port" || error.option === "host") && error.cause instanceof Error) {
            throw listenError(error.cause, values.host ?? "127.0.0.1", port, {port: "--port", host: "--host"});
        }
        throw error;
    }
    const listening = new URL(server.url).hostname.replace(/^\[|\]$/g, "");
    if (apiKey == null && !isLoopback(listening)) {
        console.error(`selfrag: warning: listening on ${listening} without an API key: anyone who can reach it can use this server ` +
            "(set one with --api-key-file FILE or $SELFRAG_API_KEY)");
    }
    console.log(`selfrag: serving ${values.model ?? "the default model"} on ${server.url}` +
        `${index != null ? ` with ${index.size} passages from ${index.dir}` : ""} (Ctrl-C stops)`);
    // Stop cleanly: no new connections, queued requests get 503, running ones finish.
    await new Promise<void>((resolve) => {
        const stop = () => {
            process.off("SIGINT", stop);
            process.off("SIGTERM", stop);
            resolve();
        };
        process.on("SIGINT", stop);
        process.on("SIGTERM", stop);
    });
    console.log("selfrag: stopping...");
    await server.close();
    await model.dispose();
    await index?.close();
}

/** The API key: --api-key, else the first line of --api-key-file, else $SELFRAG_API_KEY. Errors never show it. */
function apiKeyOf(flag: string | undefined, file: string | undefined): string | undefined {
    if (flag != null && file != null) throw new SelfRagError("give --api-key or --api-key-file, not both", "INVALID_ARGUMENT", {option: "--api-key-file"});
    let key: string | undefined;
    let from: string;
    if (flag != null) {
        key = flag;
        from = "--api-key";
    } else if (file != null) {
        try {
            key = fs.readFileSync(file, "utf8").split(/\r?\n/)[0].trim();
        } catch (error) {
            throw new SelfRagError(`--api-key-file ${file}: ${(error as NodeJS.ErrnoException).code ?? "cannot be read"}`, "INVALID_ARGUMENT",
                {option: "--api-key-file"});
        }
        from = `the first line of ${file}`;
    } else {
        key = process.env.SELFRAG_API_KEY;
        from = "$SELFRAG_API_KEY";
        if (key === "") key = undefined;
    }
    if (key != null && !/^[\x21-\x7e]+$/.test(key)) {
        throw new SelfRagError(`the API key (${from}) must be printable ASCII without spaces, and not empty`, "INVALID_ARGUMENT",
            {option: from.startsWith("--") ? from : "--api-key"});
    }
    return key;
}

/** 127.0.0.0/8, ::1 and localhost: only this machine can connect. */
function isLoopback(host: string): boolean {
    if (host === "localhost" || host === "::1") return true;
    if (net.isIPv4(host)) return host.startsWith("127.");
    return /^::ffff:127\./i.test(host);
}
