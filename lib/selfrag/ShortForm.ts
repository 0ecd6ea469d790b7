import {closedSetVote, postProcessAnswer} from "./answers.js";
import {SelfRagError, invalidParameterError, requirePositiveInteger} from "../errors.js";
import type {NativeSegment} from "../engine/types.js";
import {CLOSED_SET_TASKS, formatPassage, formatPrompt, taskInstruction, type Passage, type Task} from "./prompts.js";
import {checkRetrievalOptions, decideRetrieval, type RetrievalDecision, type RetrievalDecisionOptions} from "./RetrievalDecision.js";
import {SegmentScorer, type CritiqueScore, type CritiqueWeights} from "./SegmentScorer.js";
import type {SelfRagModel} from "../SelfRagModel.js";
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
    retriever?: (query: string, k: number) => Promise<readonly Passage[]> | readonly Passage[];
    /** Passages to use per question (default 5): one candidate each. */
    ndocs?: number;
    /** Token budget per candidate (default 100). */
    maxNewTokens?: number;
    weights?: CritiqueWeights;
    /** Task of every question that names none (default "none": the question is the instruction). */
    task?: Task;
    /** Vote over post-processed answers (default: on for fever, arc_c, arc_easy, obqa). */
    closedSet?: boolean;
    /** Record token ids, log-probs and reflection rows of every candidate (JSONL trace format). */
    traces?: boolean;
}

export interface CandidateResult extends CritiqueScore {
    passage?: Passage;
    /** Generated text with the reflection tokens. */
    text: string;
    /** Post-processed text (reflection tokens, </s> and newlines removed). */
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
    stats: {promptTokens: number, passageTokens: number, generatedTokens: number};
}

interface Job {
    index: number;
    id: string;
    task: Task;
    prompt: Int32Array;
    passages: Passage[];
    slots: number[];
    decision?: RetrievalDecision;
    passageTokens: Int32Array[];
    warnings: string[];
}

function normaliseQuestion(q: string | ShortFormQuestion, index: number): ShortFormQuestion {
    if (typeof q === "string") return {question: q, id: String(index)};
    if (q == null || typeof q.question !== "string") throw invalidParameterError(`questions[${index}].question`, "a string", q?.question);
    return q;
}

/**
 * Answers a batch of short-form questions with Self-RAG (SELF_RAG.md, "Short form"). Candidates of
 * several questions decode in the same steps: each wave takes as many questions as the context has
 * slots for, prefills their prompts in one batch, forks each prompt into one slot per passage, and
 * generates every candidate of the wave with one llama_decode per step.
 */
export async function answerBatch(model: SelfRagModel, questions: readonly (string | ShortFormQuestion)[],
    options: ShortFormOptions = {}): Promise<ShortFormAnswer[]> {
    const retrieval = checkRetrievalOptions(options);
    const ndocs = requirePositiveInteger("ndocs", options.ndocs ?? 5, 1024);
    const maxNewTokens = requirePositiveInteger("maxNewTokens", options.maxNewTokens ?? 100, 1 << 20);
    const scorer = await SegmentScorer.create(model.reflection.ids);
    const ctx = model.context;
    const perSequence = ctx.info.contextPerSequence;
    const noRetrieval = model.reflection.id("[No Retrieval]");

    const normalised = questions.map(normaliseQuestion);
    const retrieved = await Promise.all(normalised.map((q) =>
        (q.passages == null && options.passages == null && options.retriever != null && retrieval.mode !== "never"
            ? options.retriever(q.question, ndocs) : undefined)));
    const jobs: Job[] = normalised.map((q, index) => {
        const task = q.task ?? options.task ?? "none";
        const instruction = taskInstruction(task, q.question, q.choices);
        const prompt = model.tokenize(formatPrompt(instruction, q.input));
        if (prompt.length + 1 + maxNewTokens > perSequence) {
            throw new SelfRagError(`question ${q.id ?? index}: the prompt (${prompt.length} tokens) plus maxNewTokens (${maxNewTokens}) ` +
                `does not fit the context of ${perSequence} tokens per sequence`, "CONTEXT_OVERFLOW");
        }
        const passages = [...(q.passages ?? options.passages ?? retrieved[index] ?? [])].slice(0, ndocs);
        return {index, id: q.id ?? String(index), task, prompt, passages, slots: [], passageTokens: [], warnings: []};
    });
    const slotsFor = (job: Job) => (retrieval.mode === "never" ? 1 : Math.max(1, job.passages.length));
    for (const job of jobs) {
        if (slotsFor(job) > ctx.sequences) {
            throw new SelfRagError(`question ${job.id} needs ${slotsFor(job)} sequence slots (one per passage) but the model ` +
                `was loaded with sequences: ${ctx.sequences}; lower ndocs or raise sequences`, "INVALID_ARGUMENT");
        }
    }

    const results: ShortFormAnswer[] = new Array(jobs.length);
    let next = 0;
    while (next < jobs.length) {
        const wave: Job[] = [];
        let slots = 0;
        while (next < jobs.length && slots + slotsFor(jobs[next]) <= ctx.sequences) {
            slots += slotsFor(jobs[next]);
            wave.push(jobs[next++]);
        }
        const answered = await runWave(model, scorer, wave, {...options, ...retrieval, maxNewTokens, perSequence, noRetrieval, slotsFor});
        for (const answer of answered) results[answer.index] = answer.result;
    }
    return results;
}

interface WaveSettings extends ShortFormOptions {
    maxNewTokens: number;
    perSequence: number;
    noRetrieval: number;
    slotsFor: (job: Job) => number;
}

async function runWave(model: SelfRagModel, scorer: SegmentScorer, wave: Job[], settings: WaveSettings) {
    const ctx = model.context;
    for (const job of wave) job.slots = ctx.acquire(settings.slotsFor(job));
    try {
        // 1. All prompts in one batch; the first generated position decides retrieval.
        const decisionRows = await ctx.evaluate(wave.map((job) => ({seq: job.slots[0], tokens: job.prompt})));
        wave.forEach((job, i) => {
            job.decision = decideRetrieval(decisionRows.reflection.subarray(i * 15, (i + 1) * 15), settings);
            if (job.decision.decision && job.passages.length === 0) {
                job.warnings.push("retrieval was decided but no passages were given: answered without retrieval");
                job.decision = {...job.decision, decision: false};
            }
        });

        // 2. Fork each retrieving prompt into one slot per passage and append the passages; the
        //    others continue after [No Retrieval]. One batch for the whole wave.
        const appends: {seq: number, tokens: Int32Array}[] = [];
        for (const job of wave) {
            if (!job.decision!.decision) {
                appends.push({seq: job.slots[0], tokens: Int32Array.of(settings.noRetrieval)});
                continue;
            }
            for (let j = 1; j < job.passages.length; j++) await ctx.fork(job.slots[0], job.slots[j]);
            job.passageTokens = job.passages.map((p, j) => fitPassage(model, job, p, j, settings));
            job.passages.forEach((_, j) => appends.push({seq: job.slots[j], tokens: job.passageTokens[j]}));
        }
        await ctx.evaluate(appends);

        // 3. Every candidate of the wave, decoded together.
        const items = wave.flatMap((job) => (job.decision!.decision ? job.slots.slice(0, job.passages.length) : [job.slots[0]])
            .map((seq) => ({seq, maxTokens: settings.maxNewTokens})));
        const segments = await ctx.generate(items);
        const scores = scorer.score(segments, settings.weights);

        let k = 0;
        return wave.map((job) => {
            const count = job.decision!.decision ? job.passages.length : 1;
            const mine = segments.slice(k, k + count);
            const myScores = scores.slice(k, k + count);
            k += count;
            return {index: job.index, result: assemble(model, job, mine, myScores, settings)};
        });
    } finally {
        await ctx.release(...wave.flatMap((job) => job.slots));
    }
}

/**
 * The passage tokens for one candidate, cut to fit the slot: prompt + passage + budget must fit.
 * A long passage is truncated (text shortened, `</paragraph>` kept) with a warning rather than
 * failing the question: one oversized passage in a top-k list should not lose the other k - 1.
 */
function fitPassage(model: SelfRagModel, job: Job, passage: Passage, index: number, settings: WaveSettings): Int32Array {
    const room = settings.perSequence - job.prompt.length - settings.maxNewTokens;
    let tokens = model.tokenize(formatPassage(passage), {bos: false});
    if (tokens.length <= room) return tokens;
    const original = tokens.length;
    let low = 0;
    let high = passage.text.length;
    while (low < high) { // longest prefix of the text that fits
        const mid = Math.ceil((low + high) / 2);
        if (model.tokenize(formatPassage({...passage, text: passage.text.slice(0, mid)}), {bos: false}).length <= room) low = mid;
        else high = mid - 1;
    }
    tokens = model.tokenize(formatPassage({...passage, text: passage.text.slice(0, low)}), {bos: false});
    if (tokens.length > room) {
        throw new SelfRagError(`question ${job.id}: passage ${index} (${passage.id ?? passage.title}) cannot fit even when empty: ` +
            `the prompt (${job.prompt.length} tokens) and maxNewTokens (${settings.maxNewTokens}) leave ${room} of ${settings.perSequence}`,
        "CONTEXT_OVERFLOW");
    }
    job.warnings.push(`passage ${index} (${passage.id ?? passage.title}) truncated from ${original} to ${tokens.length} tokens ` +
        `to fit the context of ${settings.perSequence} tokens per sequence`);
    return tokens;
}

function assemble(model: SelfRagModel, job: Job, segments: NativeSegment[], scores: CritiqueScore[], settings: WaveSettings): ShortFormAnswer {
    const retrieved = job.decision!.decision;
    const candidates: CandidateResult[] = segments.map((s, i) => {
        const text = model.detokenize(s.tokens);
        return {
            ...(retrieved ? {passage: job.passages[i]} : {}),
            text, answer: postProcessAnswer(text, job.task), ...scores[i], tokens: s.tokens.length, stopReason: s.stopReason
        };
    });
    let best = 0;
    candidates.forEach((c, i) => {
        if (c.score > candidates[best].score) best = i;
    });
    let answer = candidates[best].answer;
    let votes: Record<string, number> | undefined;
    const closed = settings.closedSet ?? CLOSED_SET_TASKS.has(job.task);
    if (retrieved && closed) {
        const vote = closedSetVote(candidates);
        answer = vote.answer;
        votes = Object.fromEntries(vote.totals);
        best = candidates.reduce((b, c, i) => (c.answer === answer && (b < 0 || c.score > candidates[b].score) ? i : b), -1);
    }
    const result: ShortFormAnswer = {
        id: job.id, answer, retrieve: job.decision!, candidates, best, ...(votes != null ? {votes} : {}), warnings: job.warnings,
        stats: {
            promptTokens: job.prompt.length,
            passageTokens: job.passageTokens.reduce((n, t) => n + t.length, 0),
            generatedTokens: segments.reduce((n, s) => n + s.tokens.length, 0)
        }
    };
    if (settings.traces) {
        result.trace = {
            id: job.id,
            reflection_ids: Array.from(model.reflection.ids),
            candidates: segments.map((s, i) => traceCandidate(s, candidates[i].text, retrieved ? job.passages[i] : undefined))
        };
    }
    return result;
}

/** One question; see answerBatch. */
export async function answer(model: SelfRagModel, question: string | ShortFormQuestion, options: ShortFormOptions = {}): Promise<ShortFormAnswer> {
    const [result] = await answerBatch(model, [question], options);
    return result;
}
