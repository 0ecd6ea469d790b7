// A parsed answer request, run through the scheduler. The one place that decides where a
// question's passages come from: its own, else the server's index, else none (mode "never").
import {SelfRagError} from "../errors.js";
import type {SearchHit} from "../retrieval/PassageIndex.js";
import type {AnswerEvent} from "../selfrag/events.js";
import type {LongFormAnswer} from "../selfrag/LongForm.js";
import type {ShortFormAnswer} from "../selfrag/ShortForm.js";
import type {RequestScheduler} from "./RequestScheduler.js";
import type {AnswerRequest} from "./requestBodies.js";

export type RunAnswer = (request: AnswerRequest, signal: AbortSignal, onEvent?: (event: AnswerEvent) => void) =>
    Promise<ShortFormAnswer | LongFormAnswer>;

export function answerRunner(scheduler: RequestScheduler, retriever: ((query: string, k: number) => Promise<SearchHit[]>) | undefined): RunAnswer {
    return (request, signal, onEvent) => {
        const hasPassages = request.question.passages != null;
        if (!hasPassages && retriever == null && request.options.mode !== "never") {
            throw new SelfRagError("no passages: send \"passages\" with the question, start the server with an index (--index DIR), " +
                "or set \"mode\": \"never\"", "INVALID_REQUEST");
        }
        const withRetriever = {...request.options, retriever: hasPassages ? undefined : retriever};
        return request.long
            ? scheduler.answerLong(request.question, withRetriever, {signal, onEvent})
            : scheduler.answer(request.question, withRetriever, {signal, onEvent});
    };
}
