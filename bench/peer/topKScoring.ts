// Self-RAG critique scores computed the way a client of an OpenAI-style server has to (FlashRAG):
// from the top-20 log-probabilities returned per generated position, not from the full vocabulary.
// A reflection token missing from a position's top list counts as probability 0; that is the one
// place this peer can differ from the engine, which reads the full softmax.
// Self-contained on purpose: lib/ is being rewritten, the peer must not depend on its internals.
import type {GeneratedToken, TopToken} from "./completion.js";
import type {LlamaServerPeer} from "./LlamaServerPeer.js";

/** The 16 Self-RAG added tokens (docs/self-rag.md, "The model and its reflection tokens"); ids are resolved from the model. */
export const RETRIEVE_TOKENS = ["[No Retrieval]", "[Retrieval]", "[Continue to Use Evidence]"] as const;
export const REL_TOKENS = ["[Irrelevant]", "[Relevant]"] as const;
export const MARKUP_TOKENS = ["<paragraph>", "</paragraph>"] as const;
export const USE_TOKENS = ["[Utility:1]", "[Utility:2]", "[Utility:3]", "[Utility:4]", "[Utility:5]"] as const;
export const SUP_TOKENS = ["[Fully supported]", "[Partially supported]", "[No support / Contradictory]"] as const;
export const PAD_TOKEN = "<pad>";
export const SELF_RAG_TOKENS: readonly string[] = [...RETRIEVE_TOKENS, ...REL_TOKENS, ...MARKUP_TOKENS, ...USE_TOKENS, ...SUP_TOKENS, PAD_TOKEN];
/** Reflection tokens only (rendered as text in completions, removed from answers). */
export const REFLECTION_TOKENS: readonly string[] = SELF_RAG_TOKENS.filter((t) => t !== PAD_TOKEN);

const USE_WEIGHTS = [-1, -0.5, 0, 0.5, 1];

export interface ReflectionIds {
    noRetrieval: number;
    retrieval: number;
    continueEvidence: number;
    irrelevant: number;
    relevant: number;
    /** [Utility:1] .. [Utility:5] */
    use: number[];
    /** [Fully supported], [Partially supported], [No support / Contradictory] */
    sup: number[];
}

const idsByPeer = new WeakMap<LlamaServerPeer, Promise<ReflectionIds>>();

/** Ids of the reflection tokens in the served model, by text; refuses a model without the Self-RAG vocabulary. */
export function reflectionIds(peer: LlamaServerPeer): Promise<ReflectionIds> {
    let pending = idsByPeer.get(peer);
    if (pending == null) {
        pending = resolveIds(peer);
        idsByPeer.set(peer, pending);
    }
    return pending;
}

async function resolveIds(peer: LlamaServerPeer): Promise<ReflectionIds> {
    const ids = new Map<string, number>();
    const missing: string[] = [];
    await Promise.all(SELF_RAG_TOKENS.map(async (text) => {
        const tokens = await peer.tokenize(text, true);
        if (tokens.length === 1) ids.set(text, tokens[0]);
        else missing.push(text);
    }));
    if (missing.length > 0) {
        throw new Error(`the served model lacks Self-RAG tokens (${missing.join(", ")} do not tokenize to one id): not a Self-RAG model`);
    }
    const id = (text: string) => ids.get(text) as number;
    return {
        noRetrieval: id("[No Retrieval]"),
        retrieval: id("[Retrieval]"),
        continueEvidence: id("[Continue to Use Evidence]"),
        irrelevant: id("[Irrelevant]"),
        relevant: id("[Relevant]"),
        use: USE_TOKENS.map(id),
        sup: SUP_TOKENS.map(id),
    };
}

/** P(id) at a position from its top-k list; 0 when the token is not in the list. */
export function topProb(top: readonly TopToken[], id: number): number {
    for (const t of top) if (t.id === id) return Math.exp(t.logprob);
    return 0;
}

/** P([Retrieval]) / (P([Retrieval]) + P([No Retrieval])); undefined when neither is in the top list. */
export function retrievalRatio(top: readonly TopToken[], ids: ReflectionIds): number | undefined {
    const ret = topProb(top, ids.retrieval);
    const noRet = topProb(top, ids.noRetrieval);
    return ret + noRet > 0 ? ret / (ret + noRet) : undefined;
}

export interface ScoreWeights {
    rel: number;
    sup: number;
    use: number;
    /** Adds exp(mean token log-prob) to the score (the reference's use_seqscore). */
    useSeqScore: boolean;
}

/** The paper's defaults: w_rel = 1, w_sup = 1, w_use = 0.5, sequence score on. */
export const PAPER_WEIGHTS: ScoreWeights = {rel: 1, sup: 1, use: 0.5, useSeqScore: true};

export interface CandidateScore {
    score: number;
    seq: number;
    rel: number;
    sup: number;
    use: number;
}

/**
 * Scores one candidate continuation (docs/self-rag.md, "What is read from the model"): seq over all its tokens (an EOS or
 * stop token counts when generated), rel at the first position, sup/use at the first position whose
 * generated token is an isSup/isUse token (0 when none was generated). A ratio whose tokens are all
 * missing from the top list is 0.
 */
export function scoreCandidate(tokens: readonly GeneratedToken[], ids: ReflectionIds, weights: ScoreWeights): CandidateScore {
    const seq = tokens.reduce((sum, t) => sum + t.logprob, 0) / Math.max(tokens.length, 1);

    let rel = 0;
    const first = tokens[0];
    if (first != null) {
        const relevant = topProb(first.top, ids.relevant);
        const irrelevant = topProb(first.top, ids.irrelevant);
        rel = relevant + irrelevant > 0 ? relevant / (relevant + irrelevant) : 0;
    }

    let sup = 0;
    const supAt = tokens.find((t) => ids.sup.includes(t.id));
    if (supAt != null) {
        const [full, partial, none] = ids.sup.map((id) => topProb(supAt.top, id));
        sup = full + partial + none > 0 ? (full + 0.5 * partial) / (full + partial + none) : 0;
    }

    let use = 0;
    const useAt = tokens.find((t) => ids.use.includes(t.id));
    if (useAt != null) {
        const probs = ids.use.map((id) => topProb(useAt.top, id));
        const total = probs.reduce((a, b) => a + b, 0);
        use = total > 0 ? probs.reduce((sum, p, i) => sum + USE_WEIGHTS[i] * p, 0) / total : 0;
    }

    const score = (weights.useSeqScore ? Math.exp(seq) : 0) + weights.rel * rel + weights.sup * sup + weights.use * use;
    return {score, seq, rel, sup, use};
}

/** Answer text: reflection tokens and `</s>` removed, whitespace collapsed (docs/self-rag.md, "The answer"). */
export function cleanAnswer(text: string): string {
    let out = text;
    for (const token of [...REFLECTION_TOKENS, "</s>", PAD_TOKEN]) out = out.split(token).join(" ");
    return out.replace(/\s+/g, " ").trim();
}
