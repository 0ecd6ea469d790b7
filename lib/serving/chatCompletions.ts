// POST /v1/chat/completions: OpenAI's chat completion, as one body or as a stream of chunks.
// Parsing the request and the pieces of the answer (usage, finish reason, `selfrag`) are openai.ts's.
import {httpStatusOf} from "../errors.js";
import {formatPrompt, taskInstruction} from "../selfrag/prompts.js";
import {streamLazily} from "./EventStream.js";
import {completionId, finishReason, openAiErrorBody, parseChatRequest, selfragField, usageOf} from "./openai.js";
import type {Route, RouteContext} from "./routes.js";

export {completionRoute} from "./completions.js";

export function chatCompletionRoute(ctx: Pick<RouteContext, "model" | "modelName" | "run" | "retriever" | "streaming">): Route {
    return {method: "POST", handle: async (_req, res, raw, signal) => {
        const chat = parseChatRequest(raw, ctx.modelName, ctx.retriever);
        const {long} = chat.answer;
        const id = completionId();
        const created = Math.floor(Date.now() / 1000);
        // Long form: the formatted prompt's tokens (short form reads its own counts from the answer).
        const promptTokens = () => (long
            ? ctx.model.tokenize(formatPrompt(taskInstruction(chat.answer.options.task ?? "none", chat.answer.question.question),
                chat.answer.options.input)).length
            : 0);
        if (!chat.stream) {
            const result = await ctx.run(chat.answer, signal);
            return {kind: "json", body: {
                id, object: "chat.completion", created, model: chat.model,
                choices: [{index: 0, message: {role: "assistant", content: result.answer, refusal: null}, logprobs: null,
                    finish_reason: finishReason(result, long)}],
                usage: usageOf(result, long, promptTokens()),
                selfrag: selfragField(result, long)
            }};
        }
        // OpenAI's chunk format: role first, Self-RAG progress in `selfrag` (content-free
        // chunks that clients skip), the answer once chosen, then finish_reason and [DONE].
        const chunk = (delta: object, finish: string | null, extra: object = {}) => ({
            id, object: "chat.completion.chunk", created, model: chat.model,
            choices: [{index: 0, delta, logprobs: null, finish_reason: finish}], ...extra
        });
        await streamLazily(res, {
            ...ctx.streaming,
            opening: (events) => events.send(undefined, chunk({role: "assistant", content: ""}, null)),
            failed: (events, e) => events.send(undefined, openAiErrorBody(e, httpStatusOf(e.code))),
            closing: (events) => events.send(undefined, "[DONE]")
        }, async (open, admitted) => {
            const result = await ctx.run(chat.answer, signal, (event) => open().send(undefined, chunk({}, null, {selfrag: event})), admitted);
            const events = open();
            events.send(undefined, chunk({content: result.answer}, null));
            events.send(undefined, chunk({}, finishReason(result, long), {selfrag: selfragField(result, long)}));
            if (chat.includeUsage) events.send(undefined, {...chunk({}, null), choices: [], usage: usageOf(result, long, promptTokens())});
        });
        return {kind: "streamed"};
    }};
}
