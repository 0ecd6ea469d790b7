// The OpenAI-compatible face: POST /v1/chat/completions. The last user message is the question;
// Self-RAG's own settings and what it found (passages, citations, critique) travel in a
// `selfrag` field that OpenAI clients pass through and ignore, so existing clients (the openai
// package, LangChain.js, LlamaIndex.TS) can call the engine unmodified.
import {randomUUID} from "node:crypto";
import {SelfRagError} from "../errors.js";
import type {LongFormAnswer} from "../selfrag/LongForm.js";
import type {ShortFormAnswer} from "../selfrag/ShortForm.js";
import {httpSurface, type Retriever} from "../selfrag/plan.js";
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

/** Chat parameters OpenAI defines. Sampling ones are accepted and ignored: Self-RAG decodes greedily. */
const KNOWN = new Set(["model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens", "temperature", "top_p",
    "n", "stop", "presence_penalty", "frequency_penalty", "logit_bias", "logprobs", "top_logprobs", "seed", "user", "response_format",
    "tools", "tool_choice", "parallel_tool_calls", "metadata", "store", "service_tier", "reasoning_effort", "modalities", "selfrag"]);

function fail(message: string, param: string | null): never {
    throw new OpenAiError(message, "INVALID_REQUEST", param);
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

export function parseChatRequest(raw: unknown, defaultModel: string, retriever?: Retriever): ChatRequest {
    if (raw == null || typeof raw !== "object" || Array.isArray(raw)) fail("the request body must be a JSON object", null);
    const body = raw as Record<string, unknown>;
    for (const key of Object.keys(body)) if (!KNOWN.has(key)) fail(`Unrecognized request argument supplied: ${key}`, key);
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
    if (body.model !== undefined && typeof body.model !== "string") fail("'model' must be a string", "model");
    if (body.stream !== undefined && typeof body.stream !== "boolean") fail("'stream' must be a boolean", "stream");
    if (body.n !== undefined && body.n !== 1) fail("only n = 1 is supported (Self-RAG returns its best candidate)", "n");
    const maxTokens = body.max_completion_tokens ?? body.max_tokens;
    if (maxTokens !== undefined && maxTokens !== null && (typeof maxTokens !== "number" || !Number.isInteger(maxTokens) || maxTokens < 1)) {
        fail("'max_tokens' must be a positive integer", body.max_completion_tokens !== undefined ? "max_completion_tokens" : "max_tokens");
    }
    for (const field of ["temperature", "top_p", "presence_penalty", "frequency_penalty", "seed"]) {
        if (body[field] !== undefined && body[field] !== null && typeof body[field] !== "number") fail(`'${field}' must be a number`, field);
    }
    const streamOptions = body.stream_options as {include_usage?: unknown} | undefined | null;
    if (streamOptions != null && (typeof streamOptions !== "object" || Array.isArray(streamOptions))) fail("'stream_options' must be an object", "stream_options");
    const extension = body.selfrag;
    if (extension !== undefined && (extension == null || typeof extension !== "object" || Array.isArray(extension))) {
        fail("'selfrag' must be an object of Self-RAG settings (passages, long, ndocs, threshold, ...)", "selfrag");
    }
    let answer: AnswerRequest;
    try {
        answer = parseAnswerRequest({
            ...(extension as object | undefined), question, ...(system != null && system.trim() !== "" ? {input: system} : {}),
            ...(maxTokens != null ? {maxNewTokens: maxTokens} : {})
        }, {surface: SELFRAG_FIELD, retriever});
    } catch (error) {
        if (!(error instanceof SelfRagError)) throw error;
        // The same code and message as /v1/answer, with OpenAI's `param`: the field as the client spelled it.
        throw new OpenAiError(error.message, error.code, error.option ?? null);
    }
    return {answer, stream: body.stream === true, includeUsage: streamOptions?.include_usage === true,
        model: typeof body.model === "string" ? body.model : defaultModel};
}

/** What the answer carries besides its text: retrieval, passages, citations and critique. */
export function selfragField(result: ShortFormAnswer | LongFormAnswer, long: boolean) {
    if (!long) {
        const r = shortFormJson(result as ShortFormAnswer);
        return {retrieve: r.retrieve, best: r.best, candidates: r.candidates, ...(r.votes != null ? {votes: r.votes} : {}), warnings: r.warnings};
    }
    const r = result as LongFormAnswer;
    return {retrieve: r.retrieve, docs: r.docs, segments: r.segments, stats: r.stats};
}

/**
 * OpenAI's usage. Short form: the prompt and the passages read, and the tokens generated over all
 * candidates. Long form: the formatted prompt, and every other token the search decoded (passages
 * and segments).
 */
export function usageOf(result: ShortFormAnswer | LongFormAnswer, long: boolean, promptTokens: number) {
    if (!long) {
        const stats = (result as ShortFormAnswer).stats;
        const prompt = stats.promptTokens + stats.passageTokens;
        return {prompt_tokens: prompt, completion_tokens: stats.generatedTokens, total_tokens: prompt + stats.generatedTokens};
    }
    const completion = Math.max(0, (result as LongFormAnswer).stats.evaluatedTokens - promptTokens);
    return {prompt_tokens: promptTokens, completion_tokens: completion, total_tokens: promptTokens + completion};
}

export function finishReason(result: ShortFormAnswer | LongFormAnswer, long: boolean): "stop" | "length" {
    if (long) return "stop";
    const r = result as ShortFormAnswer;
    return r.candidates[r.best]?.stopReason === "length" ? "length" : "stop";
}

export function completionId(): string {
    return `chatcmpl-${randomUUID().replace(/-/g, "").slice(0, 24)}`;
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
    return {error: {message: e.message, type: openAiErrorType(status), param: e instanceof OpenAiError ? e.param : null,
        code: e.code.toLowerCase()}};
}
