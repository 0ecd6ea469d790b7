// Validation of HTTP request bodies: every field is checked by name and type, unknown fields are
// refused (a misspelt option silently ignored would give an answer computed with other settings
// than the caller asked for), and every error names the field.
import {SelfRagError} from "../errors.js";
import type {ContextPolicy} from "../selfrag/ForkingSegmentSource.js";
import type {LongFormOptions, LongFormQuestion} from "../selfrag/LongForm.js";
import {TASKS as TASK_LIST, type Passage, type Task} from "../selfrag/prompts.js";
import {PROFILES, type Profile} from "../selfrag/profiles.js";
import type {RetrievalMode, RetrieveRatio} from "../selfrag/RetrievalDecision.js";
import type {CritiqueWeights} from "../selfrag/SegmentScorer.js";
import type {ShortFormOptions, ShortFormQuestion} from "../selfrag/ShortForm.js";

export type AnswerRequest =
    | {long: false, question: ShortFormQuestion, options: ShortFormOptions}
    | {long: true, question: LongFormQuestion, options: LongFormOptions};

export interface SearchRequest {
    query: string;
    k: number;
}

const TASKS = new Set<string>(TASK_LIST);
const SHARED = ["question", "id", "input", "passages", "task", "long", "mode", "threshold", "ndocs", "maxNewTokens", "weights", "profile"];
const SHORT_ONLY = ["choices", "closedSet", "retrieveRatio"];
const LONG_ONLY = ["beamWidth", "maxDepth", "ignoreCont", "contextPolicy"];

function invalid(field: string, expected: string, value: unknown): SelfRagError {
    const shown = value === undefined ? "nothing" : JSON.stringify(value)?.slice(0, 80) ?? String(value);
    return new SelfRagError(`field "${field}": expected ${expected}, got ${shown}`, "INVALID_REQUEST");
}

function object(body: unknown, what: string): Record<string, unknown> {
    if (body == null || typeof body !== "object" || Array.isArray(body)) throw invalid(what, "a JSON object", body);
    return body as Record<string, unknown>;
}

function refuseUnknown(body: Record<string, unknown>, allowed: readonly string[], context = ""): void {
    for (const key of Object.keys(body)) {
        if (!allowed.includes(key)) {
            throw new SelfRagError(`unknown field "${context}${key}"${context === "" ? ` (known: ${allowed.join(", ")})` : ""}`, "INVALID_REQUEST");
        }
    }
}

const optional = {
    string(body: Record<string, unknown>, field: string): string | undefined {
        const v = body[field];
        if (v === undefined) return undefined;
        if (typeof v !== "string") throw invalid(field, "a string", v);
        return v;
    },
    boolean(body: Record<string, unknown>, field: string, label = field): boolean | undefined {
        const v = body[field];
        if (v === undefined) return undefined;
        if (typeof v !== "boolean") throw invalid(label, "true or false", v);
        return v;
    },
    number(body: Record<string, unknown>, field: string, min: number, max: number, integer = false, label = field): number | undefined {
        const v = body[field];
        if (v === undefined) return undefined;
        if (typeof v !== "number" || !Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))) {
            throw invalid(label, `${integer ? "an integer" : "a number"} from ${min} to ${max}`, v);
        }
        return v;
    },
    oneOf<T extends string>(body: Record<string, unknown>, field: string, values: readonly T[]): T | undefined {
        const v = body[field];
        if (v === undefined) return undefined;
        if (typeof v !== "string" || !values.includes(v as T)) throw invalid(field, values.map((x) => JSON.stringify(x)).join(" | "), v);
        return v as T;
    }
};

function passages(value: unknown): Passage[] | undefined {
    if (value === undefined) return undefined;
    if (!Array.isArray(value) || value.length === 0) throw invalid("passages", "a non-empty array of {id?, title, text}", value);
    if (value.length > 1024) throw invalid("passages", "at most 1024 passages", `${value.length} passages`);
    return value.map((p, i) => {
        const field = `passages[${i}]`;
        const item = object(p, field);
        refuseUnknown(item, ["id", "title", "text"], `${field}.`);
        if (typeof item.text !== "string" || item.text.trim() === "") throw invalid(`${field}.text`, "a non-empty string", item.text);
        if (item.title !== undefined && typeof item.title !== "string") throw invalid(`${field}.title`, "a string", item.title);
        if (item.id !== undefined && typeof item.id !== "string" && typeof item.id !== "number") {
            throw invalid(`${field}.id`, "a string or a number", item.id);
        }
        return {...(item.id !== undefined ? {id: String(item.id)} : {}), title: (item.title as string | undefined) ?? "", text: item.text};
    });
}

function weights(value: unknown): CritiqueWeights | undefined {
    if (value === undefined) return undefined;
    const w = object(value, "weights");
    refuseUnknown(w, ["relevance", "support", "utility", "useSequenceScore", "useSupport", "useUtility"], "weights.");
    return defined({
        relevance: optional.number(w, "relevance", -1e6, 1e6, false, "weights.relevance"),
        support: optional.number(w, "support", -1e6, 1e6, false, "weights.support"),
        utility: optional.number(w, "utility", -1e6, 1e6, false, "weights.utility"),
        useSequenceScore: optional.boolean(w, "useSequenceScore", "weights.useSequenceScore"),
        useSupport: optional.boolean(w, "useSupport", "weights.useSupport"),
        useUtility: optional.boolean(w, "useUtility", "weights.useUtility")
    });
}

/** Drops undefined values, so option objects of equal settings compare (and batch) equal. */
function defined<T extends object>(value: T): T {
    return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}

/** POST /v1/answer: a question and its options (see the README's server section). */
export function parseAnswerRequest(raw: unknown): AnswerRequest {
    const body = object(raw, "body");
    const long = optional.boolean(body, "long") ?? false;
    refuseUnknown(body, [...SHARED, ...(long ? LONG_ONLY : SHORT_ONLY)]);
    const question = body.question;
    if (typeof question !== "string" || question.trim() === "") throw invalid("question", "a non-empty string", question);
    const task = optional.string(body, "task");
    if (task !== undefined && !TASKS.has(task)) throw invalid("task", [...TASKS].join(" | "), task);
    const common = defined({
        mode: optional.oneOf<RetrievalMode>(body, "mode", ["adaptive", "always", "never"]),
        threshold: optional.number(body, "threshold", 0, 1),
        ndocs: optional.number(body, "ndocs", 1, 1024, true),
        maxNewTokens: optional.number(body, "maxNewTokens", 1, 1 << 16, true),
        weights: weights(body.weights),
        profile: optional.oneOf<Profile>(body, "profile", PROFILES)
    });
    const given = passages(body.passages);
    const id = optional.string(body, "id");
    const input = optional.string(body, "input");
    if (!long) {
        const choices = body.choices;
        if (choices !== undefined && (!Array.isArray(choices) || choices.some((c) => typeof c !== "string"))) {
            throw invalid("choices", "an array of strings", choices);
        }
        return {
            long: false,
            question: defined({question, id, input, passages: given, task: task as Task | undefined, choices: choices as string[] | undefined}),
            options: defined({...common, closedSet: optional.boolean(body, "closedSet"),
                retrieveRatio: optional.oneOf<RetrieveRatio>(body, "retrieveRatio", ["probability", "reference-logprob"])})
        };
    }
    return {
        long: true, question: defined({id, question, passages: given}),
        options: defined({
            ...common, task: task as Task | undefined, input,
            beamWidth: optional.number(body, "beamWidth", 1, 64, true), maxDepth: optional.number(body, "maxDepth", 1, 64, true),
            ignoreCont: optional.boolean(body, "ignoreCont"),
            contextPolicy: optional.oneOf<ContextPolicy>(body, "contextPolicy", ["reference", "interleaved"])
        })
    };
}

/** POST /v1/search: {query, k?}. */
export function parseSearchRequest(raw: unknown): SearchRequest {
    const body = object(raw, "body");
    refuseUnknown(body, ["query", "k"]);
    if (typeof body.query !== "string" || body.query.trim() === "") throw invalid("query", "a non-empty string", body.query);
    return {query: body.query, k: optional.number(body, "k", 1, 1000, true) ?? 5};
}
