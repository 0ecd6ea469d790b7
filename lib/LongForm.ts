import {postProcessAnswer} from "./answers.js";
import {SelfRagError, invalidParameterError, requirePositiveInteger} from "./errors.js";
import {ForkingSegmentSource, type ContextPolicy} from "./ForkingSegmentSource.js";
import {formatPrompt, taskInstruction, type Passage, type Task} from "./prompts.js";
import {checkRetrievalOptions, decideRetrieval, type RetrievalDecision, type RetrievalDecisionOptions} from "./RetrievalDecision.js";
import {SegmentScorer, type CritiqueScore, type CritiqueWeights} from "./SegmentScorer.js";
import type {SelfRagModel} from "./SelfRagModel.js";
import {TreeSearch, type SearchStop, type TreeNode, type TreeSearchResult} from "./TreeSearch.js";

export type Retriever = (query: string, k: number) => Promise<readonly Passage[]> | readonly Passage[];

export interface LongFormOptions extends RetrievalDecisionOptions {
    /** Static passages: the same list at every depth, best first (the reference's setting). */
    passages?: readonly Passage[];
    /** Dynamic passages: queried at every segment with the question plus the text so far. */
    retriever?: Retriever;
    /** Passages per expansion (default 5). */
    ndocs?: number;
    /** Children kept per depth (default 2). */
    beamWidth?: number;
    /** Depths 1..maxDepth-1 are generated (default 7). */
    maxDepth?: number;
    /** Token budget per segment (default 100). */
    maxNewTokens?: number;
    /** "reference" (default): children see prompt + generated text; "interleaved": earlier passages stay. */
    contextPolicy?: ContextPolicy;
    /** Drop segments marked [No support / Contradictory] from the answer. */
    ignoreCont?: boolean;
    weights?: CritiqueWeights;
    task?: Task;
    input?: string;
    /**
     * "threshold" (default): the root decides with the threshold at the first position, as short
     * form does. "reference": the long-form script's rule, which also requires [Retrieval] to
     * appear in a 25-token passage-free generation.
     */
    rootDecision?: "threshold" | "reference";
}

export interface LongFormSegment {
    /** Segment text with reflection tokens. */
    text: string;
    /** Post-processed text, as it appears in the answer. */
    clean: string;
    passage?: Passage;
    /** 1-based index into `docs`, as cited in the answer ([n]). */
    citation?: number;
    /** Path score (product) at this segment. */
    score: number;
    critique?: CritiqueScore;
    stopReason: string;
}

export interface LongFormNodeJson {
    id: number;
    parent: number | null;
    depth: number;
    passage?: Passage;
    text: string;
    score: number;
    critique?: CritiqueScore;
    asksRetrieval: boolean;
    stopReason: string;
    inBeam: boolean;
    notExpanded?: string;
}

export interface LongFormAnswer {
    /** The best path's segments joined, each cited as [n] (1-based into docs). */
    answer: string;
    retrieve: RetrievalDecision;
    segments: LongFormSegment[];
    /** The cited passages in citation order. */
    docs: Passage[];
    tree: LongFormNodeJson[];
    stats: {
        /** Tokens that went through llama_decode for this answer (prompt, passages, generation steps). */
        evaluatedTokens: number;
        /** What the reference's schedule would encode: every child's whole context from scratch, plus its generated tokens. */
        referenceTokens: number;
        nodes: number;
        depth: number;
        stop: SearchStop | "no-retrieval";
    };
}

/**
 * Long-form Self-RAG (SELF_RAG.md, "Long form"): root retrieval decision, then a segment-level
 * beam search in which every node's prefix is encoded once and forked by its children.
 *
 * ```ts
 * const r = await answerLong(model, "Tell me a bio of Marie Curie.", {passages, beamWidth: 2, maxDepth: 4});
 * console.log(r.answer, r.stats.evaluatedTokens / r.stats.referenceTokens);
 * ```
 */
export async function answerLong(model: SelfRagModel, question: string, options: LongFormOptions = {}): Promise<LongFormAnswer> {
    const retrieval = checkRetrievalOptions(options);
    const ndocs = requirePositiveInteger("ndocs", options.ndocs ?? 5, 1024);
    const beamWidth = requirePositiveInteger("beamWidth", options.beamWidth ?? 2, 64);
    const maxDepth = requirePositiveInteger("maxDepth", options.maxDepth ?? 7, 64);
    const maxNewTokens = requirePositiveInteger("maxNewTokens", options.maxNewTokens ?? 100, 1 << 20);
    const policy = options.contextPolicy ?? "reference";
    if (policy !== "reference" && policy !== "interleaved") throw invalidParameterError("contextPolicy", `"reference" or "interleaved"`, policy);
    if (options.passages == null && options.retriever == null && retrieval.mode !== "never") {
        throw invalidParameterError("passages", "a passage list or a retriever", undefined);
    }
    const ctx = model.context;
    // Static passages cap the children per node; a retriever may return up to ndocs.
    const width = options.retriever == null ? Math.min(ndocs, Math.max(1, options.passages?.length ?? 1)) : ndocs;
    if (retrieval.mode !== "never" && beamWidth * width > ctx.sequences) {
        throw new SelfRagError(`the search needs beamWidth x ndocs = ${beamWidth * width} sequence slots but the model was ` +
            `loaded with sequences: ${ctx.sequences}`, "INVALID_ARGUMENT");
    }
    const instruction = taskInstruction(options.task ?? "none", question);
    const prompt = model.tokenize(formatPrompt(instruction, options.input));
    const perSequence = ctx.info.contextPerSequence;
    if (prompt.length + 1 + maxNewTokens > perSequence) {
        throw new SelfRagError(`the prompt (${prompt.length} tokens) plus maxNewTokens (${maxNewTokens}) does not fit the context ` +
            `of ${perSequence} tokens per sequence`, "CONTEXT_OVERFLOW");
    }
    const startTokens = ctx.stats.tokensEvaluated;
    const scorer = await SegmentScorer.create(model.reflection.ids);
    const [rootSeq] = ctx.acquire(1);
    let rootHeld = true;
    let source: ForkingSegmentSource | undefined;
    try {
        const block = await ctx.evaluate([{seq: rootSeq, tokens: prompt}]);
        const decision = decideRetrieval(block.reflection.subarray(0, 15), retrieval);
        if (decision.decision && options.rootDecision === "reference") {
            decision.decision = await referenceRootCheck(model, rootSeq, prompt);
        }
        if (!decision.decision) {
            return await answerWithoutRetrieval(model, rootSeq, decision, maxNewTokens, startTokens, prompt.length);
        }

        const root: TreeNode = {id: 0, parent: null, depth: 0, text: "", tokens: new Int32Array(0), score: 1, asksRetrieval: true,
            stopReason: "root", inBeam: true};
        source = new ForkingSegmentSource(model, scorer, {policy, maxNewTokens, threshold: retrieval.threshold, weights: options.weights},
            root, rootSeq, prompt.length);
        rootHeld = false; // the source owns the root slot from here on
        const passagesFor = async (_node: TreeNode, path: readonly TreeNode[]) => {
            if (options.retriever == null) return (options.passages ?? []).slice(0, ndocs);
            const soFar = path.map((n) => postProcessAnswer(n.text)).join(" ");
            return (await options.retriever(soFar === "" ? question : `${question} ${soFar}`, ndocs)).slice(0, ndocs);
        };
        const result = await TreeSearch.run(root, source, {beamWidth, maxDepth, passagesFor});
        return assembleLongForm(result, decision, options.ignoreCont ?? false, {
            evaluatedTokens: ctx.stats.tokensEvaluated - startTokens,
            referenceTokens: referenceTokens(result.nodes, prompt.length, policy)
        });
    } finally {
        if (rootHeld) await ctx.release(rootSeq);
        await source?.releaseAll();
    }
}

/** The reference long-form rule: [Retrieval] must appear in a 25-token passage-free generation. */
async function referenceRootCheck(model: SelfRagModel, seq: number, prompt: Int32Array): Promise<boolean> {
    const [probe] = await model.context.generate([{seq, maxTokens: 25}]);
    // Put the slot back to the prompt with its pending distribution.
    await model.context.trim(seq, prompt.length - 1);
    await model.context.evaluate([{seq, tokens: prompt.subarray(prompt.length - 1)}]);
    return probe.tokens.includes(model.reflection.id("[Retrieval]"));
}

async function answerWithoutRetrieval(model: SelfRagModel, seq: number, decision: RetrievalDecision, maxNewTokens: number,
    startTokens: number, promptLength: number): Promise<LongFormAnswer> {
    const ctx = model.context;
    await ctx.evaluate([{seq, tokens: Int32Array.of(model.reflection.id("[No Retrieval]"))}]);
    const [segment] = await ctx.generate([{seq, maxTokens: maxNewTokens}]);
    // The reference keeps the text up to the first blank line.
    const text = model.detokenize(segment.tokens).split("\n\n")[0];
    const clean = postProcessAnswer(text);
    return {
        answer: clean, retrieve: decision, docs: [], tree: [],
        segments: [{text, clean, score: 1, stopReason: segment.stopReason}],
        stats: {evaluatedTokens: ctx.stats.tokensEvaluated - startTokens, referenceTokens: promptLength + 1 + segment.tokens.length,
            nodes: 0, depth: 0, stop: "no-retrieval"}
    };
}

/** Encoding every child's context from scratch (the reference schedule) plus its generated tokens. */
function referenceTokens(nodes: readonly TreeNode[], promptLength: number, policy: ContextPolicy): number {
    let total = promptLength; // the root decision pass
    for (const node of nodes) {
        if (node.parent == null) continue;
        let context = promptLength + (node.passageTokens?.length ?? 0);
        for (let a = nodes[node.parent]; a.parent != null; a = nodes[a.parent]) {
            context += a.tokens.length + (policy === "interleaved" ? (a.passageTokens?.length ?? 0) : 0);
        }
        total += context + node.tokens.length + (node.asksRetrieval ? 1 : 0);
    }
    return total;
}

/** Turns a finished search into the answer: best path, ignoreCont, [n] citations, the tree. */
export function assembleLongForm(result: TreeSearchResult, decision: RetrievalDecision, ignoreCont: boolean,
    stats: {evaluatedTokens: number, referenceTokens: number}): LongFormAnswer {
    const docs: Passage[] = [];
    const segments: LongFormSegment[] = [];
    for (const node of result.bestPath) {
        if (ignoreCont && node.text.includes("[No support / Contradictory]")) continue;
        const clean = postProcessAnswer(node.text);
        if (clean === "") continue;
        const citation = node.passage != null ? docs.push(node.passage) : undefined;
        segments.push({text: node.text, clean, passage: node.passage, citation, score: node.score, critique: node.critique, stopReason: node.stopReason});
    }
    const answer = segments.map((s) => cite(s.clean, s.citation)).join(" ");
    return {
        answer, retrieve: decision, segments, docs,
        tree: result.nodes.map((n) => ({
            id: n.id, parent: n.parent, depth: n.depth, ...(n.passage != null ? {passage: n.passage} : {}), text: n.text, score: n.score,
            ...(n.critique != null ? {critique: n.critique} : {}), asksRetrieval: n.asksRetrieval, stopReason: n.stopReason,
            inBeam: n.inBeam, ...(n.notExpanded != null ? {notExpanded: n.notExpanded} : {})
        })),
        stats: {...stats, nodes: result.nodes.length - 1, depth: result.bestPath.length, stop: result.stop}
    };
}

/** ASQA-style citation: "... text [n]." (before a final period, as the reference formats it). */
function cite(text: string, citation: number | undefined): string {
    if (citation == null) return text;
    return text.endsWith(".") ? `${text.slice(0, -1)} [${citation}].` : `${text} [${citation}]`;
}

/** Long-form answers for several questions, one search after another (each uses beamWidth x ndocs slots). */
export async function answerLongBatch(model: SelfRagModel, questions: readonly string[], options: LongFormOptions = {}): Promise<LongFormAnswer[]> {
    const answers: LongFormAnswer[] = [];
    for (const question of questions) answers.push(await answerLong(model, question, options));
    return answers;
}
