#!/usr/bin/env node
// The `selfrag` command. Each subcommand lives in its own module, imported only when it runs, so
// `selfrag --help` and `selfrag ask` do not pay for the server, the evaluation or the retrieval
// code they do not use (and `--help` loads no native module); this file routes and turns every
// failure into one clear line (and exit code 1) instead of a stack trace (see contract.ts).
import fs from "node:fs";
import path from "node:path";
import {fileURLToPath} from "node:url";
import {SelfRagError} from "../errors.js";
import {markPhase} from "../timings.js";
import {quietOnClosedStdout, reportFailure} from "./contract.js";

type Run = (args: string[]) => Promise<void>;

const commands: Record<string, {summary: string, load: () => Promise<Run>}> = {
    demo: {summary: "a full Self-RAG round on a built-in corpus (fixture model when no model is pulled)",
        load: async () => (await import("./demoCommand.js")).demoCommand},
    ask: {summary: "answer a question with short-form Self-RAG over given passages",
        load: async () => (await import("./askCommand.js")).askCommand},
    view: {summary: "an HTML page of a saved answer: the long-form search tree, or the short-form candidates",
        load: async () => (await import("./viewCommand.js")).viewCommand},
    rerank: {summary: "re-score saved traces with other critique weights (no model needed)",
        load: async () => (await import("./rerankCommand.js")).rerankCommand},
    tune: {summary: "fit the retrieval threshold and critique weights to eval traces by exact replay (no model needed)",
        load: async () => (await import("./tuneCommand.js")).tuneCommand},
    inspect: {summary: "reflection-token log-probs and p_retrieve after a prompt",
        load: async () => (await import("./inspectCommand.js")).inspectCommand},
    fixture: {summary: "write a generated test model (GGUF) with the Self-RAG vocabulary",
        load: async () => (await import("./fixtureCommand.js")).fixtureCommand},
    index: {summary: "build a passage index (USearch vectors + SQLite passages) from a corpus file",
        load: async () => (await import("./indexCommand.js")).indexCommand},
    search: {summary: "find the passages of an index closest to a query",
        load: async () => (await import("./searchCommand.js")).searchCommand},
    eval: {summary: "answer every question of an evaluation file in batches, write JSONL, score with the reference metric",
        load: async () => (await import("./evalCommand.js")).evalCommand},
    worker: {summary: "answer the questions of distributed runs (eval --redis) from a Redis queue, sharing decode steps",
        load: async () => (await import("./workerCommand.js")).workerCommand},
    "eval-retrieval": {summary: "retrieval-only evaluation of an index against BEIR qrels: recall@k, nDCG@10, MRR",
        load: async () => (await import("./evalRetrievalCommand.js")).evalRetrievalCommand},
    serve: {summary: "an HTTP server answering JSON requests, batching concurrent ones",
        load: async () => (await import("./serveCommand.js")).serveCommand},
    bench: {summary: "decoding speed on your model: engine, Self-RAG and naive-peer rows, like llama-bench",
        load: async () => (await import("./benchCommand.js")).benchCommand},
    pull: {summary: "download a Self-RAG model (hf: URI, URL, file or known name), verify it, make it the default",
        load: async () => (await import("./pullCommand.js")).pullCommand},
    models: {summary: "list the models folder: sizes, Self-RAG or not, the default",
        load: async () => (await import("./modelsCommand.js")).modelsCommand}
};

function usage(): string {
    return "Usage: selfrag <command> [options]\n\nCommands:\n" +
        Object.entries(commands).map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`).join("\n") +
        "\n\nRun `selfrag <command> --help` (or -h) for a command's options; `selfrag --version` prints the version.\n" +
        "Errors are one line on stderr, `selfrag: <message> [CODE]`, with exit code 1 (SELFRAG_DEBUG=1 adds the stack).";
}

/** The version in the package's package.json (dist/lib/cli/main.js is three folders below it). */
function version(): string {
    const file = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "package.json");
    return (JSON.parse(fs.readFileSync(file, "utf8")) as {version: string}).version;
}

async function main(argv: string[]): Promise<void> {
    const [name, ...rest] = argv;
    if (name == null || name === "--help" || name === "-h" || name === "help") {
        console.log(usage());
        return;
    }
    if (name === "--version" || name === "-v") {
        console.log(version());
        return;
    }
    const command = Object.hasOwn(commands, name) ? commands[name] : undefined;
    if (command == null) {
        const what = name.startsWith("-") ? `unknown option ${name}` : `unknown command "${name}"`;
        throw new SelfRagError(`${what} (commands: ${Object.keys(commands).join(", ")}; see \`selfrag --help\`)`, "INVALID_ARGUMENT");
    }
    const run = await command.load();
    markPhase("import");
    await run(rest);
    markPhase("done");
}

// One line `selfrag: <message> [CODE]` and exit code 1 for every failure, a quiet exit when
// stdout is closed early (`selfrag demo | head -1`).
quietOnClosedStdout();
process.on("uncaughtException", (error) => {
    reportFailure(error);
    process.exit(1);
});
main(process.argv.slice(2)).catch(reportFailure);
