import path from "node:path";
import {REFLECTION_COUNT} from "../engine/ReflectionTokens.js";
import {listModels} from "../models/ModelStore.js";
import {parseCommand} from "./contract.js";
import {cacheDir, findDefaultModel} from "./options.js";
import {formatSize} from "./pullCommand.js";

const help = `Usage: selfrag models [--dir DIR] [--json]

Lists the GGUF files in the models folder (default: $SELFRAG_HOME/models, or
~/.cache/selfrag/models) with their size, whether each is a Self-RAG model (all ${REFLECTION_COUNT} reflection
tokens in its vocabulary, file complete; read from the metadata only), which one \`selfrag pull\`
recorded as the default, and the model ask, demo, eval and serve use without --model
($SELFRAG_MODEL, else the recorded default, else selfrag*.gguf, else the first Self-RAG GGUF).
  --dir DIR   another models folder
  --json      {"dir", "default", "defaultMissing", "active", "models": [{"file", "path", "size",
              "selfRag", "missingTokens", "vocabularySize", "default", "source"?, "error"?}]}`;

export async function modelsCommand(args: string[]): Promise<void> {
    const parsed = parseCommand("selfrag models", help, {args, options: {dir: {type: "string"}, json: {type: "boolean"}}});
    if (parsed == null) return;
    const {values} = parsed;
    const defaultDir = path.join(cacheDir(), "models");
    const dir = path.resolve(values.dir ?? defaultDir);
    const listing = await listModels(dir);
    // What a command without --model would load (only meaningful for the default folder).
    const active = path.resolve(dir) === path.resolve(defaultDir) ? findDefaultModel() ?? null : null;
    if (values.json) {
        console.log(JSON.stringify({...listing, active}));
        return;
    }
    console.log(`models folder: ${dir}`);
    if (listing.models.length === 0) {
        console.log("  no GGUF files: run `selfrag pull selfrag-7b` (see `selfrag pull --help`)");
    }
    for (const m of listing.models) {
        const status = m.selfRag ? "Self-RAG"
            : m.error != null ? `not usable: ${m.error.message}`
                : `not Self-RAG: lacks ${m.missingTokens.length} of ${REFLECTION_COUNT} reflection tokens`;
        console.log(`${m.default ? "* " : "  "}${m.file.padEnd(40)} ${formatSize(m.size).padStart(10)}   ${status}` +
            (m.source != null && m.source !== m.file ? `   (from ${m.source})` : ""));
    }
    if (listing.default != null) {
        console.log(listing.defaultMissing ? `default recorded by pull: ${listing.default} (the file is gone)` : "* default (recorded by `selfrag pull`)");
    }
    if (active != null) console.log(`used without --model: ${active}${process.env.SELFRAG_MODEL ? " ($SELFRAG_MODEL)" : ""}`);
}
