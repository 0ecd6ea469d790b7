// Evaluation sets and traces for `selfrag tune`: a generated PopQA-style file for the tiny fixture
// model whose questions spread the retrieval ratio (the tiny model retrieves with the frequency of
// "capital" in the prompt) and whose passages make candidates disagree (it answers "Paris" when
// "Paris" is in its context, "London" otherwise, and critiques "Berlin" as unsupported), and
// synthetic replay traces for model-free tests and the bench.
import {mulberry32 as random} from "../lib/random.js";
import type {ReplayTrace} from "../lib/eval/Tune.js";
import {REFLECTION_COUNT} from "../lib/engine/ReflectionTokens.js";
import {wordSampler} from "./corpora.js";

const PASSAGES = [
    {id: "p", title: "Paris", text: "Paris is the capital and largest city of France. Paris"},
    {id: "b", title: "Berlin", text: "Berlin is the capital of Germany."},
    {id: "r", title: "Rome", text: "Rome is the capital of Italy."},
    {id: "l", title: "Lyon", text: "Lyon is a city in France on the Rhone."},
    {id: "m", title: "Paris and Berlin", text: "Paris and Berlin are linked by train; Berlin is larger."},
    {id: "n", title: "Notes", text: "A short note about rivers and hills."}
];

const QUESTIONS = [
    "What is the capital of France?", "Tell me about London.", "Which capital is on the Seine?", "Name a city.",
    "What is the capital of the capital region of France?", "Which city hosts the capital market?"
];

/** `count` PopQA-style records ({id, question, answers, ctxs}) for the tiny model, deterministic in `seed`. */
export function tuneEvalRecords(count: number, seed = 7, ndocs = 3): {id: string, question: string, answers: string[], ctxs: typeof PASSAGES}[] {
    const next = random(seed);
    const word = wordSampler(seed + 1, 400);
    return Array.from({length: count}, (_, i) => {
        const filler = Array.from({length: Math.floor(next() * 12)}, word).join(" ");
        const question = `${QUESTIONS[Math.floor(next() * QUESTIONS.length)]}${filler !== "" ? ` ${filler}` : ""}`;
        const start = Math.floor(next() * PASSAGES.length);
        const ctxs = Array.from({length: ndocs}, (_, k) => PASSAGES[(start + k * (1 + (i % 2))) % PASSAGES.length]);
        // Questions about a capital (which the tiny model wants to retrieve for) mostly have their answer in a
        // passage; the others mostly want the model's own answer: the best threshold lies inside (0, 1).
        const aboutCapital = question.includes("capital");
        const inPassages = ctxs.some((c) => c.text.includes("Paris"));
        const answers = next() < 0.8 ? (aboutCapital && inPassages ? ["Paris"] : ["London"]) : [["Paris"], ["London"], ["Berlin"]][Math.floor(next() * 3)];
        return {id: `t${i}`, question, answers, ctxs};
    });
}

/**
 * Synthetic replay traces (no model): `count` questions of `ndocs` candidates each, answers drawn
 * from a few words, critique terms and ratios random. `closed` adds `closedSet` (the vote).
 */
export function syntheticTraces(count: number, options: {seed?: number, ndocs?: number, closed?: boolean, profile?: "default" | "reference"} = {}): ReplayTrace[] {
    const next = random(options.seed ?? 11);
    const ndocs = options.ndocs ?? 5;
    const words = ["Paris", "London", "Berlin", "Rome"];
    const candidate = (tokens: number) => {
        const text = words[Math.floor(next() * words.length)];
        return {
            tokens: Array.from({length: tokens}, () => 100 + Math.floor(next() * 1000)),
            logprobs: Array.from({length: tokens}, () => -next()),
            reflection: Array.from({length: tokens}, () => Array.from({length: REFLECTION_COUNT}, () => -5 * next())),
            text,
            critique: {relevance: next(), support: next(), utility: 2 * next() - 1, seq: -next()}
        };
    };
    return Array.from({length: count}, (_, i) => {
        const candidates = Array.from({length: ndocs}, () => candidate(1 + Math.floor(next() * 6)));
        return {
            id: `s${i}`, form: "short" as const, question: `question ${i}`, task: "popqa" as const,
            golds: [words[Math.floor(next() * words.length)]],
            options: {profile: options.profile ?? "default", ndocs, maxNewTokens: 20, task: "popqa", ...(options.closed ? {closedSet: true} : {})},
            reflection_ids: Array.from({length: REFLECTION_COUNT}, (_, k) => 32000 + k),
            candidates: candidates.map((c, k) => ({...c, passage: {id: String(k), title: `P${k}`, text: "text"}})),
            no_retrieval: candidate(1 + Math.floor(next() * 6)),
            retrieval_logprobs: [-3 * next(), -3 * next()] as [number, number],
            retrieve: {decision: false, p: 0}
        };
    });
}
