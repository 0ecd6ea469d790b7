import {postProcessAnswer} from "./answers.js";
import {invalidParameterError} from "../errors.js";
import {ForkingSegmentSource} from "./ForkingSegmentSource.js";
import {planLongForm, planQuestionItem, requirePromptFits, requireSlots, slotsNeeded, type ContextPolicy, type LongFormPlan, type PlannedQuestion,
    type Retriever, type RootDecision} from "./plan.js";
import type {Profile} from "./profiles.js";
import {formatPrompt, taskInstruction, type Passage, type Task} from "./prompts.js";
import {answerLongReference} from "./ReferenceLongForm.js";
import {decide, type RetrievalDecision, type RetrievalDecisionOptions} from "./RetrievalDecision.js";
import type {CritiqueScore, CritiqueWeights} from "./SegmentScorer.js";
import type {EngineModel} from "../engine/EngineModel.js";
import {SlotLease} from "../engine/SlotLease.js";
import type {RunControl} from "./events.js";
import {cutTextAtStop} from "./stops.js";
import {TreeSearch, type SearchStop, type TreeNode, type TreeSearchResult} from "./TreeSearch.js";
import {sharedPrefixLength} from "./sharedPrefix.js";

export type {Retriever};

export interface LongFormOptions extends RetrievalDecisionOptions {
    /** Static passages: the same list at every depth, best first (the reference's setting). */
    passages?: readonly Passage[];
    /** Dynamic passages: queried at every segment with the question plus the text so far. */
    retriever?: Retriever;
    /** Passages per expansion (default 5; reference profile 10). */
    ndocs?: number;
    /** Children kept per depth (default 2). */
    beamWidth?: number;
    /** Depths 1..maxDepth-1 are generated (default 7). */
    maxDepth?: number;
    /** Token budget per segment (default 100; reference profile 15). */
    maxNewTokens?: number;
    /**
     * Stop strings (one, or up to 4): the answer text is cut before the first one. The search is
     * not changed by them (segments and the tree keep their texts).
     */
    stop?: string | readonly string[];
    /**
     * The reference profile reproduces `run_long_form_static.py` (its prompt, string contexts re-tokenized
     * whole, whole-budget segments scored over all their tokens, its context and utility bugs, its
     * root probe, its ALCE / FactScore output); see docs/evaluation.md, "Differences from the reference
     * scripts". Static passages only.
     */
    profile?: Profile;
    /** The reference policy (default): children see prompt + generated text; "interleaved": earlier passages stay. */
    contextPolicy?: ContextPolicy;
    /** Drop segments marked [No support / Contradictory] from the answer. */
    ignoreCont?: boolean;
    weights?: CritiqueWeights;
    task?: Task;
    input?: string;
    /**
     * "threshold" (default): the root decides with the threshold at the first position, as short
     * form does. The reference rule: the long-form script's, which also requires [Retrieval] to
     * appear in a 25-token passage-free generation.
     */
    rootDecision?: RootDecision;
}

/** A question with its own passages (they take precedence over options.passages and options.retriever). */
export interface LongFormQuestion {
    /** Echoed in the answer (default: the question's index in the call). */
    id?: string;
    question: string;
    passages?: readonly Passage[];
    /** Optional `### Input:` section (otherwise `options.input`). */
    input?: string;
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
    /** Tokens generated for this segment (the retrieval request that ended it included). */
    tokens: number;
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
    /** Reference profile: the best path's raw segment texts, root first (the script's "intermediate"). */
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
 * Long-form Self-RAG (docs/self-rag.md, "Long form"): root retrieval decision, then a segment-level
 * beam search in which every node's prefix is encoded once and forked by its children. Written
 * as per-question code: lease beamWidth x ndocs slots, decide, search, release. Each depth
 * proceeds as soon as its own expansions are done; other questions share the decode steps.
 *
 * ```ts
 * const r = await answerLong(model, "Tell me a bio of Marie Curie.", {passages, beamWidth: 2, maxDepth: 4});
 * console.log(r.answer, r.stats.evaluatedTokens / r.stats.referenceTokens);
 * ```
 */
export async function answerLong(model: EngineModel, question: string | LongFormQuestion, options: LongFormOptions | LongFormPlan = {},
    control: RunControl = {}): Promise<LongFormAnswer> {
    const [answer] = await answerLongBatch(model, [question], options, control);
    return answer;
}

/** Several questions: "submit all, collect all"; they run as far as the slots allow and share decode steps. */
export async function answerLongBatch(model: EngineModel, questions: readonly (string | LongFormQuestion)[],
    options: LongFormOptions | LongFormPlan = {}, control: RunControl = {}): Promise<LongFormAnswer[]> {
    const plan = planLongForm(options);
    if (!Array.isArray(questions)) throw invalidParameterError("questions", "an array of questions", questions);
    const ctx = model.context;
    const prepared = questions.map((question, i) => {
        const q = planQuestionItem(question, i, plan, questions.length === 1 ? "question" : `questions[${i}]`);
        // Read before tokenizing: a disposed model's question fails with CONTEXT_DISPOSED, as its work in flight does.
        const perSequence = ctx.info.contextPerSequence;
        const text = formatPrompt(taskInstruction(q.task, q.question, undefined, {profile: plan.profile, long: true}), q.input);
        const prompt = model.tokenize(text);
        requirePromptFits(plan, perSequence, prompt.length, q.id);
        // Static passages cap the children per node; a retriever may return up to ndocs. (A server
        // refuses a question with neither before it gets here, in either form: serving/runAnswer.ts.)
        const given = staticPassages(q, plan);
        if (given == null && plan.retriever == null && plan.mode !== "never") {
            throw invalidParameterError(plan.surface.kind === "api" ? "passages" : plan.surface.name("passages"), "a passage list or a retriever", undefined);
        }
        const slots = slotsNeeded(plan, given != null ? given.length : undefined);
        requireSlots(plan, slots, ctx.sequences, q.id);
        return {q, text, prompt, slots};
    });
    return Promise.all(prepared.map(async (item) => {
        const {warnings, ...result} = await answerOne(model, item, plan, control);
        const answer = cutTextAtStop(result.answer, plan.stop);
        return {id: item.q.id, ...result, answer: answer.text, warnings: warnings ?? []};
    }));
}

/** The passages a question searches with when they are fixed: its own, else the plan's unless a retriever is given. */
function staticPassages(q: PlannedQuestion, plan: LongFormPlan): readonly Passage[] | undefined {
    return q.passages ?? (plan.retriever == null ? plan.passages : undefined);
}

async function answerOne(model: EngineModel, item: {q: PlannedQuestion, text: string, prompt: Int32Array, slots: number},
    plan: LongFormPlan, control: RunControl): Promise<LongFormResult> {
    const ctx = model.context;
    const {q} = item;
    const lease = await SlotLease.acquire(ctx, item.slots, control.signal);
    control.onStart?.();
    try {
        if (plan.profile.scriptLongFormSearch) {
            const passages = (q.passages ?? plan.passages ?? []).slice(0, plan.ndocs);
            return await answerLongReference(model, lease, item.text, passages, {
                task: q.task, mode: plan.mode, threshold: plan.threshold, beamWidth: plan.beamWidth,
                maxDepth: plan.maxDepth, maxNewTokens: plan.maxNewTokens, weights: plan.weights, ignoreCont: plan.ignoreCont
            }, (segments, weights) => model.scorer.score(segments, weights), control);
        }
        const [root] = lease.take(1);
        const rows = await ctx.prefill(root, item.prompt);
        const decision = decide(rows.reflection, plan);
        let extraTokens = 0;
        if (decision.decision && plan.rootDecision !== "threshold") {
            const probe = await referenceRootCheck(model, root, item.prompt);
            decision.decision = probe.retrieve;
            extraTokens = probe.evaluated;
        }
        control.onEvent?.({type: "retrieval", retrieve: decision});
        if (!decision.decision) {
            const r = await answerWithoutRetrieval(model, root, plan.maxNewTokens);
            return {
                answer: r.clean, retrieve: decision, docs: [], tree: [],
                segments: [{text: r.text, clean: r.clean, score: 1, stopReason: r.stopReason, tokens: r.generated}],
                stats: {evaluatedTokens: item.prompt.length + extraTokens + r.generated, // [No Retrieval] + generated - last
                    referenceTokens: item.prompt.length + 1 + r.generated, nodes: 0, depth: 0, stop: "no-retrieval"}
            };
        }
        const rootNode: TreeNode = {id: 0, parent: null, depth: 0, text: "", tokens: new Int32Array(0), score: 1, asksRetrieval: true,
            stopReason: "root", inBeam: true};
        const source = new ForkingSegmentSource(model, model.scorer, {policy: plan.contextPolicy, maxNewTokens: plan.maxNewTokens,
            threshold: plan.threshold, weights: plan.weights, onSegment: control.onEvent}, lease, rootNode, root, item.prompt.length);
        const given = staticPassages(q, plan);
        const retriever = plan.retriever;
        const passagesFor = async (_node: TreeNode, path: readonly TreeNode[]) => {
            if (given != null || retriever == null) return (given ?? []).slice(0, plan.ndocs);
            const soFar = path.map((n) => postProcessAnswer(n.text)).join(" ");
            const found = await retriever(soFar === "" ? q.question : `${q.question} ${soFar}`, plan.ndocs);
            lease.checkAborted();
            return found.slice(0, plan.ndocs);
        };
        const result = await TreeSearch.run(rootNode, source, {beamWidth: plan.beamWidth, maxDepth: plan.maxDepth, passagesFor});
        if (result.bestPath.length === 0) {
            // Nothing to search with (no passage found, none fits, or maxDepth 1): answer as without
            // retrieval, as short form does, and say why.
            const [seq] = lease.take(1);
            const reprefilled = ctx.prefill(seq, item.prompt);
            const r = await answerWithoutRetrieval(model, seq, plan.maxNewTokens);
            await reprefilled;
            return {
                answer: r.clean, retrieve: decision, docs: [], tree: [],
                segments: [{text: r.text, clean: r.clean, score: 1, stopReason: r.stopReason, tokens: r.generated}],
                warnings: [...source.warnings, result.stop === "no-passages"
                    ? "retrieval was decided but no passages were found: answered without retrieval"
                    : result.stop === "context" ? `the first segment cannot be generated (${rootNode.notExpanded ?? "context full"}): answered without retrieval`
                        : plan.maxDepth === 1 ? `${plan.surface.name("maxDepth")} 1 generates no segment (depths 1 to maxDepth - 1 are generated): answered without retrieval`
                            : `the search generated no segment (stop: ${result.stop}): answered without retrieval`],
                stats: {evaluatedTokens: 2 * item.prompt.length + extraTokens + r.generated, referenceTokens: item.prompt.length + 1 + r.generated,
                    nodes: 0, depth: 0, stop: result.stop}
            };
        }
        const answer = assembleLongForm(result, decision, plan.ignoreCont, {
            evaluatedTokens: evaluatedTokens(result.nodes, item.prompt.length, plan.contextPolicy) + extraTokens,
            referenceTokens: referenceTokens(result.nodes, item.prompt.length, plan.contextPolicy)
        });
        if (source.warnings.length > 0) answer.warnings = [...(answer.warnings ?? []), ...source.warnings];
        return answer;
    } finally {
        await lease.close();
    }
}

/**
 * Tokens the shared-prefix schedule decodes for one search: the prompt once, every child's passage
 * (the siblings' common start once) and its generated tokens but the last (never decoded), and with
 * the reference policy each expanded node's segment once more (re-appended after dropping its passage).
 */
function evaluatedTokens(nodes: readonly TreeNode[], promptLength: number, policy: ContextPolicy): number {
    const expanded = new Set(nodes.map((n) => n.parent));
    const siblings = new Map<number, Int32Array[]>();
    let total = promptLength;
    for (const node of nodes) {
        if (node.parent == null) continue;
        const generated = node.tokens.length + (node.asksRetrieval ? 1 : 0);
        total += (node.passageTokens?.length ?? 0) + generated - 1;
        if (policy !== "interleaved" && expanded.has(node.id)) total += node.tokens.length;
        if (node.passageTokens != null) (siblings.get(node.parent) ?? siblings.set(node.parent, []).get(node.parent)!).push(node.passageTokens);
    }
    for (const passages of siblings.values()) total -= (passages.length - 1) * sharedPrefixLength(passages);
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
        segments.push({text: node.text, clean, passage: node.passage, citation, score: node.score, critique: node.critique, stopReason: node.stopReason,
            tokens: node.tokens.length + (node.asksRetrieval ? 1 : 0)});
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
