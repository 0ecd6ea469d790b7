import {postProcessAnswer} from "./answers.js";
import {SelfRagError, invalidParameterError, requirePositiveInteger} from "../errors.js";
import {ExpansionRendezvous} from "./ExpansionRendezvous.js";
import {ForkingSegmentSource, type ContextPolicy} from "./ForkingSegmentSource.js";
import {formatPrompt, taskInstruction, type Passage, type Task} from "./prompts.js";
import {checkRetrievalOptions, decideRetrieval, type RetrievalDecision, type RetrievalDecisionOptions} from "./RetrievalDecision.js";
import {SegmentScorer, type CritiqueScore, type CritiqueWeights} from "./SegmentScorer.js";
import type {SelfRagModel} from "../SelfRagModel.js";
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

/** A question with its own passages (they take precedence over options.passages and options.retriever). */
export interface LongFormQuestion {
    question: string;
    passages?: readonly Passage[];
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
    const [answer] = await answerLongBatch(model, [question], options);
    return answer;
}

interface LongFormSettings {
    retrieval: ReturnType<typeof checkRetrievalOptions>;
    ndocs: number;
    beamWidth: number;
    maxDepth: number;
    maxNewTokens: number;
    policy: ContextPolicy;
}

/**
 * Long-form answers for several questions. As many searches as the slots allow (beamWidth x ndocs
 * each) run at once: their prompts are prefilled in one batch and every depth of every search
 * decodes in the same steps.
 */
export async function answerLongBatch(model: SelfRagModel, questions: readonly (string | LongFormQuestion)[],
    options: LongFormOptions = {}): Promise<LongFormAnswer[]> {
    const items = questions.map((q, i) => {
        const item = typeof q === "string" ? {question: q} : q;
        if (typeof item?.question !== "string") throw invalidParameterError(`questions[${i}].question`, "a string", item?.question);
        return item;
    });
    const retrieval = checkRetrievalOptions(options);
    const settings: LongFormSettings = {
        retrieval,
        ndocs: requirePositiveInteger("ndocs", options.ndocs ?? 5, 1024),
        beamWidth: requirePositiveInteger("beamWidth", options.beamWidth ?? 2, 64),
        maxDepth: requirePositiveInteger("maxDepth", options.maxDepth ?? 7, 64),
        maxNewTokens: requirePositiveInteger("maxNewTokens", options.maxNewTokens ?? 100, 1 << 20),
        policy: options.contextPolicy ?? "reference"
    };
    if (settings.policy !== "reference" && settings.policy !== "interleaved") {
        throw invalidParameterError("contextPolicy", `"reference" or "interleaved"`, settings.policy);
    }
    if (options.retriever == null && retrieval.mode !== "never" && items.some((q) => (q.passages ?? options.passages) == null)) {
        throw invalidParameterError("passages", "a passage list or a retriever", undefined);
    }
    const ctx = model.context;
    // Static passages cap the children per node; a retriever may return up to ndocs.
    const width = options.retriever == null || items.every((q) => q.passages != null)
        ? Math.min(settings.ndocs, Math.max(1, ...items.map((q) => (q.passages ?? options.passages)?.length ?? 1)))
        : settings.ndocs;
    const perSearch = retrieval.mode === "never" ? 1 : settings.beamWidth * width;
    if (perSearch > ctx.sequences) {
        throw new SelfRagError(`the search needs beamWidth x ndocs = ${perSearch} sequence slots but the model was ` +
            `loaded with sequences: ${ctx.sequences}`, "INVALID_ARGUMENT");
    }
    const perSequence = ctx.info.contextPerSequence;
    const prompts = items.map(({question}) => {
        const prompt = model.tokenize(formatPrompt(taskInstruction(options.task ?? "none", question), options.input));
        if (prompt.length + 1 + settings.maxNewTokens > perSequence) {
            throw new SelfRagError(`the prompt (${prompt.length} tokens) plus maxNewTokens (${settings.maxNewTokens}) does not fit ` +
                `the context of ${perSequence} tokens per sequence`, "CONTEXT_OVERFLOW");
        }
        return prompt;
    });
    const scorer = await SegmentScorer.create(model.reflection.ids);
    const waveSize = Math.max(1, Math.floor(ctx.sequences / perSearch));
    const answers: LongFormAnswer[] = [];
    for (let start = 0; start < items.length; start += waveSize) {
        const wave = items.slice(start, start + waveSize).map((item, i) => ({...item, prompt: prompts[start + i]}));
        answers.push(...await runWave(model, scorer, wave, settings, options));
    }
    return answers;
}

async function runWave(model: SelfRagModel, scorer: SegmentScorer, wave: (LongFormQuestion & {prompt: Int32Array})[],
    settings: LongFormSettings, options: LongFormOptions): Promise<LongFormAnswer[]> {
    const ctx = model.context;
    const roots = ctx.acquire(wave.length);
    const unowned = new Set(roots); // root slots no search has taken over yet
    const sources: ForkingSegmentSource[] = [];
    try {
        const block = await ctx.evaluate(wave.map((w, i) => ({seq: roots[i], tokens: w.prompt})));
        const decisions = wave.map((_, i) => decideRetrieval(block.reflection.subarray(i * 15, (i + 1) * 15), settings.retrieval));
        const extraTokens = wave.map(() => 0);
        if (options.rootDecision === "reference") {
            for (let i = 0; i < wave.length; i++) {
                if (!decisions[i].decision) continue;
                const probe = await referenceRootCheck(model, roots[i], wave[i].prompt);
                decisions[i].decision = probe.retrieve;
                extraTokens[i] = probe.evaluated;
            }
        }
        const answers: LongFormAnswer[] = new Array(wave.length);
        const plain = wave.map((_, i) => i).filter((i) => !decisions[i].decision);
        if (plain.length > 0) {
            const results = await answerWithoutRetrieval(model, plain.map((i) => roots[i]), settings.maxNewTokens);
            plain.forEach((i, k) => {
                const r = results[k];
                answers[i] = {
                    answer: r.clean, retrieve: decisions[i], docs: [], tree: [],
                    segments: [{text: r.text, clean: r.clean, score: 1, stopReason: r.stopReason}],
                    stats: {evaluatedTokens: wave[i].prompt.length + extraTokens[i] + r.generated, // [No Retrieval] + generated - last
                        referenceTokens: wave[i].prompt.length + 1 + r.generated, nodes: 0, depth: 0, stop: "no-retrieval"}
                };
            });
        }
        const searching = wave.map((_, i) => i).filter((i) => decisions[i].decision);
        const rendezvous = new ExpansionRendezvous(model, scorer, {threshold: settings.retrieval.threshold, weights: options.weights}, searching.length);
        const outcomes = await Promise.allSettled(searching.map(async (i) => {
            try {
                const root: TreeNode = {id: 0, parent: null, depth: 0, text: "", tokens: new Int32Array(0), score: 1, asksRetrieval: true,
                    stopReason: "root", inBeam: true};
                const source = new ForkingSegmentSource(model, scorer, {policy: settings.policy, maxNewTokens: settings.maxNewTokens,
                    threshold: settings.retrieval.threshold, weights: options.weights}, root, roots[i], wave[i].prompt.length);
                sources.push(source);
                unowned.delete(roots[i]);
                const question = wave[i].question;
                const passagesFor = async (_node: TreeNode, path: readonly TreeNode[]) => {
                    const given = wave[i].passages ?? (options.retriever == null ? options.passages : undefined);
                    if (given != null || options.retriever == null) return (given ?? []).slice(0, settings.ndocs);
                    const soFar = path.map((n) => postProcessAnswer(n.text)).join(" ");
                    return (await options.retriever(soFar === "" ? question : `${question} ${soFar}`, settings.ndocs)).slice(0, settings.ndocs);
                };
                const result = await TreeSearch.run(root, rendezvous.source(source),
                    {beamWidth: settings.beamWidth, maxDepth: settings.maxDepth, passagesFor});
                answers[i] = assembleLongForm(result, decisions[i], options.ignoreCont ?? false, {
                    evaluatedTokens: evaluatedTokens(result.nodes, wave[i].prompt.length, settings.policy) + extraTokens[i],
                    referenceTokens: referenceTokens(result.nodes, wave[i].prompt.length, settings.policy)
                });
            } finally {
                rendezvous.searchEnded();
            }
        }));
        const failed = outcomes.find((o): o is PromiseRejectedResult => o.status === "rejected");
        if (failed != null) throw failed.reason;
        return answers;
    } finally {
        await ctx.release(...unowned);
        for (const source of sources) await source.releaseAll();
    }
}

/**
 * Tokens the shared-prefix schedule decodes for one search: the prompt once, every child's passage
 * and its generated tokens but the last (never decoded), and with the "reference" policy each
 * expanded node's segment once more (re-appended after dropping its passage).
 */
function evaluatedTokens(nodes: readonly TreeNode[], promptLength: number, policy: ContextPolicy): number {
    const expanded = new Set(nodes.map((n) => n.parent));
    let total = promptLength;
    for (const node of nodes) {
        if (node.parent == null) continue;
        const generated = node.tokens.length + (node.asksRetrieval ? 1 : 0);
        total += (node.passageTokens?.length ?? 0) + generated - 1;
        if (policy === "reference" && expanded.has(node.id)) total += node.tokens.length;
    }
    return total;
}

/** The reference long-form rule: [Retrieval] must appear in a 25-token passage-free generation. */
async function referenceRootCheck(model: SelfRagModel, seq: number, prompt: Int32Array): Promise<{retrieve: boolean, evaluated: number}> {
    const [probe] = await model.context.generate([{seq, maxTokens: 25}]);
    // Put the slot back to the prompt with its pending distribution.
    await model.context.trim(seq, prompt.length - 1);
    await model.context.evaluate([{seq, tokens: prompt.subarray(prompt.length - 1)}]);
    return {retrieve: probe.tokens.includes(model.reflection.id("[Retrieval]")), evaluated: probe.tokens.length}; // 25 decoded minus the last, plus the prompt token re-evaluated
}

/** Roots that skip retrieval: [No Retrieval], then one generation each, all in one batch. */
async function answerWithoutRetrieval(model: SelfRagModel, seqs: readonly number[], maxNewTokens: number) {
    const ctx = model.context;
    await ctx.evaluate(seqs.map((seq) => ({seq, tokens: Int32Array.of(model.reflection.id("[No Retrieval]"))})));
    const segments = await ctx.generate(seqs.map((seq) => ({seq, maxTokens: maxNewTokens})));
    return segments.map((segment) => {
        // The reference keeps the text up to the first blank line.
        const text = model.detokenize(segment.tokens).split("\n\n")[0];
        return {text, clean: postProcessAnswer(text), stopReason: segment.stopReason, generated: segment.tokens.length};
    });
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
