// POST /v1/completions: OpenAI's legacy completions API over a raw prompt in the Self-RAG format
// ("### Instruction:\n...\n\n### Response:\n", passages already in it if wanted), completed
// greedily with the reflection tokens kept in the text, as one body or as a stream of chunks.
// It goes through the scheduler like a question (queue limit, timeout, abort) and holds one slot.
import {httpStatusOf} from "../errors.js";
import {streamLazily} from "./EventStream.js";
import {completionId, openAiErrorBody, parseCompletionRequest} from "./openai.js";
import type {Route, RouteContext} from "./routes.js";

export function completionRoute(ctx: Pick<RouteContext, "scheduler" | "modelName">): Route {
    return {method: "POST", handle: async (_req, res, raw, signal) => {
        const request = parseCompletionRequest(raw, ctx.modelName);
        const id = completionId("cmpl");
        const created = Math.floor(Date.now() / 1000);
        const options = {maxTokens: request.maxTokens, stop: request.stop, budgetName: "max_tokens"};
        const usage = (r: {promptTokens: number, completionTokens: number}) =>
            ({prompt_tokens: r.promptTokens, completion_tokens: r.completionTokens, total_tokens: r.promptTokens + r.completionTokens});
        if (!request.stream) {
            const result = await ctx.scheduler.complete(request.prompt, options, {signal});
            return {kind: "json", body: {
                id, object: "text_completion", created, model: request.model,
                choices: [{index: 0, text: result.text, logprobs: null, finish_reason: result.finishReason}],
                usage: usage(result)
            }};
        }
        const chunk = (text: string, finish: string | null) => ({
            id, object: "text_completion", created, model: request.model, choices: [{index: 0, text, logprobs: null, finish_reason: finish}]
        });
        await streamLazily(res, {
            failed: (events, e) => events.send(undefined, openAiErrorBody(e, httpStatusOf(e.code))),
            closing: (events) => events.send(undefined, "[DONE]")
        }, async (open) => {
            const result = await ctx.scheduler.complete(request.prompt, options, {signal, onText: (delta) => open().send(undefined, chunk(delta, null))});
            const events = open();
            events.send(undefined, chunk("", result.finishReason));
            if (request.includeUsage) events.send(undefined, {...chunk("", null), choices: [], usage: usage(result)});
        });
        return {kind: "streamed"};
    }};
}
