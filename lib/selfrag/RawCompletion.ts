// A plain completion of a raw prompt (POST /v1/completions): the prompt as given (in the
// Self-RAG format, with any passages already in it), greedy generation up to a token budget, the
// reflection tokens kept in the text: the Self-RAG model's raw output, without the retrieval
// decision, candidates or scoring of the flows. It holds one slot of the shared pool and its steps
// join whatever else runs. Generation goes in chunks so a stop string ends it early and a stream
// can send text as it comes.
import {SelfRagError} from "../errors.js";
import type {EngineModel} from "../engine/EngineModel.js";
import {SlotLease} from "../engine/SlotLease.js";
import {firstStop, stopPrefix} from "./stops.js";

export interface RawCompletionOptions {
    /** Tokens to generate at most. */
    maxTokens: number;
    /** Stop strings: the text ends before the first one and generation stops there. */
    stop?: readonly string[];
    /** How the budget is named in errors (default "maxTokens"). */
    budgetName?: string;
}

export interface RawCompletion {
    /** The generated text, reflection tokens kept, without the end-of-sequence token or a stop string. */
    text: string;
    promptTokens: number;
    /** Tokens generated (the end-of-sequence token, or the one completing a stop string, included). */
    completionTokens: number;
    /** "stop": end of sequence or a stop string; "length": the budget or the context ran out. */
    finishReason: "stop" | "length";
}

export interface RawCompletionControl {
    signal?: AbortSignal;
    /** Called once the completion holds its slot. */
    onStart?: () => void;
    /** Text as it is generated; the pieces joined are the final text. */
    onText?: (delta: string) => void;
}

/** Tokens generated between two looks at the text (stop strings, streamed text). */
const CHUNK_TOKENS = 16;

/**
 * ```ts
 * const r = await complete(model, "### Instruction:\nWho wrote Hamlet?\n\n### Response:\n", {maxTokens: 64, stop: ["\n"]});
 * r.text; // e.g. "[No Retrieval]William Shakespeare.[Utility:5]"
 * ```
 */
export async function complete(model: EngineModel, prompt: string, options: RawCompletionOptions, control: RawCompletionControl = {}): Promise<RawCompletion> {
    const ctx = model.context;
    const perSequence = ctx.info.contextPerSequence;
    const tokens = model.tokenize(prompt);
    const stop = options.stop ?? [];
    if (tokens.length + 1 + options.maxTokens > perSequence) {
        const name = options.budgetName ?? "maxTokens";
        throw new SelfRagError(`the prompt (${tokens.length} tokens) plus ${name} (${options.maxTokens}) does not fit the context of ` +
            `${perSequence} tokens per sequence`, "CONTEXT_OVERFLOW", {option: name});
    }
    const lease = await SlotLease.acquire(ctx, 1, control.signal);
    control.onStart?.();
    try {
        const [seq] = lease.take(1);
        await ctx.prefill(seq, tokens);
        const generated: number[] = [];
        // Text withheld from a stream: what may be the start of a stop string, or half a character.
        const holdBack = Math.max(0, ...stop.map((s) => s.length - 1));
        let sent = 0;
        for (;;) {
            // A segment leaves its last token undecoded (the slot contract): the next chunk decodes it first.
            const pending = generated.length > 0 ? ctx.prefill(seq, Int32Array.of(generated[generated.length - 1])) : undefined;
            const segment = await ctx.generateOne(seq, Math.min(CHUNK_TOKENS, options.maxTokens - generated.length));
            await pending;
            generated.push(...segment.tokens);
            const all = Int32Array.from(generated);
            const eos = segment.stopReason === "eos";
            const visible = eos ? all.subarray(0, all.length - 1) : all;
            let text = model.detokenize(visible);
            const at = firstStop(text, stop);
            const budgetLeft = segment.stopReason === "length" && generated.length < options.maxTokens;
            if (at < 0 && budgetLeft) {
                let safe = text.length - holdBack;
                while (safe > sent && text.charCodeAt(safe - 1) === 0xfffd) safe--;
                if (safe > sent) control.onText?.(text.slice(sent, safe));
                sent = Math.max(sent, safe);
                continue;
            }
            let completionTokens = generated.length;
            let finishReason: RawCompletion["finishReason"] = segment.stopReason === "length" || segment.stopReason === "context" ? "length" : "stop";
            if (at >= 0) {
                completionTokens = stopPrefix(visible, stop, (t) => model.detokenize(t))!;
                text = text.slice(0, at);
                finishReason = "stop";
            }
            if (text.length > sent) control.onText?.(text.slice(sent));
            return {text, promptTokens: tokens.length, completionTokens, finishReason};
        }
    } finally {
        await lease.close();
    }
}
