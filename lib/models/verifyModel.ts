// Is this file a Self-RAG model? Its GGUF metadata (never its weights) must hold all 15 reflection
// tokens in the vocabulary, and the file must be as long as its tensors say (a cut download is
// refused here, not at load time).
import fs from "node:fs";
import path from "node:path";
import type {GgufFileInfo} from "node-llama-cpp";
import {SelfRagError} from "../errors.js";
import {REFLECTION_TOKENS} from "../engine/ReflectionTokens.js";
import {readGgufSummarySync, tensorBytes} from "./GgufVocabulary.js";

/** What a metadata check found. */
export interface ModelCheck {
    /** Every reflection token is in the vocabulary and the file is complete. */
    selfRag: boolean;
    /** Vocabulary size (0 when the file has no tokenizer or could not be read). */
    vocabularySize: number;
    /** The reflection tokens the vocabulary lacks (all 15 when it has none). */
    missingTokens: string[];
    /** Why the file could not be read as GGUF, if it could not (INVALID_GGUF). */
    error?: {code: string, message: string};
    /** GGUF `general.name`, when present. */
    name?: string;
    /** GGUF `general.architecture`, when present. */
    architecture?: string;
}

/** The reflection tokens absent from a vocabulary. */
export function missingReflectionTokens(tokens: readonly string[] | undefined): string[] {
    const vocabulary = new Set(tokens ?? []);
    return REFLECTION_TOKENS.map((t) => t.text).filter((text) => !vocabulary.has(text));
}

/** The end of the last tensor's data, by the file's own tensor table (a lower bound for unknown types). */
function expectedFileSize(info: GgufFileInfo): number {
    let end = info.infoEndOffset ?? 0;
    for (const tensor of info.tensorInfo ?? []) {
        end = Math.max(end, Number(tensor.fileOffset) + tensorBytes(tensor.dimensions, tensor.ggmlType as number));
    }
    return end;
}

/**
 * Reads a GGUF file's metadata with node-llama-cpp's `readGgufFileInfo` (no weights are read) and
 * reports whether it is a complete Self-RAG model. Never throws for a bad file: the reason is in
 * `error` (INVALID_GGUF) or `missingTokens`.
 */
export async function checkSelfRagModel(file: string, label = path.basename(file)): Promise<ModelCheck> {
    const invalid = (message: string): ModelCheck => ({
        selfRag: false, vocabularySize: 0, missingTokens: missingReflectionTokens(undefined), error: {code: "INVALID_GGUF", message}
    });
    let size: number;
    try {
        size = fs.statSync(file).size;
    } catch (error) {
        return {...invalid(""), error: {code: "MODEL_NOT_FOUND", message: `model file not found: ${file} (${(error as NodeJS.ErrnoException).code ?? "unreadable"})`}};
    }
    let info: GgufFileInfo;
    try {
        const {readGgufFileInfo} = await import("node-llama-cpp");
        info = await readGgufFileInfo(file, {sourceType: "filesystem", logWarnings: false, spliceSplitFiles: false, readTensorInfo: true});
    } catch (error) {
        const why = (error as Error)?.message?.split("\n")[0] ?? String(error);
        return invalid(`${label} is not a valid GGUF file (${why})`);
    }
    const metadata = info.metadata as unknown as {
        tokenizer?: {ggml?: {tokens?: unknown}}, general?: {name?: unknown, architecture?: unknown}
    };
    const rawTokens = metadata.tokenizer?.ggml?.tokens;
    const tokens = Array.isArray(rawTokens) ? rawTokens.filter((t): t is string => typeof t === "string") : undefined;
    const missingTokens = missingReflectionTokens(tokens);
    const check: ModelCheck = {
        selfRag: missingTokens.length === 0,
        vocabularySize: tokens?.length ?? 0,
        missingTokens,
        name: typeof metadata.general?.name === "string" ? metadata.general.name : undefined,
        architecture: typeof metadata.general?.architecture === "string" ? metadata.general.architecture : undefined
    };
    const expected = expectedFileSize(info);
    if (size < expected) {
        check.selfRag = false;
        check.error = {
            code: "INVALID_GGUF",
            message: `${label} is cut short: ${size} bytes where its tensors need ${expected} (an incomplete download?)`
        };
    }
    return check;
}

/**
 * Throws unless `file` is a complete Self-RAG GGUF: INVALID_GGUF (not GGUF, malformed, cut short)
 * or MISSING_REFLECTION_TOKENS (naming the absent tokens). `label` names the file in the message.
 */
export async function verifySelfRagModel(file: string, label = file): Promise<ModelCheck> {
    const check = await checkSelfRagModel(file, label);
    if (check.error != null) throw new SelfRagError(check.error.message, check.error.code);
    if (!check.selfRag) {
        throw new SelfRagError(
            `${label} is not a Self-RAG model: its vocabulary (${check.vocabularySize} tokens) lacks ${check.missingTokens.length} of the ` +
            `${REFLECTION_TOKENS.length} reflection tokens (${check.missingTokens.join(", ")})`, "MISSING_REFLECTION_TOKENS");
    }
    return check;
}

/** Synchronous and metadata-only: true when `file` is a complete GGUF with all 15 reflection tokens; false for anything else. */
export function hasReflectionTokensSync(file: string): boolean {
    try {
        const {tokens, size, expectedSize} = readGgufSummarySync(file);
        return tokens != null && size >= expectedSize && missingReflectionTokens(tokens).length === 0;
    } catch {
        // Nothing lost: the question is only "is this a usable Self-RAG GGUF"; loading it reports why not.
        return false;
    }
}
