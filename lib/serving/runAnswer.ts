// A parsed answer request, run through the scheduler; a question with no passages of its own and
// no index to retrieve from is refused here unless it never retrieves.
import {SelfRagError} from "../errors.js";
import type {AnswerEvent} from "../selfrag/events.js";
import type {LongFormAnswer} from "../selfrag/LongForm.js";
import type {ShortFormAnswer} from "../selfrag/ShortForm.js";
import type {RequestScheduler} from "./RequestScheduler.js";
import type {AnswerRequest} from "./requestBodies.js";

/** `onAdmitted`: the scheduler took the request (it may wait for slots now): a stream can open. */
export type RunAnswer = (request: AnswerRequest, signal: AbortSignal, onEvent?: (event: AnswerEvent) => void, onAdmitted?: () => void) =>
    Promise<ShortFormAnswer | LongFormAnswer>;

export function answerRunner(scheduler: RequestScheduler): RunAnswer {
    return (request, signal, onEvent, onAdmitted) => {
        // The plan holds the server's retriever when the question brought no passages (parseAnswerRequest).
        if (request.question.passages == null && request.options.retriever == null && request.options.mode !== "never") {
            throw new SelfRagError("no passages: send \"passages\" with the question, start the server with an index (--index DIR), " +
                "or set \"mode\": \"never\"", "INVALID_REQUEST");
        }
        return request.long
            ? scheduler.answerLong(request.question, request.options, {signal, onEvent, onAdmitted})
            : scheduler.answer(request.question, request.options, {signal, onEvent, onAdmitted});
    };
}
