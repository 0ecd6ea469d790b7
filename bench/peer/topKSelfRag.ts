// A Self-RAG client over llama-server that scores from top-20 probabilities, as FlashRAG does with
// an OpenAI-style server: short form (docs/self-rag.md) and a simple but complete long-form
// segment-level beam search (docs/self-rag.md "Long form"). Independent requests are sent concurrently so
// llama-server batches them across its slots; nothing here shares KV state explicitly beyond the
// server's own prompt cache (cache_prompt).
import {complete, type CompletionResult, type GeneratedToken} from "./completion.js";
import type {LlamaServerPeer} from "./LlamaServerPeer.js";
import {
    cleanAnswer, PAPER_WEIGHTS, reflectionIds, REFLECTION_TOKENS, retrievalRatio, scoreCandidate, topProb,
    type ReflectionIds, type ScoreWeights
} from "./topKScoring.js";

/** FlashRAG reads the top 20 log-probabilities per position. */
export const TOP_K = 20;

export interface PeerPassage {
    title: string;
    text: string;
}

export interface PeerQuestion {
    question: string;
    passages: readonly PeerPassage[];
}

export type RetrievalMode = "adaptive" | "always" | "never";

export interface PeerCandidate {
    /** Answer text of this candidate (reflection tokens removed). */
    text: string;
    score: number;
    /** Index into passages of the passage it was generated from (the last one on a long-form path). */
    passage?: number;
}

/** Server work done for one answer, summed over its requests (from each response's timings). */
export interface PeerWork {
    requests: number;
    promptEvaluated: number;
    promptCached: number;
    predicted: number;
}

export interface PeerAnswer {
    answer: string;
    best: PeerCandidate | undefined;
    candidates: PeerCandidate[];
    retrieve: boolean;
    /** P([Retrieval]) / (P([Retrieval]) + P([No Retrieval])) at the root; undefined if not probed (mode
     *  "always"/"never") or if neither token was in the top 20. */
    pRetrieve: number | undefined;
    work: PeerWork;
}

export interface PeerShortFormOptions {
    /** Passages used (the first ndocs), default 5 (or fewer when fewer are given). */
    ndocs?: number;
    maxNewTokens?: number;
    threshold?: number;
    weights?: Partial<ScoreWeights>;
    mode?: RetrievalMode;
}

export interface PeerLongFormOptions {
    ndocs?: number;
    beamWidth?: number;
    maxDepth?: number;
    maxNewTokens?: number;
    threshold?: number;
    weights?: Partial<ScoreWeights>;
    mode?: RetrievalMode;
}

/** `### Instruction:\n{question}\n\n### Response:\n`; the server adds BOS (the vocabulary's add_bos_token). */
export function formatPrompt(question: string): string {
    return `### Instruction:\n${question}\n\n### Response:\n`;
}

export function formatPassage(passage: PeerPassage): string {
    return `[Retrieval]<paragraph>${passage.title}\n${passage.text}</paragraph>`;
}

/** Request counting shared by the requests of one answer. */
class Session {
    readonly work: PeerWork = {requests: 0, promptEvaluated: 0, promptCached: 0, predicted: 0};

    constructor(readonly peer: LlamaServerPeer) {}

    async complete(prompt: string, nPredict: number, stop?: string[]): Promise<CompletionResult> {
        // Reflection tokens are "preserved" so they appear in content: candidate texts carry them into
        // long-form contexts, and the `[Retrieval]` stop string can only match rendered text.
        const result = await complete(this.peer, {prompt, nPredict, nProbs: TOP_K, stop, preservedTokens: [...REFLECTION_TOKENS]});
        this.work.requests++;
        this.work.promptEvaluated += result.promptEvaluated;
        this.work.promptCached += result.promptCached;
        this.work.predicted += result.predicted;
        return result;
    }

    /** Root retrieval decision from one greedy token of the passage-free prompt. */
    async decide(prompt: string, mode: RetrievalMode, threshold: number, ids: ReflectionIds): Promise<{retrieve: boolean, p: number | undefined}> {
        // Fixed modes skip the probe, as the reference scripts do: no decode work for a known answer.
        if (mode === "never") return {retrieve: false, p: undefined};
        if (mode === "always") return {retrieve: true, p: undefined};
        const probe = await this.complete(prompt, 1);
        const p = probe.tokens[0] == null ? undefined : retrievalRatio(probe.tokens[0].top, ids);
        // Neither token in the top 20: the model is not asking for retrieval.
        return {retrieve: p != null && p > threshold, p};
    }
}

function weightsOf(partial: Partial<ScoreWeights> | undefined): ScoreWeights {
    return {...PAPER_WEIGHTS, ...partial};
}

function pickBest(candidates: PeerCandidate[]): PeerCandidate | undefined {
    let best: PeerCandidate | undefined;
    for (const c of candidates) if (best == null || c.score > best.score) best = c;
    return best;
}

/** Short-form Self-RAG: retrieval decision, one candidate per passage (concurrent), best score wins. */
export async function peerAnswer(peer: LlamaServerPeer, input: PeerQuestion, options: PeerShortFormOptions = {}): Promise<PeerAnswer> {
    const ids = await reflectionIds(peer);
    const session = new Session(peer);
    const weights = weightsOf(options.weights);
    const maxNewTokens = options.maxNewTokens ?? 100;
    const prompt = formatPrompt(input.question);
    const passages = input.passages.slice(0, options.ndocs ?? 5);
    const decision = await session.decide(prompt, options.mode ?? "adaptive", options.threshold ?? 0.2, ids);

    if (!decision.retrieve || passages.length === 0) {
        const result = await session.complete(`${prompt}[No Retrieval]`, maxNewTokens);
        const candidate = {text: cleanAnswer(result.content), score: scoreCandidate(result.tokens, ids, weights).score};
        return {answer: candidate.text, best: candidate, candidates: [candidate], retrieve: false, pRetrieve: decision.p, work: session.work};
    }

    const candidates = await Promise.all(passages.map(async (passage, index): Promise<PeerCandidate> => {
        const result = await session.complete(prompt + formatPassage(passage), maxNewTokens);
        return {text: cleanAnswer(result.content), score: scoreCandidate(result.tokens, ids, weights).score, passage: index};
    }));
    const best = pickBest(candidates);
    return {answer: best?.text ?? "", best, candidates, retrieve: true, pRetrieve: decision.p, work: session.work};
}

interface BeamNode {
    /** Generated text on this path with reflection tokens, carried into the children's context. */
    raw: string;
    /** Cleaned segments of the path, root first. */
    segments: string[];
    score: number;
    /** The last segment ended by asking for retrieval: the node is expanded at the next depth. */
    asksRetrieval: boolean;
    passage?: number;
}

/** One generated segment, cut where the model asks for retrieval. */
interface Segment {
    raw: string;
    tokens: GeneratedToken[];
    asksRetrieval: boolean;
}

/**
 * Where a segment ends: at a generated `[Retrieval]` (the stop string, content already cut there), or
 * at a generated `[No Retrieval]` whose position still favours retrieval, (P([Retrieval]) +
 * P([Continue to Use Evidence])) / (P([Retrieval]) + P([No Retrieval])) > threshold (docs/self-rag.md long
 * form, step 3). In the latter case the content is cut before the matching `[No Retrieval]` text.
 */
function cutSegment(result: CompletionResult, ids: ReflectionIds, threshold: number): Segment {
    let noRetrievalSeen = 0;
    for (let i = 0; i < result.tokens.length; i++) {
        const token = result.tokens[i];
        if (token.id === ids.retrieval) {
            return {raw: result.content, tokens: result.tokens.slice(0, i + 1), asksRetrieval: true};
        }
        if (token.id !== ids.noRetrieval) continue;
        const ret = topProb(token.top, ids.retrieval);
        const cont = topProb(token.top, ids.continueEvidence);
        const noRet = topProb(token.top, ids.noRetrieval);
        if (ret + noRet > 0 && (ret + cont) / (ret + noRet) > threshold) {
            // The k-th generated [No Retrieval] token is the k-th "[No Retrieval]" in the rendered content.
            let at = -1;
            for (let k = 0; k <= noRetrievalSeen; k++) at = result.content.indexOf("[No Retrieval]", at + 1);
            return {raw: at >= 0 ? result.content.slice(0, at) : result.content, tokens: result.tokens.slice(0, i), asksRetrieval: true};
        }
        noRetrievalSeen++;
    }
    return {raw: result.content, tokens: result.tokens, asksRetrieval: false};
}

/**
 * Long-form Self-RAG: root decision, then a segment-level beam search. Each expansion generates one
 * segment per passage from prompt + path text + passage (the reference's context: earlier passages
 * are dropped), all expansions of a depth concurrently; child score = parent score x candidate score;
 * the best beamWidth children per depth survive; the search stops when no surviving node asks for
 * retrieval or at maxDepth. Answer: the best leaf's segments joined.
 */
export async function peerAnswerLong(peer: LlamaServerPeer, input: PeerQuestion, options: PeerLongFormOptions = {}): Promise<PeerAnswer> {
    const ids = await reflectionIds(peer);
    const session = new Session(peer);
    const weights = weightsOf(options.weights);
    const maxNewTokens = options.maxNewTokens ?? 100;
    const threshold = options.threshold ?? 0.2;
    const beamWidth = options.beamWidth ?? 2;
    // Depths 1..maxDepth-1 as in the reference; at least one expansion once retrieval was decided.
    const maxDepth = Math.max(options.maxDepth ?? 7, 2);
    const prompt = formatPrompt(input.question);
    const passages = input.passages.slice(0, options.ndocs ?? 5);
    const decision = await session.decide(prompt, options.mode ?? "adaptive", threshold, ids);

    if (!decision.retrieve || passages.length === 0) {
        const result = await session.complete(`${prompt}[No Retrieval]`, maxNewTokens);
        // Without retrieval the long-form answer is the text up to the first blank line.
        const text = cleanAnswer(result.content.split("\n\n")[0]);
        const candidate = {text, score: scoreCandidate(result.tokens, ids, weights).score};
        return {answer: text, best: candidate, candidates: [candidate], retrieve: false, pRetrieve: decision.p, work: session.work};
    }

    let beam: BeamNode[] = [{raw: "", segments: [], score: 1, asksRetrieval: true}];
    const leaves: BeamNode[] = [];
    for (let depth = 1; depth < maxDepth; depth++) {
        const expanding = beam.filter((node) => node.asksRetrieval);
        leaves.push(...beam.filter((node) => !node.asksRetrieval));
        if (expanding.length === 0) {
            beam = [];
            break;
        }
        const children = await Promise.all(expanding.flatMap((parent) => passages.map(async (passage, index): Promise<BeamNode> => {
            const result = await session.complete(prompt + parent.raw + formatPassage(passage), maxNewTokens, ["[Retrieval]"]);
            const segment = cutSegment(result, ids, threshold);
            const candidateScore = scoreCandidate(segment.tokens, ids, weights).score;
            return {
                raw: parent.raw + segment.raw,
                segments: [...parent.segments, cleanAnswer(segment.raw)],
                score: parent.score * candidateScore,
                asksRetrieval: segment.asksRetrieval,
                passage: index,
            };
        })));
        beam = children.sort((a, b) => b.score - a.score).slice(0, beamWidth);
    }
    leaves.push(...beam);

    const candidates = leaves.map((node): PeerCandidate => ({text: node.segments.filter((s) => s !== "").join(" "), score: node.score, passage: node.passage}));
    const best = pickBest(candidates);
    return {answer: best?.text ?? "", best, candidates, retrieve: true, pRetrieve: decision.p, work: session.work};
}
