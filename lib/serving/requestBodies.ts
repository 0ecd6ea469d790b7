// HTTP request bodies as plans: a body is a JSON object whose question fields (question, id,
// input, passages) make the question and whose other fields are the question's options, turned
// into a plan by the same functions as a library call (selfrag/plan.ts), so every field is
// checked by name, unknown fields are refused with the nearest known one, and a long-form field
// without "long": true says so.
import {SelfRagError, refuseUnknownKeys, requireBoolean, requireInteger, requireString} from "../errors.js";
import {HTTP_SURFACE, optionKeys, planQuestion, planQuestionItem, planWith, type LongFormPlan, type PlannedQuestion, type Retriever, type ShortFormPlan,
    type Surface} from "../selfrag/plan.js";

export type AnswerRequest =
    | {long: false, question: PlannedQuestion, options: ShortFormPlan}
    | {long: true, question: PlannedQuestion, options: LongFormPlan};

export interface SearchRequest {
    query: string;
    k: number;
}

/** Fields of a body that make the question; every other field is an option of the plan. */
const QUESTION_FIELDS = ["question", "id", "input", "passages"];
/** Fields about the request itself. */
const REQUEST_FIELDS = ["long", "stream"];

function object(body: unknown, what: string): Record<string, unknown> {
    if (body == null || typeof body !== "object" || Array.isArray(body)) {
        throw new SelfRagError(`field "${what}": expected a JSON object, got ${body === null ? "null" : Array.isArray(body) ? "an array" : typeof body}`,
            "INVALID_REQUEST");
    }
    return body as Record<string, unknown>;
}

/** The fields a body of /v1/answer may have (question fields, options, long, stream). */
export function answerFields(surface: Surface = HTTP_SURFACE): string[] {
    return [...QUESTION_FIELDS, ...optionKeys(surface), ...REQUEST_FIELDS];
}

/**
 * POST /v1/answer (and the OpenAI `selfrag` field, with its own surface): a question and its
 * options as a plan. `retriever` (the server's index) is planned in for a question without passages.
 */
export function parseAnswerRequest(raw: unknown, options: {surface?: Surface, retriever?: Retriever} = {}): AnswerRequest {
    const surface = options.surface ?? HTTP_SURFACE;
    const body = object(raw, "body");
    refuseUnknownKeys(body, answerFields(surface), surface.noun, surface.name);
    const long = body.long === undefined ? false : requireBoolean(surface.name("long"), body.long);
    if (body.stream !== undefined) requireBoolean(surface.name("stream"), body.stream);
    const question: Record<string, unknown> = {};
    const settings: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(body)) {
        if (QUESTION_FIELDS.includes(key)) question[key] = value;
        else if (!REQUEST_FIELDS.includes(key)) settings[key] = value;
    }
    const asked = planQuestion(long ? "long" : "short", settings, surface);
    const plan = question.passages === undefined && options.retriever != null ? planWith(asked, {retriever: options.retriever}) : asked;
    const planned = planQuestionItem(question, 0, plan);
    return long ? {long: true, question: planned, options: plan as LongFormPlan} : {long: false, question: planned, options: plan as ShortFormPlan};
}

/** POST /v1/search: {query, k?}. */
export function parseSearchRequest(raw: unknown): SearchRequest {
    const body = object(raw, "body");
    refuseUnknownKeys(body, ["query", "k"], "field");
    const query = requireString("query", body.query, {nonBlank: true});
    return {query, k: body.k === undefined ? 5 : requireInteger("k", body.k, 1, 1000)};
}
