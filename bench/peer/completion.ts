// Typed llama-server `/completion` calls returning, per generated token, its id, log-probability and
// the top-k alternatives: everything a FlashRAG-style Self-RAG client scores from.
//
// What this llama.cpp's server does with the request (tools/server/server-schema.cpp, server-context.cpp):
// - a string `prompt` is tokenized with add_special = true (BOS when the vocabulary asks for it) and
//   parse_special = true, so `[Retrieval]<paragraph>...` in the prompt become the single special tokens;
// - `n_probs: k` adds `completion_probabilities: [{id, token, bytes, logprob, top_logprobs: [{id, token,
//   bytes, logprob}]}]`; the values are the full-vocabulary softmax of the raw logits (temperature 1,
//   before any sampler) unless `post_sampling_probs` is set, which renames them to prob/top_probs;
// - generated special tokens are rendered as "" in `content` (and in `token`) unless the server runs
//   with --special or the request lists them in `preserved_tokens`; ids are always there;
// - with a `stop` string and no streaming, the server drops as many trailing probability entries as the
//   stop string has tokens when tokenized *without* special parsing ("[Retrieval]" is several text
//   tokens but one generated token), losing the last real tokens' probabilities. Requests with stop
//   strings therefore stream (one SSE event per token, each carrying that token's probabilities).
import type {LlamaServerPeer} from "./LlamaServerPeer.js";

export interface TopToken {
    id: number;
    logprob: number;
}

export interface GeneratedToken {
    id: number;
    /** log P(token) under the full-vocabulary softmax at temperature 1. */
    logprob: number;
    /** The k most likely tokens at this position (k = nProbs), most likely first. */
    top: TopToken[];
}

export interface CompletionRequest {
    prompt: string;
    nPredict: number;
    /** Top-k list size per position (FlashRAG reads 20). */
    nProbs: number;
    stop?: string[];
    /** Special tokens to render as text in `content` (and so to be matchable by `stop`). */
    preservedTokens?: string[];
}

export interface CompletionResult {
    /** Generated text; the stop string, if one matched, is not included. */
    content: string;
    /** One entry per generated token, including an EOS or stop token when one was generated. */
    tokens: GeneratedToken[];
    stopType: "eos" | "limit" | "word" | "none" | string;
    /** Prompt tokens evaluated for this request (not reused from a cache). */
    promptEvaluated: number;
    /** Prompt tokens reused from the slot's KV cache / prompt cache. */
    promptCached: number;
    predicted: number;
}

interface RawTop {
    id: number;
    logprob: number;
}

interface RawProb extends RawTop {
    top_logprobs?: RawTop[];
}

interface RawCompletion {
    content?: string;
    stop?: boolean;
    stop_type?: string;
    tokens_predicted?: number;
    completion_probabilities?: RawProb[];
    timings?: {prompt_n?: number, cache_n?: number, predicted_n?: number};
}

function toToken(raw: RawProb): GeneratedToken {
    return {id: raw.id, logprob: raw.logprob, top: (raw.top_logprobs ?? []).map((t) => ({id: t.id, logprob: t.logprob}))};
}

function requestBody(request: CompletionRequest, stream: boolean): Record<string, unknown> {
    return {
        prompt: request.prompt,
        n_predict: request.nPredict,
        n_probs: request.nProbs,
        // Greedy, as Self-RAG decodes; temperature 0 makes the server sample the argmax while the
        // reported probabilities stay the temperature-1 softmax (they are taken before sampling).
        temperature: 0,
        top_k: 1,
        cache_prompt: true,
        stream,
        ...(request.stop == null || request.stop.length === 0 ? {} : {stop: request.stop}),
        ...(request.preservedTokens == null ? {} : {preserved_tokens: request.preservedTokens}),
    };
}

function finish(raw: RawCompletion, content: string, tokens: GeneratedToken[]): CompletionResult {
    return {
        content,
        tokens,
        stopType: raw.stop_type ?? "none",
        promptEvaluated: raw.timings?.prompt_n ?? 0,
        promptCached: raw.timings?.cache_n ?? 0,
        predicted: raw.timings?.predicted_n ?? raw.tokens_predicted ?? tokens.length,
    };
}

/** Parses a complete server-sent-events body: `data: {json}` events separated by blank lines. */
function parseEvents(body: string): RawCompletion[] {
    const events: RawCompletion[] = [];
    for (const block of body.split(/\r?\n\r?\n/)) {
        for (const line of block.split(/\r?\n/)) {
            if (line.startsWith("error:")) throw new Error(`llama-server stream error: ${line.slice(6).trim()}`);
            if (!line.startsWith("data:")) continue;
            const data = line.slice(5).trim();
            if (data === "" || data === "[DONE]") continue;
            const event = JSON.parse(data) as RawCompletion & {error?: unknown};
            if (event.error != null) throw new Error(`llama-server stream error: ${JSON.stringify(event.error)}`);
            events.push(event);
        }
    }
    return events;
}

export async function complete(peer: LlamaServerPeer, request: CompletionRequest): Promise<CompletionResult> {
    const stream = request.stop != null && request.stop.length > 0;
    if (!stream) {
        const raw = await peer.json<RawCompletion>("POST", "/completion", requestBody(request, false));
        return finish(raw, raw.content ?? "", (raw.completion_probabilities ?? []).map(toToken));
    }
    // The whole stream is read before parsing: the client needs the finished completion anyway, and
    // the server's decoding does not wait for the client to consume events.
    const response = await peer.raw("POST", "/completion", requestBody(request, true));
    if (response.status !== 200) {
        throw new Error(`llama-server POST /completion: HTTP ${response.status}: ${response.body.slice(0, 2000)}`);
    }
    const events = parseEvents(response.body);
    const last = events.at(-1);
    if (last == null || last.stop !== true) throw new Error("llama-server stream ended without a final event");
    let content = "";
    const tokens: GeneratedToken[] = [];
    for (const event of events) {
        content += event.content ?? "";
        for (const prob of event.completion_probabilities ?? []) tokens.push(toToken(prob));
    }
    return finish(last, content, tokens);
}
