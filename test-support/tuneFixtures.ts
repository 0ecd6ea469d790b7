// Evaluation sets and traces for `selfrag tune`: a generated PopQA-style file for the tiny fixture
// model whose questions spread the retrieval ratio (the tiny model retrieves with the frequency of
// "capital" in the prompt) and whose passages make candidates disagree (it answers "Paris" when
// "Paris" is in its context, "London" otherwise, and critiques "Berlin" as unsupported), and
// synthetic replay traces for model-free tests and the bench.
import {mulberry32 as random} from "../lib/random.js";
import type {ReplayTrace} from "../lib/eval/Tune.js";
import {REFLECTION_COUNT} from "../lib/engine/ReflectionTokens.js";

export {tuneQuestions as tuneEvalRecords} from "../lib/fixtures/tuneQuestions.js";

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
