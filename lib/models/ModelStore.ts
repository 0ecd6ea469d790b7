// The models folder (`<cache>/models`, cache = $SELFRAG_HOME or ~/.cache/selfrag): the GGUF files
// `selfrag pull` kept, and a small manifest `selfrag-models.json` naming the default one and where
// each file came from. The manifest is only a record: files put in the folder by hand count too.
import fs from "node:fs";
import path from "node:path";
import {checkSelfRagModel, hasReflectionTokensSync, type ModelCheck} from "./verifyModel.js";

export const MANIFEST_FILE = "selfrag-models.json";

/** Where one pulled file came from. */
export interface ModelRecord {
    /** What was given to `selfrag pull` (a known name, URI, URL or path). */
    source: string;
    /** The URI a known name stood for, when `source` was a known name. */
    uri?: string;
    /** Bytes, when pulled. */
    size: number;
    /** ISO time of the pull. */
    pulledAt: string;
}

export interface ModelManifest {
    /** File name (in the models folder) of the default model. */
    default?: string;
    models: Record<string, ModelRecord>;
}

/** Split GGUF parts after the first (`name-00002-of-00003.gguf`): not models on their own. */
const LATER_SPLIT_PART = /-(\d{5})-of-\d{5}\.gguf$/i;

function isEntrypointGguf(name: string): boolean {
    if (!/\.gguf$/i.test(name) || name.startsWith(".")) return false;
    const part = LATER_SPLIT_PART.exec(name);
    return part == null || Number(part[1]) === 1;
}

/** The manifest of a models folder; an absent or unreadable one is empty (it is never needed to find a model). */
export function readManifest(dir: string): ModelManifest {
    let parsed: unknown;
    try {
        parsed = JSON.parse(fs.readFileSync(path.join(dir, MANIFEST_FILE), "utf8"));
    } catch {
        // Nothing lost: the manifest only adds sources and the default; models are found by their files.
        return {models: {}};
    }
    const manifest = parsed as Partial<ModelManifest> | null;
    const models = manifest?.models != null && typeof manifest.models === "object" && !Array.isArray(manifest.models) ? manifest.models : {};
    return {default: typeof manifest?.default === "string" ? manifest.default : undefined, models};
}

/** Writes the manifest atomically (a temporary file in the same folder, then a rename). */
export function writeManifest(dir: string, manifest: ModelManifest): void {
    fs.mkdirSync(dir, {recursive: true});
    const target = path.join(dir, MANIFEST_FILE);
    const temporary = path.join(dir, `.${MANIFEST_FILE}.${process.pid}.${Date.now()}.tmp`);
    try {
        fs.writeFileSync(temporary, JSON.stringify(manifest, null, 2) + "\n");
        fs.renameSync(temporary, target);
    } finally {
        fs.rmSync(temporary, {force: true});
    }
}

/** Records a file of the folder (and makes it the default unless `makeDefault` is false). */
export function recordModel(dir: string, fileName: string, record: ModelRecord, makeDefault: boolean): ModelManifest {
    const manifest = readManifest(dir);
    manifest.models[fileName] = record;
    if (makeDefault) manifest.default = fileName;
    writeManifest(dir, manifest);
    return manifest;
}

/** The GGUF model files directly in `dir` (no hidden files, no later split parts), sorted by name. */
export function ggufFiles(dir: string): string[] {
    let entries: fs.Dirent[];
    try {
        entries = fs.readdirSync(dir, {withFileTypes: true});
    } catch (error) {
        // A folder not made yet holds no models; an unreadable one is an error to show.
        const code = (error as NodeJS.ErrnoException).code;
        if (code === "ENOENT" || code === "ENOTDIR") return [];
        throw error;
    }
    return entries.filter((e) => (e.isFile() || e.isSymbolicLink()) && isEntrypointGguf(e.name)).map((e) => e.name).sort();
}

export type LookupReason = "recorded default" | "selfrag*.gguf" | "has the reflection tokens";

/**
 * The model to use from a models folder, synchronously: the default `selfrag pull` recorded (if
 * the file is still there), else the first `selfrag*.gguf`, else the first other GGUF whose
 * vocabulary has the 15 reflection tokens (read from its metadata, never its weights).
 */
export function findModelIn(dir: string): {path: string, reason: LookupReason} | undefined {
    const recorded = readManifest(dir).default;
    if (recorded != null && path.basename(recorded) === recorded && fs.existsSync(path.join(dir, recorded))) {
        return {path: path.join(dir, recorded), reason: "recorded default"};
    }
    const files = ggufFiles(dir);
    const named = files.find((f) => /^selfrag.*\.gguf$/i.test(f));
    if (named != null) return {path: path.join(dir, named), reason: "selfrag*.gguf"};
    const withTokens = files.find((f) => hasReflectionTokensSync(path.join(dir, f)));
    return withTokens != null ? {path: path.join(dir, withTokens), reason: "has the reflection tokens"} : undefined;
}

/** One GGUF file of the models folder, as `selfrag models` lists it. */
export interface ModelEntry {
    file: string;
    path: string;
    size: number;
    /** All 15 reflection tokens in the vocabulary and the file complete. */
    selfRag: boolean;
    missingTokens: string[];
    vocabularySize: number;
    /** Why the file is not usable GGUF, when it is not. */
    error?: {code: string, message: string};
    /** The default model recorded by `pull`. */
    default: boolean;
    source?: string;
    pulledAt?: string;
}

export interface ModelListing {
    dir: string;
    /** The recorded default's file name, if any (even when the file is gone: see `defaultMissing`). */
    default?: string;
    defaultMissing: boolean;
    models: ModelEntry[];
}

/** Every GGUF model in the folder with its size, whether it is a Self-RAG model, and which is the default. */
export async function listModels(dir: string): Promise<ModelListing> {
    const manifest = readManifest(dir);
    const models: ModelEntry[] = [];
    for (const file of ggufFiles(dir)) {
        const full = path.join(dir, file);
        let size = 0;
        try {
            size = fs.statSync(full).size;
        } catch {
            continue; // a dangling link, or removed meanwhile
        }
        const check: ModelCheck = await checkSelfRagModel(full);
        const record = Object.hasOwn(manifest.models, file) ? manifest.models[file] : undefined;
        models.push({
            file, path: full, size, selfRag: check.selfRag, missingTokens: check.missingTokens, vocabularySize: check.vocabularySize,
            ...(check.error != null ? {error: check.error} : {}),
            default: manifest.default === file,
            ...(record != null ? {source: record.source, pulledAt: record.pulledAt} : {})
        });
    }
    const defaultMissing = manifest.default != null && !models.some((m) => m.default);
    return {dir, default: manifest.default, defaultMissing, models};
}
