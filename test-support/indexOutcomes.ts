// Child process for the file-fault tests: opens each index directory given on the command line
// (mode: "hnsw" | "exact" | "hnsw-view" after the directory, separated by "=", then optionally the
// verify policy: "dir=hnsw=never"), searches it and prints, as one JSON array, whether that worked
// or which coded error it gave. A crash of a native library on a damaged file (USearch, SQLite)
// shows up as this process dying instead.
import {SelfRagError} from "../lib/errors.js";
import type {VerifyPolicy} from "../lib/retrieval/IndexIntegrity.js";
import {PassageIndex} from "../lib/retrieval/PassageIndex.js";

const outcomes: {dir: string, mode: string, outcome: string, code?: string, message?: string, hits?: number}[] = [];
for (const arg of process.argv.slice(2)) {
    const [dir, mode, verify] = arg.split("=");
    try {
        const index = await PassageIndex.open(dir, {mode: mode === "exact" ? "exact" : "hnsw", view: mode === "hnsw-view",
            verify: verify as VerifyPolicy | undefined});
        try {
            const hits = await index.search(["capital city of France", "w1 w2 w3 the of", "river"], 5);
            outcomes.push({dir, mode, outcome: "searched", hits: hits.flat().length});
        } finally {
            await index.close();
        }
    } catch (error) {
        outcomes.push(error instanceof SelfRagError
            ? {dir, mode, outcome: "error", code: error.code, message: error.message.slice(0, 600)}
            : {dir, mode, outcome: "uncoded", message: `${(error as Error)?.name}: ${String((error as Error)?.message ?? error).slice(0, 300)}`});
    }
}
process.stdout.write(JSON.stringify(outcomes) + "\n");
