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
    /** The option, flag or field the error is about, as the caller spelled it (`maxNewTokens`, `--max-new-tokens`). */
    public readonly option?: string;

    public constructor(message: string, code: SelfRagErrorCode | string, options?: {cause?: unknown, option?: string}) {
        super(message, options?.cause !== undefined ? {cause: options.cause} : undefined);
        this.name = "SelfRagError";
        this.code = code;
        if (options?.option != null) this.option = options.option;
    }
}

/**
 * Every code selfrag reports, with the HTTP status the server answers it with and what it means.
 * The error table of docs/errors.md is this table (a test checks both, and that every code thrown anywhere
 * in lib/ and native/ is here).
 */
export const ERROR_CODES = {
    // input and options
    INVALID_ARGUMENT: [400, "an option, argument or field is unknown (the nearest known name suggested), missing, of the wrong type or out of range, or needs another option; the message names it as the caller spelled it (`maxNewTokens`, `--max-new-tokens`)"],
    INVALID_REQUEST: [400, "an HTTP body is not a JSON object, or a question without passages was sent to a server without an index"],
    INVALID_JSON: [400, "an HTTP body is not JSON"],
    INVALID_JSONL: [400, "a line of a JSONL file (passages, evaluation records, questions) is not a valid record; file:line given"],
    INVALID_TRACE: [400, "a saved trace is not a valid trace record"],
    INVALID_TOKEN: [400, "a token id outside the model's vocabulary"],
    TOKENIZE_FAILED: [422, "llama.cpp could not tokenize the text"],
    DETOKENIZE_FAILED: [500, "llama.cpp could not turn token ids back into text"],
    EMPTY_PASSAGES: [400, "a passages file holds no passage"],
    CONTEXT_OVERFLOW: [422, "a prompt (plus the token budget) or a passage does not fit the context per sequence"],
    TOO_FEW_SLOTS: [422, "a question needs more sequence slots (ndocs, beamWidth x ndocs) than the model was loaded with"],
    SEQUENCE_OUT_OF_RANGE: [422, "a sequence slot index beyond the context's slots"],
    // HTTP
    UNAUTHORIZED: [401, "the server was started with an API key (--api-key) and the request did not send it as `Authorization: Bearer KEY`"],
    NOT_FOUND: [404, "no such route"],
    METHOD_NOT_ALLOWED: [405, "the route exists with another method"],
    PAYLOAD_TOO_LARGE: [413, "the body is over --max-body (not read past the limit)"],
    UNSUPPORTED_MEDIA_TYPE: [415, "a body that is not JSON: multipart, or a form or other non-JSON type whose body does not parse as JSON"],
    ABORTED: [499, "the request, question, build or evaluation was cancelled (client gone, signal, Ctrl-C)"],
    QUEUE_FULL: [503, "more requests wait for slots than --max-queue; retry (Retry-After)"],
    SCHEDULER_CLOSED: [503, "the server or scheduler is shutting down"],
    PORT_IN_USE: [500, "selfrag serve (or SelfRagServer.listen) cannot listen: the port is taken by another server; choose another --port (0: any free port)"],
    NO_INDEX: [501, "/v1/search on a server started without an index (start it with --index DIR)"],
    TIMEOUT: [504, "the request ran past its time limit (--timeout); its slots were freed"],
    // models and the engine
    MODEL_NOT_FOUND: [500, "no model file at the path given, and none pulled (see selfrag pull)"],
    DOWNLOAD_FAILED: [500, "selfrag pull could not download or copy the file"],
    INVALID_GGUF: [500, "the file is not a complete GGUF (truncated, corrupt, not GGUF); what is wrong is named"],
    MISSING_REFLECTION_TOKENS: [500, "the model's vocabulary lacks Self-RAG reflection tokens (not a Self-RAG model); the missing ones are listed"],
    MODEL_LOAD_FAILED: [500, "llama.cpp could not load the model"],
    MODEL_BUSY: [503, "the model is still loading"],
    MODEL_NOT_LOADED: [503, "the model handle has no model (load failed or not finished)"],
    MODEL_DISPOSED: [503, "the model was disposed"],
    MODEL_IN_USE: [500, "the model cannot be freed while a context uses it"],
    CONTEXT_CREATE_FAILED: [500, "llama.cpp could not create the context (memory for the KV cache?)"],
    CONTEXT_DISPOSED: [503, "the context was disposed while the work was queued or running"],
    KV_FULL: [503, "the KV cache has no room for any work at all (only the youngest item fails)"],
    DECODE_FAILED: [500, "llama_decode failed"],
    NAN_LOGITS: [500, "the model produced a logits row holding NaN (or only -Infinity): no token can be chosen, so the work fails; the row and index are named"],
    CUDA_UNAVAILABLE: [500, "a GPU kernel was asked for where there is none: the addon was built without the CUDA kernels (no nvcc at install, not the cuda variant) or no CUDA device is present; the reason is given"],
    CUDA_ERROR: [500, "a CUDA call failed while a GPU kernel ran (out of device memory, launch failure); the call and CUDA's error are named"],
    NO_PENDING_LOGITS: [500, "generation asked on a slot without a pending distribution (nothing prefilled)"],
    TRIM_UNSUPPORTED: [500, "the model's memory cannot remove positions (trim on a recurrent model)"],
    INVALID_STATE: [500, "an operation on an object in the wrong state (a closed worker, a context not created)"],
    ADDON_NOT_BUILT: [500, "the native addon is not built for the llama.cpp in use (run npm run build:addon)"],
    ADDON_LOAD_FAILED: [500, "the native addon exists but could not be loaded; each file tried is named"],
    // retrieval and evaluation
    CORPUS_NOT_FOUND: [400, "a corpus, evaluation or questions file does not exist"],
    CORPUS_READ_FAILED: [500, "a corpus file could not be read (I/O, bad gzip)"],
    EMPTY_CORPUS: [400, "a corpus (or questions file) holds no usable record"],
    MALFORMED_CORPUS: [400, "a malformed corpus line with --strict"],
    EMBEDDER_MISMATCH: [400, "the embedder differs from the one that built the index"],
    EMBEDDER_REQUIRED: [500, "the index was built with a GGUF embedder: open it with that embedder"],
    DIMENSION_MISMATCH: [500, "vectors of another dimension than the index's"],
    INDEX_NOT_FOUND: [500, "no index (manifest, vectors) in that directory"],
    INDEX_CORRUPT: [500, "an index file is damaged or from another build; which one is named"],
    INDEX_CLOSED: [503, "the index was closed"],
    NO_EXACT_VECTORS: [400, "exact search asked of an index built without vectors.f32 (--keep-vectors)"],
    OUTPUT_EXISTS: [409, "the output (index directory, evaluation file) exists: --overwrite / --resume"],
    OUTPUT_WRITE_FAILED: [500, "an output file could not be written (disk full, permissions); the records before it are complete: --resume"],
    BUILD_IN_PROGRESS: [409, "another build writes to the same output"],
    // distributed runs (selfrag worker, selfrag eval --redis)
    REDIS_UNAVAILABLE: [503, "the Redis of --redis cannot be reached at start (not running, wrong address, no answer within 5 s)"],
    MODEL_MISMATCH: [409, "a worker's model is not the one the run was started with (fingerprints differ): the worker put the question back and stopped"],
    WORKER_LOST: [503, "every worker that took a question died or stopped answering before finishing it (BullMQ's stalled-job limit)"],
    INTERNAL: [500, "a bug: please report it with the message"]
} as const satisfies Record<string, readonly [number, string]>;

export type SelfRagErrorCode = keyof typeof ERROR_CODES;

/** The HTTP status of an error code (500 for a code not in the table). */
export function httpStatusOf(code: string): number {
    return (ERROR_CODES as Record<string, readonly [number, string]>)[code]?.[0] ?? 500;
}

/** The sharp-style helper: one message shape for every rejected option, `name` as the caller spelled it. */
export function invalidParameterError(name: string, expected: string, actual: unknown): SelfRagError {
    return new SelfRagError(`Expected ${expected} for ${name} but received ${shown(actual)}`, "INVALID_ARGUMENT", {option: name});
}

/** A value as an error message shows it: short, typed, never the whole of a large object. */
function shown(actual: unknown): string {
    if (actual === undefined) return "nothing";
    if (typeof actual === "function") return "a function";
    let text: string;
    try {
        text = typeof actual === "object" && actual !== null ? JSON.stringify(actual) ?? String(actual) : typeof actual === "string" ? JSON.stringify(actual) : String(actual);
    } catch {
        text = String(actual); // a cycle: its type says enough
    }
    if (text.length > 80) text = `${text.slice(0, 77)}...`;
    return `${text} of type ${Array.isArray(actual) ? "array" : actual === null ? "null" : typeof actual}`;
}

/**
 * An option nobody knows, refused by name with the nearest known one (a misspelt option silently
 * ignored would give an answer computed with other settings than the caller asked for).
 */
export function unknownOptionError(name: string, known: readonly string[], what = "option", display: (key: string) => string = (k) => k): SelfRagError {
    const near = nearestName(name, known);
    return new SelfRagError(`unknown ${what} ${JSON.stringify(display(name))}` +
        (near != null ? ` (did you mean ${JSON.stringify(display(near))}?)` : ` (known: ${known.map(display).join(", ")})`),
    "INVALID_ARGUMENT", {option: display(name)});
}

/** The known name closest to `name` (case-insensitive edit distance at most a third of its length, at least 2), if any. */
export function nearestName(name: string, known: readonly string[]): string | undefined {
    const a = name.toLowerCase();
    let best: string | undefined;
    let bestDistance = Math.max(2, Math.floor(a.length / 3)) + 1;
    for (const candidate of known) {
        const d = editDistance(a, candidate.toLowerCase());
        if (d < bestDistance) {
            best = candidate;
            bestDistance = d;
        }
    }
    return best;
}

function editDistance(a: string, b: string): number {
    let previous = Array.from({length: b.length + 1}, (_, j) => j);
    for (let i = 1; i <= a.length; i++) {
        const row = [i];
        for (let j = 1; j <= b.length; j++) row[j] = Math.min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
        previous = row;
    }
    return previous[b.length];
}

export function requirePositiveInteger(name: string, value: unknown, max = Number.MAX_SAFE_INTEGER): number {
    return requireInteger(name, value, 1, max);
}

export function requireInteger(name: string, value: unknown, min: number, max: number): number {
    if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
        throw invalidParameterError(name, `an integer between ${min} and ${max}`, value);
    }
    return value;
}

export function requireNumberInRange(name: string, value: unknown, min: number, max: number): number {
    if (typeof value !== "number" || !Number.isFinite(value) || value < min || value > max) {
        throw invalidParameterError(name, `a number between ${min} and ${max}`, value);
    }
    return value;
}

export function requireBoolean(name: string, value: unknown): boolean {
    if (typeof value !== "boolean") throw invalidParameterError(name, "true or false", value);
    return value;
}

export function requireString(name: string, value: unknown, options: {nonBlank?: boolean} = {}): string {
    if (typeof value !== "string" || (options.nonBlank === true && value.trim() === "")) {
        throw invalidParameterError(name, options.nonBlank === true ? "a non-empty string" : "a string", value);
    }
    return value;
}

export function requireOneOf<T extends string>(name: string, value: unknown, values: readonly T[]): T {
    if (typeof value !== "string" || !values.includes(value as T)) throw invalidParameterError(name, values.map((v) => JSON.stringify(v)).join(" | "), value);
    return value as T;
}

/** A plain object (not null, not an array), or the error naming it. */
export function requireObject(name: string, value: unknown): Record<string, unknown> {
    if (value == null || typeof value !== "object" || Array.isArray(value)) throw invalidParameterError(name, "an object", value);
    return value as Record<string, unknown>;
}

/** Refuses keys of `value` not in `known`, each named by `display` as the caller spells it. */
export function refuseUnknownKeys(value: object, known: readonly string[], what = "option", display?: (key: string) => string): void {
    for (const key of Object.keys(value)) {
        if (!known.includes(key) && (value as Record<string, unknown>)[key] !== undefined) throw unknownOptionError(key, known, what, display);
    }
}
