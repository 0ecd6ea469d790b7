// The OpenAI-compatible face: POST /v1/chat/completions. The last user message is the question;
// Self-RAG's own settings and what it found (passages, citations, critique) travel in a
// `selfrag` field that OpenAI clients pass through and ignore, so existing clients (the openai
// package, LangChain.js, LlamaIndex.TS) can call the engine unmodified.
import {randomUUID} from "node:crypto";
import {SelfRagError} from "../errors.js";
import type {LongFormAnswer} from "../selfrag/LongForm.js";
import type {ShortFormAnswer} from "../selfrag/ShortForm.js";
import {MAX_STOP_STRINGS, httpSurface, type Retriever} from "../selfrag/plan.js";
import {parseAnswerRequest, type AnswerRequest} from "./requestBodies.js";

/** The Self-RAG settings of a chat request, named as `selfrag.<field>` in errors. */
const SELFRAG_FIELD = httpSurface("selfrag.");
import {shortFormJson} from "./responses.js";

/** An error in OpenAI's shape: {"error": {"message", "type", "param", "code"}}. */
export class OpenAiError extends SelfRagError {
    public constructor(message: string, code: string, public readonly param: string | null = null) {
        super(message, code as SelfRagError["code"]);
    }
}

export interface ChatRequest {
    answer: AnswerRequest;
    stream: boolean;
    includeUsage: boolean;
    model: string;
}

/** POST /v1/completions: a raw prompt in the Self-RAG format, completed greedily. */
export interface CompletionRequest {
    prompt: string;
    maxTokens: number;
    stop: readonly string[];
    stream: boolean;
    includeUsage: boolean;
    model: string;
}

/** OpenAI's default budget of the legacy completions API. */
export const COMPLETION_DEFAULT_MAX_TOKENS = 16;

function fail(message: string, param: string | null): never {
    throw new OpenAiError(message, "INVALID_REQUEST", param);
}

/** A parameter whose value is refused: INVALID_ARGUMENT, `param` its name, as the plan's field errors. */
function refuse(param: string, message: string): never {
    throw new OpenAiError(message, "INVALID_ARGUMENT", param);
}

/** Checks one parameter (`param` its name) of a body. */
type Check = (value: unknown, body: Record<string, unknown>, param: string) => void;

const given = (v: unknown) => v !== undefined && v !== null;
const GREEDY = "Self-RAG decodes greedily";
/** Accepted and ignored: they change nothing a greedy, stateless server computes. */
const ignored: Check = () => undefined;

function number(param: string, v: unknown): number | undefined {
    if (!given(v)) return undefined;
    if (typeof v !== "number" || !Number.isFinite(v)) refuse(param, `'${param}' must be a number`);
    return v;
}

/** Refused whenever given (null counts as not given, as OpenAI reads it). */
function refused(why: string): Check {
    return (v, _body, param) => {
        if (given(v)) refuse(param, `'${param}' is not supported: ${why}`);
    };
}

/**
 * Every parameter OpenAI defines for the request bodies of /v1/chat/completions and
 * /v1/completions, with what this server does with it: honoured (checked here, used by the
 * route), accepted and ignored (harmless: nothing a greedy stateless server computes depends on
 * it), or refused with 400 naming it. A name not listed is refused as unrecognized.
 */
const SHARED: Record<string, Check> = {
    model: (v) => {
        if (v !== undefined && typeof v !== "string") refuse("model", "'model' must be a string");
    },
    stream: (v) => {
        if (given(v) && typeof v !== "boolean") refuse("stream", "'stream' must be a boolean");
    },
    stream_options: (v) => {
        if (!given(v)) return;
        if (typeof v !== "object" || Array.isArray(v)) refuse("stream_options", "'stream_options' must be an object");
        for (const [key, value] of Object.entries(v as object)) {
            if (key === "include_usage" || key === "include_obfuscation") {
                if (given(value) && typeof value !== "boolean") refuse(`stream_options.${key}`, `'stream_options.${key}' must be a boolean`);
            } else {
                refuse(`stream_options.${key}`, `Unrecognized stream option: ${key} (known: include_usage, include_obfuscation)`);
            }
        }
    },
    max_tokens: (v) => maxTokensOf("max_tokens", v),
    // Greedy decoding is what temperature 0 asks for; any other temperature asks for sampling.
    temperature: (v) => {
        const t = number("temperature", v);
        if (t !== undefined && t !== 0) refuse("temperature", `'temperature' must be 0 or left out: ${GREEDY} (got ${t}); sampling is not supported`);
    },
    // top_p 1 keeps every token; under temperature 0 any top_p is greedy as well.
    top_p: (v, body) => {
        const p = number("top_p", v);
        if (p !== undefined && p !== 1 && body.temperature !== 0) {
            refuse("top_p", `'top_p' must be 1 or left out (or come with temperature 0): ${GREEDY} (got ${p}); nucleus sampling is not supported`);
        }
    },
    presence_penalty: (v) => penalty("presence_penalty", v),
    frequency_penalty: (v) => penalty("frequency_penalty", v),
    logit_bias: (v) => {
        if (!given(v)) return;
        if (typeof v !== "object" || Array.isArray(v)) refuse("logit_bias", "'logit_bias' must be an object");
        if (Object.keys(v as object).length > 0) refuse("logit_bias", "'logit_bias' is not supported: the reflection tokens' probabilities are what Self-RAG scores");
    },
    n: (v) => {
        if (given(v) && v !== 1) refuse("n", "only n = 1 is supported (Self-RAG returns its best candidate; greedy decoding gives one completion)");
    },
    // Greedy decoding is deterministic: every seed gives the same output.
    seed: (v) => {
        if (given(v) && (typeof v !== "number" || !Number.isInteger(v))) refuse("seed", "'seed' must be an integer");
    },
    stop: (v) => {
        stopOf(v);
    },
    user: ignored, metadata: ignored, store: ignored, service_tier: ignored, prompt_cache_key: ignored, safety_identifier: ignored
};

const CHAT: Record<string, Check> = {
    ...SHARED,
    messages: ignored, // parsed by parseChatRequest
    selfrag: ignored, // parsed by parseAnswerRequest
    max_completion_tokens: (v) => maxTokensOf("max_completion_tokens", v),
    logprobs: (v) => {
        if (given(v) && v !== false) refuse("logprobs", "'logprobs' is not supported: the answer's critique scores are in the 'selfrag' field");
    },
    top_logprobs: refused("log-probs are not returned (the answer's critique scores are in the 'selfrag' field)"),
    tools: refused("Self-RAG answers questions; it does not call tools"),
    tool_choice: (v) => {
        if (given(v) && v !== "none") refuse("tool_choice", "'tool_choice' is not supported: Self-RAG answers questions; it does not call tools (only \"none\")");
    },
    parallel_tool_calls: ignored, // no tool is ever called
    functions: refused("Self-RAG answers questions; it does not call functions"),
    function_call: (v) => {
        if (given(v) && v !== "none") refuse("function_call", "'function_call' is not supported: Self-RAG answers questions; it does not call functions");
    },
    response_format: (v) => {
        if (!given(v)) return;
        const type = typeof v === "object" && !Array.isArray(v) ? (v as {type?: unknown}).type : undefined;
        if (type !== "text") refuse("response_format", `'response_format' ${typeof type === "string" ? `"${type}" ` : ""}is not supported: the answer is text`);
    },
    modalities: (v) => {
        if (!given(v)) return;
        if (!Array.isArray(v) || v.some((m) => m !== "text")) refuse("modalities", "'modalities' must be [\"text\"]: the answer is text");
    },
    audio: refused("the answer is text"),
    prediction: refused("predicted outputs are not supported"),
    reasoning_effort: refused("Self-RAG is not a reasoning model"),
    verbosity: refused("the answer's length follows max_tokens and stop only"),
    web_search_options: refused("retrieval is Self-RAG's own (passages or the server's index, in 'selfrag')")
};

const COMPLETIONS: Record<string, Check> = {
    ...SHARED,
    prompt: ignored, // parsed by parseCompletionRequest
    echo: (v) => {
        if (given(v) && v !== false) refuse("echo", "'echo' is not supported: the completion does not repeat the prompt");
    },
    suffix: refused("insertion is not supported"),
    logprobs: refused("log-probs are not returned"),
    best_of: (v) => {
        if (given(v) && v !== 1) refuse("best_of", "only best_of = 1 is supported (greedy decoding gives one completion)");
    }
};

function penalty(param: string, v: unknown): void {
    const p = number(param, v);
    if (p !== undefined && p !== 0) refuse(param, `'${param}' must be 0 or left out: repetition penalties are not supported (${GREEDY})`);
}

function maxTokensOf(param: string, v: unknown): number | undefined {
    if (!given(v)) return undefined;
    if (typeof v !== "number" || !Number.isInteger(v) || v < 1) refuse(param, `'${param}' must be a positive integer`);
    return v;
}

/** `stop`: a string or up to 4 strings, as a list (empty: none). */
function stopOf(v: unknown): string[] {
    if (!given(v)) return [];
    const list = typeof v === "string" ? [v] : v;
    if (!Array.isArray(list) || list.length > MAX_STOP_STRINGS || list.some((s) => typeof s !== "string" || s === "")) {
        refuse("stop", `'stop' must be a non-empty string or an array of up to ${MAX_STOP_STRINGS} non-empty strings`);
    }
    return list as string[];
}

/** Refuses unknown parameters and every known one this server cannot honour, by name. */
function checkParameters(body: Record<string, unknown>, table: Record<string, Check>): void {
    for (const key of Object.keys(body)) {
        const check = table[key];
        if (check == null) fail(`Unrecognized request argument supplied: ${key}`, key);
        check(body[key], body, key);
    }
}

function textOf(content: unknown, param: string): string {
    if (typeof content === "string") return content;
    if (Array.isArray(content)) {
        return content.map((part, i) => {
            if (part == null || typeof part !== "object" || (part as {type?: unknown}).type !== "text" ||
                typeof (part as {text?: unknown}).text !== "string") {
                fail(`${param}[${i}] must be a text part {"type": "text", "text": "..."}; only text is supported`, `${param}[${i}]`);
            }
            return (part as {text: string}).text;
        }).join("");
    }
    return fail(`${param} must be a string or an array of text parts`, param);
}

function bodyObject(raw: unknown): Record<string, unknown> {
    if (raw == null || typeof raw !== "object" || Array.isArray(raw)) fail("the request body must be a JSON object", null);
    return raw as Record<string, unknown>;
}

export function parseChatRequest(raw: unknown, defaultModel: string, retriever?: Retriever): ChatRequest {
    const body = bodyObject(raw);
    checkParameters(body, CHAT);
    if (!Array.isArray(body.messages) || body.messages.length === 0) fail("'messages' must be a non-empty array", "messages");
    let question: string | undefined;
    let system: string | undefined;
    (body.messages as unknown[]).forEach((m, i) => {
        if (m == null || typeof m !== "object") fail(`messages[${i}] must be an object with "role" and "content"`, `messages[${i}]`);
        const {role, content} = m as {role?: unknown, content?: unknown};
        if (typeof role !== "string" || !["system", "developer", "user", "assistant", "tool"].includes(role)) {
            fail(`messages[${i}].role must be one of system, developer, user, assistant, tool`, `messages[${i}].role`);
        }
        if (role === "user") question = textOf(content, `messages[${i}].content`);
        if ((role === "system" || role === "developer") && content != null) system = textOf(content, `messages[${i}].content`);
    });
    if (question == null || question.trim() === "") fail("no user message: the last user message is the question", "messages");
    const maxTokens = maxTokensOf("max_completion_tokens", body.max_completion_tokens) ?? maxTokensOf("max_tokens", body.max_tokens);
    const stop = stopOf(body.stop);
    const extension = body.selfrag;
    if (extension !== undefined && (extension == null || typeof extension !== "object" || Array.isArray(extension))) {
        fail("'selfrag' must be an object of Self-RAG settings (passages, long, ndocs, threshold, ...)", "selfrag");
    }
    if (stop.length > 0 && (extension as {stop?: unknown} | undefined)?.stop !== undefined) {
        refuse("stop", "'stop' is given twice: as a parameter and as 'selfrag.stop'; give one");
    }
    let answer: AnswerRequest;
    try {
        answer = parseAnswerRequest({
            ...(extension as object | undefined), question, ...(system != null && system.trim() !== "" ? {input: system} : {}),
            ...(maxTokens != null ? {maxNewTokens: maxTokens} : {}), ...(stop.length > 0 ? {stop} : {})
        }, {surface: SELFRAG_FIELD, retriever});
    } catch (error) {
        if (!(error instanceof SelfRagError)) throw error;
        // The same code and message as /v1/answer, with OpenAI's `param`: the field as the client spelled it.
        throw new OpenAiError(error.message, error.code, error.option ?? null);
    }
    return {answer, stream: body.stream === true, includeUsage: includeUsage(body),
        model: typeof body.model === "string" ? body.model : defaultModel};
}

function includeUsage(body: Record<string, unknown>): boolean {
    return (body.stream_options as {include_usage?: unknown} | null | undefined)?.include_usage === true;
}

/** POST /v1/completions: `prompt` (one string) in the Self-RAG format, and the shared parameters. */
export function parseCompletionRequest(raw: unknown, defaultModel: string): CompletionRequest {
    const body = bodyObject(raw);
    checkParameters(body, COMPLETIONS);
    let prompt = body.prompt;
    if (Array.isArray(prompt) && prompt.length === 1 && typeof prompt[0] === "string") prompt = prompt[0];
    if (typeof prompt !== "string") {
        fail(Array.isArray(prompt) ? "'prompt' must be one string: several prompts and token arrays are not supported"
            : "'prompt' must be a string (the Self-RAG format: \"### Instruction:\\n...\\n\\n### Response:\\n\")", "prompt");
    }
    if (prompt === "") fail("'prompt' must not be empty", "prompt");
    return {
        prompt, maxTokens: maxTokensOf("max_tokens", body.max_tokens) ?? COMPLETION_DEFAULT_MAX_TOKENS, stop: stopOf(body.stop),
        stream: body.stream === true, includeUsage: includeUsage(body), model: typeof body.model === "string" ? body.model : defaultModel
    };
}

/**
 * What the answer carries besides its text: retrieval, passages, citations and critique, and
 * `usage`: every token the question cost (all candidates or the whole search), where OpenAI's
 * `usage` counts the answer's.
 */
export function selfragField(result: ShortFormAnswer | LongFormAnswer, long: boolean) {
    if (!long) {
        const r = shortFormJson(result as ShortFormAnswer);
        return {retrieve: r.retrieve, best: r.best, candidates: r.candidates, ...(r.votes != null ? {votes: r.votes} : {}), warnings: r.warnings,
            usage: {prompt_tokens: r.stats.promptTokens, passage_tokens: r.stats.passageTokens, generated_tokens: r.stats.generatedTokens}};
    }
    const r = result as LongFormAnswer;
    return {retrieve: r.retrieve, docs: r.docs, segments: r.segments, stats: r.stats,
        usage: {evaluated_tokens: r.stats.evaluatedTokens}};
}

/**
 * OpenAI's usage, of the answer. Short form: prompt_tokens is the prompt and the passages read,
 * completion_tokens the chosen candidate's generated tokens. Long form: the formatted prompt, and
 * the tokens of the best path's segments. What every candidate or segment cost is in `selfrag.usage`.
 */
export function usageOf(result: ShortFormAnswer | LongFormAnswer, long: boolean, promptTokens: number) {
    if (!long) {
        const r = result as ShortFormAnswer;
        const prompt = r.stats.promptTokens + r.stats.passageTokens;
        const completion = r.candidates[r.best]?.tokens ?? 0;
        return {prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion};
    }
    const completion = (result as LongFormAnswer).segments.reduce((n, s) => n + s.tokens, 0);
    return {prompt_tokens: promptTokens, completion_tokens: completion, total_tokens: promptTokens + completion};
}

export function finishReason(result: ShortFormAnswer | LongFormAnswer, long: boolean): "stop" | "length" {
    if (long) return "stop";
    const r = result as ShortFormAnswer;
    return r.candidates[r.best]?.stopReason === "length" ? "length" : "stop";
}

export function completionId(prefix = "chatcmpl"): string {
    return `${prefix}-${randomUUID().replace(/-/g, "").slice(0, 24)}`;
}

/** OpenAI's error type for an HTTP status. */
export function openAiErrorType(status: number): string {
    if (status === 401) return "authentication_error";
    if (status === 404) return "not_found_error";
    if (status === 429 || status === 503) return "rate_limit_error";
    if (status >= 500) return "server_error";
    return "invalid_request_error";
}

/** OpenAI's error body: {"error": {"message", "type", "param", "code"}}. */
export function openAiErrorBody(e: SelfRagError, status: number) {
    return {error: {message: e.message, type: openAiErrorType(status), param: e instanceof OpenAiError ? e.param : e.option ?? null,
        code: e.code.toLowerCase()}};
}
