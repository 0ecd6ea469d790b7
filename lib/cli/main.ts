#!/usr/bin/env node
// The `selfrag` command. Each subcommand lives in its own module; this file routes and turns
// SelfRagErrors into one clear line (and exit code 1) instead of a stack trace.
import {SelfRagError} from "../errors.js";
import {fixtureCommand} from "./fixtureCommand.js";
import {inspectCommand} from "./inspectCommand.js";
import {askCommand} from "./askCommand.js";
import {demoCommand} from "./demoCommand.js";
import {rerankCommand} from "./rerankCommand.js";
import {indexCommand} from "./indexCommand.js";
import {searchCommand} from "./searchCommand.js";
import {serveCommand} from "./serveCommand.js";
import {evalCommand} from "./evalCommand.js";

const commands: Record<string, {summary: string, run: (args: string[]) => Promise<void>}> = {
    demo: {summary: "a full Self-RAG round on a built-in corpus (fixture model when no model is pulled)", run: demoCommand},
    ask: {summary: "answer a question with short-form Self-RAG over given passages", run: askCommand},
    rerank: {summary: "re-score saved traces with other critique weights (no model needed)", run: rerankCommand},
    inspect: {summary: "reflection-token log-probs and p_retrieve after a prompt", run: inspectCommand},
    fixture: {summary: "write a generated test model (GGUF) with the Self-RAG vocabulary", run: fixtureCommand},
    index: {summary: "build a passage index (USearch vectors + SQLite passages) from a corpus file", run: indexCommand},
    search: {summary: "find the passages of an index closest to a query", run: searchCommand},
    eval: {summary: "answer every question of an evaluation file in batches, write JSONL, score with the reference metric", run: evalCommand},
    serve: {summary: "an HTTP server answering JSON requests, batching concurrent ones", run: serveCommand}
};

function usage(): string {
    return "Usage: selfrag <command> [options]\n\nCommands:\n" +
        Object.entries(commands).map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`).join("\n") +
        "\n\nRun `selfrag <command> --help` for a command's options.";
}

async function main(argv: string[]): Promise<void> {
    const [name, ...rest] = argv;
    if (name == null || name === "--help" || name === "-h") {
        console.log(usage());
        return;
    }
    const command = commands[name];
    if (command == null) throw new SelfRagError(`unknown command "${name}"\n\n${usage()}`, "INVALID_ARGUMENT");
    await command.run(rest);
}

main(process.argv.slice(2)).catch((error: unknown) => {
    if (error instanceof SelfRagError) {
        process.stderr.write(`selfrag: ${error.message} [${error.code}]\n`);
    } else if (error instanceof Error && (error as NodeJS.ErrnoException).code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
        process.stderr.write(`selfrag: ${error.message}\n`);
    } else {
        process.stderr.write(`selfrag: unexpected error: ${(error as Error)?.stack ?? String(error)}\n`);
    }
    process.exitCode = 1;
});
