import {postProcessAnswer} from "./answers.js";
import {SelfRagError, invalidParameterError, requirePositiveInteger} from "../errors.js";
import {ForkingSegmentSource, type ContextPolicy} from "./ForkingSegmentSource.js";
import {checkProfile, LONG_FORM_DEFAULTS, weightsOver, type Profile} from "./profiles.js";
import {formatPrompt, taskInstruction, type Passage, type Task} from "./prompts.js";
import {answerLongReference} from "./ReferenceLongForm.js";
import {checkRetrievalOptions, decideRetrieval, type RetrievalDecision, type RetrievalDecisionOptions} from "./RetrievalDecision.js";
import {SegmentScorer, type CritiqueScore, type CritiqueWeights} from "./SegmentScorer.js";
import type {EngineModel} from "../engine/EngineModel.js";
import {SlotLease} from "../engine/SlotLease.js";
import type {RunControl} from "./events.js";
import {TreeSearch, type SearchStop, type TreeNode, type TreeSearchResult} from "./TreeSearch.js";

export type Retriever = (query: string, k: number) => Promise<readonly Passage[]> | readonly Passage[];

export interface LongFormOptions extends RetrievalDecisionOptions {
    /** Static passages: the same list at every depth, best first (the reference's setting). */
    passages?: readonly Passage[];
    /** Dynamic passages: queried at every segment with the question plus the text so far. */
    retriever?: Retriever;
    /** Passages per expansion (default 5; "reference" profile 10). */
    ndocs?: number;
    /** Children kept per depth (default 2). */
    beamWidth?: number;
    /** Depths 1..maxDepth-1 are generated (default 7). */
    maxDepth?: number;
    /** Token budget per segment (default 100; "reference" profile 15). */
    maxNewTokens?: number;
    /**
     * "reference": reproduce `run_long_form_static.py` (its prompt, string contexts re-tokenized
     * whole, whole-budget segments scored over all their tokens, its context and utility bugs, its
     * root probe, its ALCE / FactScore output); see the README's "Differences from the reference
     * scripts". Static passages only.
     */
    profile?: Profile;
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
    /** Echoed in the answer (default: the question's index in the call). */
    id?: string;
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
    /** The question's id (default: its index in the call), as short form. */
    id: string;
    /** The best path's segments joined, each cited as [n] (1-based into docs). */
    answer: string;
    retrieve: RetrievalDecision;
    segments: LongFormSegment[];
    /** The cited passages in citation order. */
    docs: Passage[];
    tree: LongFormNodeJson[];
    /** Why the answer is not what the options asked for (e.g. no passages found, a passage truncated); empty when it is. */
    warnings: string[];
    /** "reference" profile: the best path's raw segment texts, root first (the script's "intermediate"). */
    intermediate?: string[];
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

/** What a search returns before the question's id and the warnings list are attached. */
export type LongFormResult = Omit<LongFormAnswer, "id" | "warnings"> & {warnings?: string[]};

/**
 * Long-form Self-RAG (SELF_RAG.md, "Long form"): root retrieval decision, then a segment-level
 * beam search in which every node's prefix is encoded once and forked by its children. Written
 * as per-question code: lease beamWidth x ndocs slots, decide, search, release. Each depth
 * proceeds as soon as its own expansions are done; other questions share the decode steps.
 *
 * ```ts
 * const r = await answerLong(model, "Tell me a bio of Marie Curie.", {passages, beamWidth: 2, maxDepth: 4});
 * console.log(r.answer, r.stats.evaluatedTokens / r.stats.referenceTokens);
 * ```
 */
export async function answerLong(model: EngineModel, question: string | LongFormQuestion, options: LongFormOptions = {},
    control: RunControl = {}): Promise<LongFormAnswer> {
    const [answer] = await answerLongBatch(model, [question], options, control);
    return answer;
}

interface LongFormSettings {
    profile: Profile;
    weights: CritiqueWeights;
    retrieval: ReturnType<typeof checkRetrievalOptions>;
    ndocs: number;
    beamWidth: number;
    maxDepth: number;
    maxNewTokens: number;
    policy: ContextPolicy;
}

/** Several questions: "submit all, collect all"; they run as far as the slots allow and share decode steps. */
export async function answerLongBatch(model: EngineModel, questions: readonly (string | LongFormQuestion)[],
    options: LongFormOptions = {}, control: RunControl = {}): Promise<LongFormAnswer[]> {
    const items = questions.map((q, i) => {
        const item = typeof q === "string" ? {question: q} : q;
        if (typeof item?.question !== "string") throw invalidParameterError(`questions[${i}].question`, "a string", item?.question);
        return item;
    });
    const retrieval = checkRetrievalOptions(options);
    const profile = checkProfile(options.profile);
    const defaults = LONG_FORM_DEFAULTS[profile];
    const settings: LongFormSettings = {
        profile, weights: weightsOver(defaults.weights, options.weights),
        retrieval,
        ndocs: requirePositiveInteger("ndocs", options.ndocs ?? defaults.ndocs, 1024),
        beamWidth: requirePositiveInteger("beamWidth", options.beamWidth ?? 2, 64),
        maxDepth: requirePositiveInteger("maxDepth", options.maxDepth ?? 7, 64),
        maxNewTokens: requirePositiveInteger("maxNewTokens", options.maxNewTokens ?? defaults.maxNewTokens, 1 << 20),
        policy: options.contextPolicy ?? "reference"
    };
    if (profile === "reference" && options.retriever != null && items.some((q) => (q.passages ?? options.passages) == null)) {
        throw invalidParameterError("passages", `static passages under profile "reference" (the script has no dynamic retrieval)`, "a retriever");
    }
    if (settings.policy !== "reference" && settings.policy !== "interleaved") {
        throw invalidParameterError("contextPolicy", `"reference" or "interleaved"`, settings.policy);
    }
    if (options.retriever == null && retrieval.mode !== "never" && items.some((q) => (q.passages ?? options.passages) == null)) {
        throw invalidParameterError("passages", "a passage list or a retriever", undefined);
    }
    const ctx = model.context;
    const perSequence = ctx.info.contextPerSequence;
    const prepared = items.map((item) => {
        const text = formatPrompt(taskInstruction(options.task ?? "none", item.question, undefined, {profile, long: true}), options.input);
        const prompt = model.tokenize(text);
        if (prompt.length + 1 + settings.maxNewTokens > perSequence) {
            throw new SelfRagError(`the prompt (${prompt.length} tokens) plus maxNewTokens (${settings.maxNewTokens}) does not fit ` +
                `the context of ${perSequence} tokens per sequence`, "CONTEXT_OVERFLOW");
        }
        // Static passages cap the children per node; a retriever may return up to ndocs.
        const given = item.passages ?? (options.retriever == null ? options.passages : undefined);
        const width = given != null ? Math.min(settings.ndocs, Math.max(1, given.length)) : settings.ndocs;
        const slots = retrieval.mode === "never" ? 1 : settings.beamWidth * width;
        if (slots > ctx.sequences) {
            throw new SelfRagError(`the search needs beamWidth x ndocs = ${slots} sequence slots but the model was ` +
                `loaded with sequences: ${ctx.sequences}; lower beamWidth or ndocs, or raise sequences`, "TOO_FEW_SLOTS");
        }
        return {...item, text, prompt, slots};
    });
    const scorer = await SegmentScorer.create(model.reflection.ids);
    return Promise.all(prepared.map(async (item, i) => {
        const {warnings, ...result} = await answerOne(model, scorer, item, settings, options, control);
        return {id: item.id ?? String(i), ...result, warnings: warnings ?? []};
    }));
}

async function answerOne(model: EngineModel, scorer: SegmentScorer, item: LongFormQuestion & {text: string, prompt: Int32Array, slots: number},
    settings: LongFormSettings, options: LongFormOptions, control: RunControl): Promise<LongFormResult> {
    const ctx = model.context;
    const lease = await SlotLease.acquire(ctx, item.slots, control.signal);
    control.onStart?.();
    try {
        if (settings.profile === "reference") {
            const passages = (item.passages ?? options.passages ?? []).slice(0, settings.ndocs);
            return await answerLongReference(model, lease, item.text, passages, {
                task: options.task ?? "none", mode: settings.retrieval.mode, threshold: settings.retrieval.threshold, beamWidth: settings.beamWidth,
                maxDepth: settings.maxDepth, maxNewTokens: settings.maxNewTokens, weights: settings.weights, ignoreCont: options.ignoreCont ?? false
            }, (segments, weights) => scorer.score(segments, weights), control);
        }
        const [root] = lease.take(1);
        const rows = await ctx.prefill(root, item.prompt);
        const decision = decideRetrieval(rows.reflection, settings.retrieval);
        let extraTokens = 0;
        if (decision.decision && options.rootDecision === "reference") {
            const probe = await referenceRootCheck(model, root, item.prompt);
            decision.decision = probe.retrieve;
            extraTokens = probe.evaluated;
        }
        control.onEvent?.({type: "retrieval", retrieve: decision});
        if (!decision.decision) {
            const r = await answerWithoutRetrieval(model, root, settings.maxNewTokens);
            return {
                answer: r.clean, retrieve: decision, docs: [], tree: [],
                segments: [{text: r.text, clean: r.clean, score: 1, stopReason: r.stopReason}],
                stats: {evaluatedTokens: item.prompt.length + extraTokens + r.generated, // [No Retrieval] + generated - last
                    referenceTokens: item.prompt.length + 1 + r.generated, nodes: 0, depth: 0, stop: "no-retrieval"}
            };
        }
        const rootNode: TreeNode = {id: 0, parent: null, depth: 0, text: "", tokens: new Int32Array(0), score: 1, asksRetrieval: true,
            stopReason: "root", inBeam: true};
        const source = new ForkingSegmentSource(model, scorer, {policy: settings.policy, maxNewTokens: settings.maxNewTokens,
            threshold: settings.retrieval.threshold, weights: settings.weights, onSegment: control.onEvent}, lease, rootNode, root, item.prompt.length);
        const passagesFor = async (_node: TreeNode, path: readonly TreeNode[]) => {
            const given = item.passages ?? (options.retriever == null ? options.passages : undefined);
            if (given != null || options.retriever == null) return (given ?? []).slice(0, settings.ndocs);
            const soFar = path.map((n) => postProcessAnswer(n.text)).join(" ");
            const found = await options.retriever(soFar === "" ? item.question : `${item.question} ${soFar}`, settings.ndocs);
            lease.checkAborted();
            return found.slice(0, settings.ndocs);
        };
        const result = await TreeSearch.run(rootNode, source, {beamWidth: settings.beamWidth, maxDepth: settings.maxDepth, passagesFor});
        if (result.bestPath.length === 0) {
            // Nothing to search with (no passage found, none fits, or maxDepth 1): answer as without
            // retrieval, as short form does, and say why.
            const [seq] = lease.take(1);
            const reprefilled = ctx.prefill(seq, item.prompt);
            const r = await answerWithoutRetrieval(model, seq, settings.maxNewTokens);
            await reprefilled;
            return {
                answer: r.clean, retrieve: decision, docs: [], tree: [],
                segments: [{text: r.text, clean: r.clean, score: 1, stopReason: r.stopReason}],
                warnings: [...source.warnings, result.stop === "no-passages"
                    ? "retrieval was decided but no passages were found: answered without retrieval"
                    : result.stop === "context" ? `the first segment cannot be generated (${rootNode.notExpanded ?? "context full"}): answered without retrieval`
                        : settings.maxDepth === 1 ? "maxDepth 1 generates no segment (depths 1 to maxDepth - 1 are generated): answered without retrieval"
                            : `the search generated no segment (stop: ${result.stop}): answered without retrieval`],
                stats: {evaluatedTokens: 2 * item.prompt.length + extraTokens + r.generated, referenceTokens: item.prompt.length + 1 + r.generated,
                    nodes: 0, depth: 0, stop: result.stop}
            };
        }
        const answer = assembleLongForm(result, decision, options.ignoreCont ?? false, {
            evaluatedTokens: evaluatedTokens(result.nodes, item.prompt.length, settings.policy) + extraTokens,
            referenceTokens: referenceTokens(result.nodes, item.prompt.length, settings.policy)
        });
        if (source.warnings.length > 0) answer.warnings = [...(answer.warnings ?? []), ...source.warnings];
        return answer;
    } finally {
        await lease.close();
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
async function referenceRootCheck(model: EngineModel, seq: number, prompt: Int32Array): Promise<{retrieve: boolean, evaluated: number}> {
    const ctx = model.context;
    const probe = await ctx.generateOne(seq, 25);
    // Put the slot back to the prompt with its pending distribution.
    const trimmed = ctx.trim(seq, prompt.length - 1);
    await ctx.prefill(seq, prompt.subarray(prompt.length - 1));
    await trimmed;
    return {retrieve: probe.tokens.includes(model.reflection.id("[Retrieval]")), evaluated: probe.tokens.length}; // 25 decoded minus the last, plus the prompt token re-evaluated
}

/** A root that skips retrieval: [No Retrieval], then one generation. */
async function answerWithoutRetrieval(model: EngineModel, seq: number, maxNewTokens: number) {
    const ctx = model.context;
    const prefilled = ctx.prefill(seq, Int32Array.of(model.reflection.id("[No Retrieval]")));
    const segment = await ctx.generateOne(seq, maxNewTokens);
    await prefilled;
    // The reference keeps the text up to the first blank line.
    const text = model.detokenize(segment.tokens).split("\n\n")[0];
    return {text, clean: postProcessAnswer(text), stopReason: segment.stopReason, generated: segment.tokens.length};
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
    stats: {evaluatedTokens: number, referenceTokens: number}): LongFormResult {
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
