/**
 * Every failure selfrag reports, from TypeScript or from the native addon, is a SelfRagError with
 * a stable `code`, so callers can branch on it:
 *
 * ```ts
 * try { await SelfRagModel.load({modelPath}); }
 * catch (e) { if (e instanceof SelfRagError && e.code === "MODEL_NOT_FOUND") ... }
 * ```
 */
export class SelfRagError extends Error {
    public readonly code: SelfRagErrorCode | string;

    public constructor(message: string, code: SelfRagErrorCode | string, options?: {cause?: unknown}) {
        super(message, options);
        this.name = "SelfRagError";
        this.code = code;
    }
}

export type SelfRagErrorCode =
    | "ADDON_NOT_BUILT" | "ADDON_LOAD_FAILED" | "INVALID_ARGUMENT" | "INVALID_STATE"
    | "MODEL_NOT_FOUND" | "DOWNLOAD_FAILED" | "INVALID_GGUF" | "MODEL_LOAD_FAILED" | "MISSING_REFLECTION_TOKENS"
    | "MODEL_DISPOSED" | "MODEL_IN_USE" | "CONTEXT_CREATE_FAILED" | "CONTEXT_DISPOSED" | "CONTEXT_BUSY"
    | "CONTEXT_OVERFLOW" | "TOO_FEW_SLOTS" | "SEQUENCE_OUT_OF_RANGE" | "KV_FULL" | "DECODE_FAILED" | "NO_PENDING_LOGITS"
    | "INVALID_TOKEN" | "TRIM_UNSUPPORTED" | "INTERNAL"
    // short and long form
    | "EMPTY_PASSAGES" | "INVALID_JSONL" | "INVALID_TRACE"
    // retrieval
    | "EMBEDDER_MISMATCH" | "EMBEDDER_REQUIRED" | "DIMENSION_MISMATCH" | "CORPUS_NOT_FOUND" | "CORPUS_READ_FAILED"
    | "EMPTY_CORPUS" | "MALFORMED_CORPUS" | "INDEX_NOT_FOUND" | "INDEX_CORRUPT" | "INDEX_CLOSED" | "NO_EXACT_VECTORS" | "OUTPUT_EXISTS"
    | "BUILD_IN_PROGRESS" | "ABORTED"
    // scheduler and server
    | "QUEUE_FULL" | "SCHEDULER_CLOSED" | "INVALID_REQUEST" | "PAYLOAD_TOO_LARGE" | "NOT_FOUND" | "METHOD_NOT_ALLOWED"
    | "UNSUPPORTED_MEDIA_TYPE" | "TIMEOUT" | "INVALID_JSON";

/** The sharp-style helper: one message shape for every rejected option. */
export function invalidParameterError(name: string, expected: string, actual: unknown): SelfRagError {
    const shown = typeof actual === "string" ? JSON.stringify(actual) : String(actual);
    return new SelfRagError(`Expected ${expected} for ${name} but received ${shown} of type ${typeof actual}`,
        "INVALID_ARGUMENT");
}

export function requirePositiveInteger(name: string, value: unknown, max = Number.MAX_SAFE_INTEGER): number {
    if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > max) {
        throw invalidParameterError(name, `an integer between 1 and ${max}`, value);
    }
    return value;
}

export function requireNumberInRange(name: string, value: unknown, min: number, max: number): number {
    if (typeof value !== "number" || !Number.isFinite(value) || value < min || value > max) {
        throw invalidParameterError(name, `a number between ${min} and ${max}`, value);
    }
    return value;
}
