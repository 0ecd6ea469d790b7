import {closedSetVote, postProcessAnswer} from "./answers.js";
import {SelfRagError, invalidParameterError} from "../errors.js";
import type {EngineModel} from "../engine/EngineModel.js";
import {SlotLease} from "../engine/SlotLease.js";
import type {NativeSegment} from "../engine/types.js";
import type {RunControl} from "./events.js";
import {fitPassage as fitPassageTokens, truncationWarning} from "./PassageFit.js";
import {planQuestionItem, type Retriever, planShortForm, requirePromptFits, requireSlots, type PlannedQuestion, type ShortFormPlan} from "./plan.js";
import {profileStrategy, type Profile, type ProfileStrategy} from "./profiles.js";
import {formatPrompt, taskInstruction, type Passage, type Task} from "./prompts.js";
import {decide, type RetrievalDecision, type RetrievalDecisionOptions} from "./RetrievalDecision.js";
import {R} from "../engine/ReflectionTokens.js";
import type {CritiqueScore, CritiqueWeights} from "./SegmentScorer.js";
import {sharedPrefixLength} from "./sharedPrefix.js";
import {cutAtStop} from "./stops.js";
import {traceCandidate, type TraceRecord} from "./traces.js";

export interface ShortFormQuestion {
    id?: string;
    question: string;
    /** Optional `### Input:` section. */
    input?: string;
    /** This question's passages, best first (otherwise `options.passages`). */
    passages?: readonly Passage[];
    task?: Task;
    /** Answer choices for ARC-style tasks. */
    choices?: readonly string[];
}

export interface ShortFormOptions extends RetrievalDecisionOptions {
    /** Passages for every question that brings none of its own, best first. */
    passages?: readonly Passage[];
    /** Retrieval for questions without passages: called with the question and ndocs (e.g. `index.asRetriever()`). */
    retriever?: Retriever;
    /** Passages to use per question (default 5; reference profile 10): one candidate each. */
    ndocs?: number;
    /** Token budget per candidate (default 100; reference profile 15). */
    maxNewTokens?: number;
    /**
     * Stop strings (one, or up to 4): each candidate ends before the first one in its generated text
     * (reflection tokens included), with stopReason "stop". The engine stops on tokens, so the
     * generation is cut afterwards: its text, critique scores and token count are those of the
     * tokens up to the one completing the stop string (see `cutAtStop`).
     */
    stop?: string | readonly string[];
    /**
     * The reference profile reproduces `run_short_form.py` string for string (prompts, post-processing, the
     * vote, the raw best candidate as the answer of open tasks, its defaults and its log-prob
     * retrieval ratio); see docs/evaluation.md, "Differences from the reference scripts".
     */
    profile?: Profile;
    weights?: CritiqueWeights;
    /** Task of every question that names none (default "none": the question is the instruction). */
    task?: Task;
    /** Answer choices (A, B, C, D(, E) order) for every question that brings none; ARC-style tasks only. */
    choices?: readonly string[];
    /** Vote over post-processed answers (default: on for fever, arc_c, arc_easy, obqa; reference profile: fever and arc_c). */
    closedSet?: boolean;
    /** Record token ids, log-probs and reflection rows of every candidate (JSONL trace format). */
    traces?: boolean;
    /**
     * Answer both branches whatever the decision (one slot more per question): the answer and
     * `candidates` are the decided branch's, as without it; the trace holds both, for `tune`.
     * What `selfrag eval --save-traces` sets; it costs the other branch's generation.
     */
    bothBranches?: boolean;
    /**
     * Prefill the passages while the retrieval decision is computed (default true): a retrieving
     * question then needs no round trip to JavaScript between its prompt and its candidates; one
     * that does not retrieve wastes that prefill. Set false when most questions do not retrieve
     * and passages are long.
     */
    prefetchPassages?: boolean;
    /**
     * Cut each passage to at most this many tokens (`[Retrieval]<paragraph>title\ntext</paragraph>`,
     * its text shortened, the markup kept), with a warning per passage cut: a cap on the prefill
     * each candidate costs when passages are long. Default: as many as the slot allows.
     */
    maxPassageTokens?: number;
}

export interface CandidateResult extends CritiqueScore {
    /** The candidate's passage; null for the candidate generated without retrieval. */
    passage: Passage | null;
    /** Generated text with the reflection tokens. */
    text: string;
    /** Post-processed text (reflection tokens, </s> and newlines removed; see `postProcessAnswer`). */
    answer: string;
    tokens: number;
    stopReason: string;
}

export interface ShortFormAnswer {
    id: string;
    answer: string;
    retrieve: RetrievalDecision;
    /** One per passage with retrieval, one (no passage) without. */
    candidates: CandidateResult[];
    /** Index of the chosen candidate (for closed-set answers: the best one voting for the answer). */
    best: number;
    /** Closed-set vote totals per answer. */
    votes?: Record<string, number>;
    warnings: string[];
    trace?: TraceRecord;
    /** promptTokens: the prompt's length; cachedPromptTokens: of those, how many its slot already held (not decoded again). */
    stats: {promptTokens: number, cachedPromptTokens: number, passageTokens: number, generatedTokens: number};
}

interface Job {
    id: string;
    task: Task;
    prompt: Int32Array;
    /** Leading prompt tokens its root slot already held (not decoded again). */
    cachedPromptTokens: number;
    passages: Passage[];
    warnings: string[];
}

/** Tokenizes and checks a question before any slot is taken: a prompt that cannot fit fails here, alone. */
function prepare(model: EngineModel, q: PlannedQuestion, plan: ShortFormPlan): Job {
    // Read before tokenizing: a disposed model's question fails with CONTEXT_DISPOSED, as its work in flight does.
    const perSequence = model.context.info.contextPerSequence;
    const prompt = model.tokenize(formatPrompt(taskInstruction(q.task, q.question, q.choices, {profile: plan.profile}), q.input));
    requirePromptFits(plan, perSequence, prompt.length, q.id);
    return {id: q.id, task: q.task, prompt, cachedPromptTokens: 0, passages: [], warnings: []};
}

/**
 * Short-form Self-RAG for one question (docs/self-rag.md, "What is read from the model"), as plain per-question code:
 * lease one slot per passage, prefill the prompt, decide, fork the prompt into the other slots,
 * prefill each passage, generate and score each candidate, release. Whatever other questions are
 * in flight share every decode step with it, whatever their options; a finished candidate's slot
 * goes back to the pool at once.
 */
export async function answer(model: EngineModel, question: string | ShortFormQuestion, options: ShortFormOptions | ShortFormPlan = {},
    control: RunControl = {}): Promise<ShortFormAnswer> {
    const plan = planShortForm(options);
    const q = planQuestionItem(question, 0, plan);
    const job = prepare(model, q, plan);
    return answerPrepared(model, q, job, plan, control);
}

/**
 * Many questions: "submit all, collect all". They run concurrently as far as the slots allow and
 * share decode steps; the answers are those of asking each alone.
 */
export async function answerBatch(model: EngineModel, questions: readonly (string | ShortFormQuestion)[],
    options: ShortFormOptions | ShortFormPlan = {}, control: RunControl = {}): Promise<ShortFormAnswer[]> {
    const plan = planShortForm(options);
    if (!Array.isArray(questions)) throw invalidParameterError("questions", "an array of questions", questions);
    const planned = questions.map((q, i) => planQuestionItem(q, i, plan, `questions[${i}]`));
    const jobs = planned.map((q) => prepare(model, q, plan));
    return Promise.all(planned.map((q, i) => answerPrepared(model, q, jobs[i], plan, control)));
}

async function answerPrepared(model: EngineModel, q: PlannedQuestion, job: Job, plan: ShortFormPlan, control: RunControl): Promise<ShortFormAnswer> {
    const ctx = model.context;
    if (q.passages != null || plan.passages != null) {
        job.passages = [...(q.passages ?? plan.passages ?? [])].slice(0, plan.ndocs);
    } else if (plan.retriever != null && (plan.mode !== "never" || plan.bothBranches)) {
        job.passages = [...await plan.retriever(q.question, plan.ndocs)].slice(0, plan.ndocs);
    }
    const both = plan.bothBranches;
    const width = plan.mode === "never" && !both ? 1 : Math.max(1, job.passages.length);
    // Both branches: one slot more, for the candidate after [No Retrieval].
    const slots = both && job.passages.length > 0 ? width + 1 : width;
    requireSlots(plan, slots, ctx.sequences, job.id);
    const lease = await SlotLease.acquire(ctx, slots, control.signal, job.prompt);
    control.onStart?.();
    try {
        // 1. The prompt; its first generated position decides retrieval. The passages are
        //    prefetched meanwhile (forks of the prompt, then each passage, ordered after it by the
        //    engine), so a retrieving question goes from prompt to passages to generation in
        //    consecutive steps without waiting for JavaScript; a question that turns out not to
        //    retrieve drops them (its root slot is trimmed back to the prompt).
        const [root, ...others] = lease.take(width);
        const spare = slots > width ? lease.take(1)[0] : undefined;
        // The root may still hold the start of this prompt (an earlier question's, kept at its
        // release: the template, a task instruction): only the rest is decoded.
        job.cachedPromptTokens = ctx.reusePrefix(root, job.prompt);
        const prefetched = (plan.prefetchPassages || both) && (plan.mode !== "never" || both) && job.passages.length > 0
            ? fitPassages(model, job, plan, both) : undefined;
        // With a unified KV cache the prompt is decoded once into all the question's slots and
        // the passages join the same step; otherwise the prompt is forked after it is decoded.
        const shared = prefetched != null && others.length > 0 && ctx.info.unifiedKv;
        // A shared prefill needs every slot at the same length: the reused start is forked in first.
        if (shared && job.cachedPromptTokens > 0) for (const seq of others) void ctx.fork(root, seq);
        const promptRows = ctx.prefill(root, job.prompt.subarray(job.cachedPromptTokens), shared ? {shareWith: others} : {});
        // Both branches: the prompt forked into the spare slot before any passage, [No Retrieval] after it
        // (a fork gives the logits of prefilling the prompt there, so this is the candidate the root would generate).
        const unretrieved = spare != null ? noRetrievalCandidate(model, job, plan, root, spare, lease) : undefined;
        if (prefetched != null) submitPassages(ctx, root, [root, ...others], prefetched.tokens, shared);
        const rows = await promptRows;
        let decision = decide(rows.reflection, plan);
        const retrievalLogprobs: [number, number] = [rows.reflection[R.retrieval], rows.reflection[R.noRetrieval]];
        if (decision.decision && job.passages.length === 0) {
            job.warnings.push("retrieval was decided but no passages were given: answered without retrieval");
            decision = {...decision, decision: false};
        }
        control.onEvent?.({type: "retrieval", retrieve: decision});

        // 2. Without retrieval: one candidate after [No Retrieval]; the other slots go back now.
        //    With retrieval: one candidate per passage slot, all generated in the same steps.
        const retrieved = decision.decision;
        // Both branches: the passage candidates are generated whatever the decision (the [No Retrieval] one is under way in the spare slot).
        const generateRetrieval = retrieved || (both && job.passages.length > 0);
        const seqs = generateRetrieval ? [root, ...others] : [root];
        let passageTokens: Int32Array[] = [];
        if (generateRetrieval) {
            const fitted = prefetched ?? fitPassages(model, job, plan, true)!;
            if (prefetched == null) submitPassages(ctx, root, seqs, fitted.tokens, false);
            passageTokens = fitted.tokens;
            if (retrieved) job.warnings.push(...fitted.warnings);
        } else {
            if (prefetched != null) void ctx.trim(root, job.prompt.length);
            void lease.give(...others);
            void ctx.prefill(root, Int32Array.of(model.reflection.id("[No Retrieval]")));
        }
        const candidates: CandidateResult[] = new Array(seqs.length);
        const segments: NativeSegment[] = new Array(seqs.length);
        await Promise.all(seqs.map(async (seq, i) => {
            const generated = await ctx.generateOne(seq, plan.maxNewTokens);
            // The slot is not needed once its candidate is generated (the root only after its forks
            // ran); the root keeps the prompt for a later question that starts the same way.
            void (seq === root ? lease.giveKeeping(root, job.prompt) : lease.give(seq));
            const {candidate, segment} = scoredCandidate(model, job, plan, generated, generateRetrieval ? job.passages[i] : null);
            segments[i] = segment;
            candidates[i] = candidate;
            // Both branches: only the decided branch's candidates are events (the others are for the trace).
            if (generateRetrieval === retrieved) {
                control.onEvent?.({type: "candidate", index: i, ...(retrieved ? {passage: job.passages[i]} : {}), text: candidate.text,
                    answer: candidate.answer, critique: critiqueOf(candidate), stopReason: segment.stopReason});
            }
        }));
        if (unretrieved == null) return assemble(model, job, decision, candidates, segments, passageTokens, plan);
        const other = await unretrieved;
        if (!retrieved) {
            control.onEvent?.({type: "candidate", index: 0, text: other.candidate.text, answer: other.candidate.answer, critique: critiqueOf(other.candidate),
                stopReason: other.segment.stopReason});
        }
        const branches = {retrieval: {candidates, segments}, noRetrieval: other, retrievalLogprobs};
        return retrieved
            ? assemble(model, job, decision, candidates, segments, passageTokens, plan, branches)
            : assemble(model, job, decision, [other.candidate], [other.segment], [], plan, branches);
    } finally {
        await lease.close();
    }
}

/** A generated candidate scored with the plan's weights and post-processed. */
/** A generated candidate cut at the plan's first stop string (see stops.ts), scored and post-processed; the segment as kept. */
function scoredCandidate(model: EngineModel, job: Job, plan: ShortFormPlan, generated: NativeSegment,
    passage: Passage | null): {candidate: CandidateResult, segment: NativeSegment} {
    const cut = cutAtStop(generated, plan.stop, (tokens) => model.detokenize(tokens));
    const segment: NativeSegment = cut != null ? {...cut.segment, stopReason: "stop"} : generated;
    const [critique] = model.scorer.score([segment], plan.weights);
    const text = cut?.text ?? model.detokenize(segment.tokens);
    return {candidate: {passage, text, answer: postProcessAnswer(text, {task: job.task, profile: plan.profile}), ...critique,
        tokens: segment.tokens.length, stopReason: segment.stopReason}, segment};
}

function critiqueOf(c: CritiqueScore): CritiqueScore {
    return {score: c.score, relevance: c.relevance, support: c.support, utility: c.utility, seq: c.seq};
}

/** Both branches: the candidate after [No Retrieval], generated in the spare slot from a fork of the prompt. */
async function noRetrievalCandidate(model: EngineModel, job: Job, plan: ShortFormPlan, root: number, spare: number,
    lease: SlotLease): Promise<{candidate: CandidateResult, segment: NativeSegment}> {
    const ctx = model.context;
    void ctx.fork(root, spare);
    void ctx.prefill(spare, Int32Array.of(model.reflection.id("[No Retrieval]")));
    const generated = await ctx.generateOne(spare, plan.maxNewTokens);
    void lease.give(spare);
    return scoredCandidate(model, job, plan, generated, null);
}

/**
 * Every passage's tokens, fitted to the slot; undefined (unless `required`) when one cannot fit
 * at all, which then fails the question only if it retrieves.
 */
function fitPassages(model: EngineModel, job: Job, plan: ShortFormPlan, required = false): {tokens: Int32Array[], warnings: string[]} | undefined {
    const warnings: string[] = [];
    try {
        return {tokens: job.passages.map((p, j) => fitPassage(model, job, p, j, plan, warnings)), warnings};
    } catch (error) {
        if (required) throw error;
        return undefined;
    }
}

/**
 * Appends one passage per slot after the prompt. The passages' common leading tokens
 * (`[Retrieval]<paragraph>`, a shared title) are decoded once: into every slot together when the
 * prompt already is (`shared`, a unified KV cache), else into the root before it is forked. Then
 * each slot's own rest. Ordered per slot by the engine.
 */
function submitPassages(ctx: EngineModel["context"], root: number, seqs: readonly number[], tokens: readonly Int32Array[], shared: boolean): void {
    const others = seqs.filter((seq) => seq !== root);
    const common = sharedPrefixLength(tokens);
    if (common > 0) void ctx.prefill(root, tokens[0].subarray(0, common), shared ? {shareWith: others} : {});
    if (!shared) for (const seq of others) void ctx.fork(root, seq);
    seqs.forEach((seq, i) => void ctx.prefill(seq, tokens[i].subarray(common)));
}

/** The passage tokens for one candidate, cut to fit the slot: prompt + passage + budget must fit (see `fitPassage`). */
function fitPassage(model: EngineModel, job: Job, passage: Passage, index: number, plan: ShortFormPlan, warnings: string[]): Int32Array {
    const perSequence = model.context.info.contextPerSequence;
    const slotRoom = perSequence - job.prompt.length - plan.maxNewTokens;
    const room = Math.min(slotRoom, plan.maxPassageTokens ?? slotRoom);
    const fitted = fitPassageTokens(model, passage, room);
    if (fitted == null) {
        throw new SelfRagError(`question ${job.id}: passage ${index} (${passage.id ?? passage.title}) cannot fit even when empty: ` +
            (room < slotRoom ? `${plan.surface.name("maxPassageTokens")} ${room} is less than its title and markup`
                : `the prompt (${job.prompt.length} tokens) and ${plan.surface.name("maxNewTokens")} (${plan.maxNewTokens}) leave ${room} of ${perSequence}`),
        "CONTEXT_OVERFLOW");
    }
    if (fitted.truncatedFrom != null) {
        warnings.push(room < slotRoom
            ? `passage ${index} (${passage.id ?? passage.title}) cut from ${fitted.truncatedFrom} to ${fitted.tokens.length} tokens ` +
                `(${plan.surface.name("maxPassageTokens")} ${plan.maxPassageTokens})`
            : truncationWarning(index, passage, fitted.truncatedFrom, fitted.tokens.length, perSequence));
    }
    return fitted.tokens;
}

/**
 * The answer from scored candidates: the best score (ties: the earlier candidate), or with
 * retrieval on a closed-set task the vote over post-processed answers. The default profile answers
 * with the post-processed text; the reference profile, as the script, answers an open task that
 * retrieved with the best candidate's raw text (reflection tokens and `</s>` kept).
 */
export function selectAnswer(candidates: readonly {text: string, answer: string, score: number}[],
    options: {retrieved: boolean, closed: boolean, profile?: Profile | ProfileStrategy}): {answer: string, best: number, votes?: Record<string, number>} {
    let best = 0;
    candidates.forEach((c, i) => {
        if (c.score > candidates[best].score) best = i;
    });
    const profile = profileStrategy(options.profile);
    if (options.retrieved && options.closed) {
        const vote = closedSetVote(candidates, {profile});
        best = candidates.reduce((b, c, i) => (profile.voteKey(c.answer) === vote.answer && (b < 0 || c.score > candidates[b].score) ? i : b), -1);
        return {answer: vote.answer, best, votes: Object.fromEntries(vote.totals)};
    }
    return {answer: profile.rawRetrievedAnswer && options.retrieved ? candidates[best].text : candidates[best].answer, best};
}

/** Both branches of a question, for its trace. */
interface BothBranches {
    retrieval: {candidates: CandidateResult[], segments: NativeSegment[]};
    noRetrieval: {candidate: CandidateResult, segment: NativeSegment};
    /** log P([Retrieval]), log P([No Retrieval]) at the decision. */
    retrievalLogprobs: [number, number];
}

function assemble(model: EngineModel, job: Job, decision: RetrievalDecision, candidates: CandidateResult[], segments: NativeSegment[],
    passageTokens: Int32Array[], plan: ShortFormPlan, both?: BothBranches): ShortFormAnswer {
    const retrieved = decision.decision;
    const closed = plan.closedSet ?? plan.profile.closedSetTasks.has(job.task);
    const {answer, best, votes} = selectAnswer(candidates, {retrieved, closed, profile: plan.profile});
    const result: ShortFormAnswer = {
        id: job.id, answer, retrieve: decision, candidates, best, ...(votes != null ? {votes} : {}), warnings: job.warnings,
        stats: {
            promptTokens: job.prompt.length,
            cachedPromptTokens: job.cachedPromptTokens,
            passageTokens: passageTokens.reduce((n, t) => n + t.length, 0),
            generatedTokens: segments.reduce((n, s) => n + s.tokens.length, 0)
        }
    };
    if (plan.traces && both != null) {
        // Both branches: `candidates` are the retrieval branch's (one per passage) whatever the decision.
        const critiqued = (c: CandidateResult, s: NativeSegment, passage?: Passage) => ({...traceCandidate(s, c.text, passage),
            critique: {relevance: c.relevance, support: c.support, utility: c.utility, seq: c.seq}});
        result.trace = {
            id: job.id,
            reflection_ids: Array.from(model.reflection.ids),
            candidates: both.retrieval.segments.map((s, i) => critiqued(both.retrieval.candidates[i], s, job.passages[i])),
            no_retrieval: critiqued(both.noRetrieval.candidate, both.noRetrieval.segment),
            retrieval_logprobs: both.retrievalLogprobs,
            retrieve: {...decision},
            generated_tokens: {retrieval: both.retrieval.segments.reduce((n, s) => n + s.tokens.length, 0), no_retrieval: both.noRetrieval.segment.tokens.length}
        };
    } else if (plan.traces) {
        result.trace = {
            id: job.id,
            reflection_ids: Array.from(model.reflection.ids),
            candidates: segments.map((s, i) => traceCandidate(s, candidates[i].text, retrieved ? job.passages[i] : undefined))
        };
    }
    return result;
}
