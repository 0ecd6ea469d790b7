// `selfrag pull`: fetch a model (node-llama-cpp's downloader for hf: URIs and URLs, a copy for a
// local file) into a temporary folder inside the models folder, keep it only if it is a complete
// Self-RAG GGUF, then move it in and record it.
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import {fileURLToPath} from "node:url";
import {SelfRagError, invalidParameterError} from "../errors.js";
import {KNOWN_MODELS, knownModelUri} from "./knownModels.js";
import {readManifest, recordModel, type ModelRecord} from "./ModelStore.js";
import {verifySelfRagModel, type ModelCheck} from "./verifyModel.js";

export interface PullOptions {
    /** The models folder. */
    dir: string;
    /** Record the model as the default (true unless given false). */
    setDefault?: boolean;
    /** Download again even when the manifest says this source was pulled and the file is intact. */
    force?: boolean;
    /** node-llama-cpp's progress bar (on a terminal). */
    showProgress?: boolean;
    /**
     * Give up (DOWNLOAD_FAILED) when no byte has arrived for this long, in any network step:
     * resolving the source and asking for the file, then the transfer. Default 60 000 ms.
     */
    timeoutMs?: number;
    /** Each network step's progress: when it starts, as bytes arrive, and about once a second while nothing does. */
    onProgress?: (progress: PullProgress) => void;
}

/** Where a pull's network work stands. */
export interface PullProgress {
    /** "connect": resolving the source and asking the server for the file (no bytes of it yet); "download": the transfer. */
    step: "connect" | "download";
    /** What is waited for, e.g. `http://host/file.gguf`. */
    what: string;
    /** The server asked (host:port). */
    host: string;
    downloadedBytes: number;
    /** 0 while unknown. */
    totalBytes: number;
    /** Bytes per second over the last second or so (0 while nothing arrives). */
    bytesPerSecond: number;
    /** Milliseconds since the last byte arrived (or since the step began). */
    idleMs: number;
    /** When the pull gives up, in milliseconds without a byte (timeoutMs). */
    timeoutMs: number;
}

/** The default of PullOptions.timeoutMs: a minute without a byte. */
export const PULL_TIMEOUT_MS = 60_000;

export interface PullResult {
    /** What was asked for. */
    source: string;
    /** The URI or file it resolved to (a known name's URI, a file URL's path). */
    resolved: string;
    /** The model file in the models folder. */
    path: string;
    file: string;
    /** Bytes (all parts of a split model). */
    size: number;
    /** Recorded as the default. */
    default: boolean;
    /** The file was already there from an earlier pull of the same source: nothing was downloaded. */
    alreadyPresent: boolean;
    vocabularySize: number;
}

type Origin = {kind: "remote", uri: string} | {kind: "local", file: string};

const REMOTE_PREFIXES = /^(hf:|hf:\/\/|huggingface:|hf\.co\/|huggingface\.co\/|https?:\/\/)/i;

/** What a pull argument names: a known name, a remote URI/URL, or a local file. */
export function resolvePullSource(source: string): Origin {
    const known = knownModelUri(source);
    if (known != null) return {kind: "remote", uri: known};
    if (/^file:/i.test(source)) {
        try {
            return {kind: "local", file: fileURLToPath(source)};
        } catch (error) {
            throw new SelfRagError(`invalid file URL ${JSON.stringify(source)}: ${(error as Error).message}`, "INVALID_ARGUMENT", {cause: error});
        }
    }
    if (REMOTE_PREFIXES.test(source)) return {kind: "remote", uri: source};
    if (fs.existsSync(source)) return {kind: "local", file: path.resolve(source)};
    if (!/[\\/]/.test(source) && !/\.gguf$/i.test(source)) {
        throw new SelfRagError(`unknown model name ${JSON.stringify(source)} (known names: ${Object.keys(KNOWN_MODELS).join(", ")}; ` +
            "or give hf:user/repo:quant, hf:user/repo/file.gguf, an https URL or a local .gguf file)", "INVALID_ARGUMENT");
    }
    throw new SelfRagError(`model file not found: ${path.resolve(source)}`, "MODEL_NOT_FOUND");
}

/** The file's size, -1 when it is not there (any other failure is thrown). */
function fileSize(file: string): number {
    return fs.statSync(file, {throwIfNoEntry: false})?.size ?? -1;
}

/** The folder a pull of `key` downloads into: hidden, inside the models folder (same file system: the final move is a rename). */
function stagingDir(dir: string, key: string): string {
    return path.join(dir, `.pull-${crypto.createHash("sha256").update(key).digest("hex").slice(0, 16)}`);
}

/** The host a URI's requests go to, as people read it (host:port), for progress lines and errors. */
function hostOf(uri: string): string {
    try {
        if (/^https?:\/\//i.test(uri)) return new URL(uri).host;
    } catch {
        // not a URL after all: an hf: URI below
    }
    const endpoint = process.env.HF_ENDPOINT ?? process.env.MODEL_ENDPOINT;
    try {
        return endpoint != null && endpoint !== "" ? new URL(endpoint).host : "huggingface.co";
    } catch {
        return endpoint ?? "huggingface.co";
    }
}

/**
 * node-llama-cpp's downloader, watched: a "connect" step (its URI resolution and ipull's request
 * for the file's size; neither takes a signal), then the "download" step (cancelled through the
 * downloader). Either fails with DOWNLOAD_FAILED once nothing has arrived for timeoutMs.
 */
async function download(uri: string, staging: string, options: PullOptions): Promise<{entry: string, files: string[]}> {
    const timeoutMs = options.timeoutMs ?? PULL_TIMEOUT_MS;
    const host = hostOf(uri);
    let step: PullProgress["step"] = "connect";
    let downloaded = 0;
    let total = 0;
    let lastByteAt = Date.now();
    // Rate over a sliding second: [time, bytes] samples.
    let samples: [number, number][] = [[lastByteAt, 0]];
    const report = () => {
        const now = Date.now();
        samples = samples.filter(([t]) => now - t <= 1500);
        const [t0, b0] = samples[0] ?? [now, downloaded];
        const bytesPerSecond = now - t0 >= 200 ? (downloaded - b0) * 1000 / (now - t0) : 0;
        options.onProgress?.({step, what: uri, host, downloadedBytes: downloaded, totalBytes: total, bytesPerSecond,
            idleMs: now - lastByteAt, timeoutMs});
    };
    let stalled: (() => void) | undefined;
    const stall = new Promise<never>((_, reject) => {
        stalled = () => reject(new SelfRagError(`could not download ${uri}: nothing arrived from ${host} for ${formatSeconds(timeoutMs)} while ` +
            (step === "connect" ? "asking for the file" : `downloading (${downloaded} of ${total > 0 ? total : "?"} bytes)`) +
            " (the limit is --timeout / timeoutMs)", "DOWNLOAD_FAILED"));
    });
    stall.catch(() => undefined); // raced below; a stall after the end is nobody's failure
    const watchdog = setInterval(() => {
        if (Date.now() - lastByteAt >= timeoutMs) stalled!();
        else report();
    }, Math.max(20, Math.min(1000, Math.floor(timeoutMs / 4))));
    let downloader: {cancel(options?: {deleteTempFile?: boolean}): Promise<void>} | undefined;
    try {
        report();
        const {createModelDownloader} = await import("node-llama-cpp");
        const creating = createModelDownloader({
            modelUri: uri, dirPath: staging, showCliProgress: options.showProgress ?? false,
            // An interrupted pull leaves its partial file (and ipull's resume data) in the staging folder: the next pull of the same source resumes it.
            skipExisting: true, deleteTempFileOnCancel: false,
            onProgress: ({totalSize, downloadedSize}) => {
                total = totalSize;
                if (downloadedSize !== downloaded) {
                    downloaded = downloadedSize;
                    lastByteAt = Date.now();
                    samples.push([lastByteAt, downloaded]);
                    report();
                }
            }
        });
        // Its requests cannot be cancelled: if it gives up after the stall was reported, nothing is left to tell.
        creating.catch(() => undefined);
        const created = await Promise.race([creating, stall]);
        downloader = created;
        step = "download";
        lastByteAt = Date.now();
        samples = [[lastByteAt, downloaded]];
        report();
        const downloading = created.download();
        downloading.catch(() => undefined); // cancelled after a stall: that failure is already reported
        const entry = await Promise.race([downloading, stall]);
        report();
        return {entry, files: created.filesInfo.map((f) => f.fileName)};
    } catch (error) {
        if (error instanceof SelfRagError) {
            await downloader?.cancel({deleteTempFile: false}).catch(() => undefined);
            throw error;
        }
        const reason = ((error as Error)?.message ?? String(error)).split("\n")[0];
        throw new SelfRagError(`could not download ${uri}: ${reason}`, "DOWNLOAD_FAILED", {cause: error});
    } finally {
        clearInterval(watchdog);
    }
}

function formatSeconds(ms: number): string {
    return ms % 1000 === 0 ? `${ms / 1000} s` : `${(ms / 1000).toFixed(1)} s`;
}

/** Removes the staging folder if nothing worth resuming is left in it. */
function dropEmptyStaging(staging: string): void {
    try {
        if (fs.readdirSync(staging).length === 0) fs.rmdirSync(staging);
    } catch {
        // Nothing lost: the folder is absent already, or holds files again (a pull resumed meanwhile) and stays.
    }
}

/**
 * Pulls a Self-RAG model into `options.dir` and records it (see `selfrag pull --help`). Throws
 * INVALID_GGUF / MISSING_REFLECTION_TOKENS (the file is deleted), DOWNLOAD_FAILED (download or copy failed, or
 * nothing arrived for `timeoutMs`: a request node-llama-cpp made while resolving may then stay open
 * until the server or Node's own fetch timeouts close it), MODEL_NOT_FOUND
 * or INVALID_ARGUMENT.
 *
 * ```ts
 * const {path} = await pullModel("selfrag-7b", {dir: "/home/me/.cache/selfrag/models"});
 * ```
 */
export async function pullModel(source: string, options: PullOptions): Promise<PullResult> {
    const dir = path.resolve(options.dir);
    if (options.timeoutMs != null && !(Number.isFinite(options.timeoutMs) && options.timeoutMs > 0)) {
        throw invalidParameterError("timeoutMs", "a positive number of milliseconds", options.timeoutMs);
    }
    const setDefault = options.setDefault ?? true;
    const origin = resolvePullSource(source);
    const resolved = origin.kind === "remote" ? origin.uri : origin.file;
    // A local source is recorded by its absolute path (a relative one means nothing later).
    const record = (size: number): ModelRecord => origin.kind === "local"
        ? {source: origin.file, size, pulledAt: new Date().toISOString()}
        : {source, ...(resolved !== source ? {uri: resolved} : {}), size, pulledAt: new Date().toISOString()};
    fs.mkdirSync(dir, {recursive: true});

    // Downloaded before and intact: verify (metadata only) and re-record instead of downloading again.
    if (origin.kind === "remote" && !options.force) {
        const manifest = readManifest(dir);
        for (const [file, previous] of Object.entries(manifest.models)) {
            if (previous.source !== source && previous.uri !== resolved) continue;
            const full = path.join(dir, file);
            if (path.basename(file) !== file || fileSize(full) !== previous.size) continue;
            let check: ModelCheck;
            try {
                check = await verifySelfRagModel(full, file);
            } catch {
                continue; // damaged since: pull it again
            }
            recordModel(dir, file, previous, setDefault);
            return {source, resolved, path: full, file, size: previous.size, default: setDefault, alreadyPresent: true, vocabularySize: check.vocabularySize};
        }
    }

    // A file already in the models folder (put there by hand or by another tool): verify and record it in place.
    if (origin.kind === "local" && path.dirname(origin.file) === dir) {
        const file = path.basename(origin.file);
        const check = await verifySelfRagModel(origin.file, file);
        const size = fileSize(origin.file);
        recordModel(dir, file, record(size), setDefault);
        return {source, resolved, path: origin.file, file, size, default: setDefault, alreadyPresent: true, vocabularySize: check.vocabularySize};
    }

    if (origin.kind === "local" && !fs.statSync(origin.file).isFile()) {
        throw new SelfRagError(`${origin.file} is not a file`, "INVALID_ARGUMENT");
    }
    const staging = stagingDir(dir, resolved);
    fs.mkdirSync(staging, {recursive: true});
    let entry: string;
    let files: string[];
    if (origin.kind === "local") {
        files = [path.basename(origin.file)];
        entry = path.join(staging, files[0]);
        try {
            fs.copyFileSync(origin.file, entry);
        } catch (error) {
            fs.rmSync(staging, {recursive: true, force: true});
            throw new SelfRagError(`could not copy ${origin.file} into ${dir}: ${(error as Error).message}`, "DOWNLOAD_FAILED", {cause: error});
        }
    } else {
        try {
            ({entry, files} = await download(origin.uri, staging, options));
        } finally {
            dropEmptyStaging(staging);
        }
    }

    const file = path.basename(entry);
    let check: ModelCheck;
    try {
        check = await verifySelfRagModel(entry, `${file} (from ${source})`);
    } catch (error) {
        fs.rmSync(staging, {recursive: true, force: true});
        if (error instanceof SelfRagError) throw new SelfRagError(`${error.message}; the file was not kept`, error.code, {cause: error});
        throw error;
    }

    let size = 0;
    for (const name of files) {
        const from = path.join(staging, name);
        size += fileSize(from);
        fs.renameSync(from, path.join(dir, name));
    }
    fs.rmSync(staging, {recursive: true, force: true});
    recordModel(dir, file, record(size), setDefault);
    return {source, resolved, path: path.join(dir, file), file, size, default: setDefault, alreadyPresent: false, vocabularySize: check.vocabularySize};
}
