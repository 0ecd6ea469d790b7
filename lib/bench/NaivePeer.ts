// The naive peer of the short-form benchmark: Self-RAG with k passages written the way a Node
// developer would write it with node-llama-cpp's public API alone. One sequence; for each passage
// in turn, clear it, evaluate prompt + passage, then generate greedily token by token asking for
// the full next-token probability map (the only public way to read the log-probs of the chosen
// token and of the 15 reflection tokens at every position), and score the candidates afterwards.
import type {LlamaContextSequence, LlamaModel, Token} from "node-llama-cpp";
import {formatPassage, formatPrompt, type Passage} from "../selfrag/prompts.js";
import type {ScoredSegment, SegmentScorer, CritiqueScore} from "../selfrag/SegmentScorer.js";

export interface NaiveCandidate extends ScoredSegment {
    /** Tokens evaluated for this candidate: prompt + passage, then each generated token fed back. */
    evaluatedTokens: number;
}

export interface NaiveAnswer {
    candidates: NaiveCandidate[];
    scores: CritiqueScore[];
    best: number;
}

export interface NaiveOptions {
    question: string;
    passages: readonly Passage[];
    maxNewTokens: number;
    /** The reflection token ids, in the order of the rows the scorer expects. */
    reflectionIds: Int32Array;
    scorer: SegmentScorer;
}

/**
 * What the naive peer feeds the model for one passage: BOS (node-llama-cpp's tokenize() never adds
 * it) and the prompt and passage as one string, special tokens parsed so `[Retrieval]` and
 * `<paragraph>` become single ids, as the reference scripts concatenate them.
 */
export function naiveInput(model: LlamaModel, question: string, passage: Passage): Token[] {
    const bos = model.tokens.bos;
    if (bos == null) throw new Error("the model has no BOS token");
    return [bos, ...model.tokenize(formatPrompt(question) + formatPassage(passage), true)];
}

/** One question: the candidates one after another on one sequence, then the critique scores. */
export async function naiveAnswer(sequence: LlamaContextSequence, options: NaiveOptions): Promise<NaiveAnswer> {
    const candidates: NaiveCandidate[] = [];
    for (const passage of options.passages) {
        // Nothing is shared between candidates: each starts from an empty sequence.
        await sequence.clearHistory();
        const input = naiveInput(sequence.model, options.question, passage);
        candidates.push(await generateCandidate(sequence, input, options));
    }
    const scores = options.scorer.score(candidates);
    let best = 0;
    scores.forEach((s, i) => {
        if (s.score > scores[best].score) best = i;
    });
    return {candidates, scores, best};
}

/** Greedy generation until EOS or the budget, reading what Self-RAG scores from each probability map. */
async function generateCandidate(sequence: LlamaContextSequence, input: Token[], options: NaiveOptions): Promise<NaiveCandidate> {
    const tokens: number[] = [];
    const logprobs: number[] = [];
    const reflection: number[] = [];
    const steps = sequence.evaluateWithMetadata(input, {probabilities: true}, {temperature: 0, yieldEogToken: true});
    for await (const step of steps) {
        tokens.push(step.token);
        logprobs.push(logProbability(step.probabilities, step.token));
        for (const id of options.reflectionIds) reflection.push(logProbability(step.probabilities, id as Token));
        // Leaving the loop stops the generator before it evaluates the last token, as ours does.
        if (tokens.length >= options.maxNewTokens || sequence.model.isEogToken(step.token)) break;
    }
    return {
        tokens: Int32Array.from(tokens),
        logprobs: Float32Array.from(logprobs),
        reflection: Float32Array.from(reflection),
        evaluatedTokens: input.length + tokens.length - 1
    };
}

function logProbability(probabilities: Map<Token, number>, token: Token): number {
    return Math.log(probabilities.get(token) ?? 0);
}
