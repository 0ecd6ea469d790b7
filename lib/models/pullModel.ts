// `selfrag pull`: fetch a model (node-llama-cpp's downloader for hf: URIs and URLs, a copy for a
// local file) into a temporary folder inside the models folder, keep it only if it is a complete
// Self-RAG GGUF, then move it in and record it.
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import {fileURLToPath} from "node:url";
import {SelfRagError} from "../errors.js";
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
}

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

async function download(uri: string, staging: string, showProgress: boolean): Promise<{entry: string, files: string[]}> {
    try {
        const {createModelDownloader} = await import("node-llama-cpp");
        const downloader = await createModelDownloader({
            modelUri: uri, dirPath: staging, showCliProgress: showProgress,
            // An interrupted pull leaves its partial file (and ipull's resume data) in the staging folder: the next pull of the same source resumes it.
            skipExisting: true, deleteTempFileOnCancel: false
        });
        const entry = await downloader.download();
        return {entry, files: downloader.filesInfo.map((f) => f.fileName)};
    } catch (error) {
        const reason = ((error as Error)?.message ?? String(error)).split("\n")[0];
        throw new SelfRagError(`could not download ${uri}: ${reason}`, "DOWNLOAD_FAILED", {cause: error});
    }
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
 * INVALID_GGUF / MISSING_REFLECTION_TOKENS (the file is deleted), DOWNLOAD_FAILED (download or copy failed), MODEL_NOT_FOUND
 * or INVALID_ARGUMENT.
 *
 * ```ts
 * const {path} = await pullModel("selfrag-7b", {dir: "/home/me/.cache/selfrag/models"});
 * ```
 */
export async function pullModel(source: string, options: PullOptions): Promise<PullResult> {
    const dir = path.resolve(options.dir);
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
            ({entry, files} = await download(origin.uri, staging, options.showProgress ?? false));
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
