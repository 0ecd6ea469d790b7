// `selfrag tune`: the retrieval threshold and the critique weights fitted to one's own questions
// offline, from one recorded run. `selfrag eval --save-traces FILE` answers both branches of every
// question (the candidate after [No Retrieval] and one per passage) and records, per question,
// what a replay needs: log P([Retrieval]) and log P([No Retrieval]) at the decision, every
// candidate's text and critique terms (with its tokens and reflection log-probs), the golds and the
// settings. Any threshold and weights are then replayed without the model, exactly as a run
// decides: the question retrieves iff its ratio passes the threshold (and it has passages), and the
// answer is `selectAnswer`'s over the candidates scored with those weights (the vote on closed-set
// tasks).
//
// Why replay equals a fresh run, and where it cannot: the decision and the winner are functions of
// the recorded numbers, computed here with the run's own formulas and in the run's order of
// operations. A fresh run decodes the same tokens, but its log-probs can differ in the last digits
// when its batches are composed differently (the project's tolerance is 1e-4). So every setting
// counts its near-ties: questions whose ratio lies within the tolerance of the threshold
// (`nearTies.decisions`) and questions whose winning answer beats a different answer by less than
// the tolerance (`nearTies.answers`); a fresh run may decide those either way, every other question
// it decides as the replay does. The thresholds tried are placed mid-way between consecutive
// recorded ratios (not on them), so only ratios closer than twice the tolerance make a
// threshold near-tie, and `best` is chosen among the settings without near-ties when there are any.
import {SelfRagError, invalidParameterError, refuseUnknownKeys, requireNumberInRange} from "../errors.js";
import {optionFlags, planOptions, planShortForm, type ShortFormPlan} from "../selfrag/plan.js";
import {postProcessAnswer} from "../selfrag/answers.js";
import type {Task} from "../selfrag/prompts.js";
import type {RetrieveRatio} from "../selfrag/RetrievalDecision.js";
import {retrievalProbability} from "../selfrag/scoring.js";
import {resolveWeights} from "../selfrag/SegmentScorer.js";
import {selectAnswer} from "../selfrag/ShortForm.js";
import type {TraceCandidate, TraceRecord} from "../selfrag/traces.js";
import {scoreRecord, type EvalRecord} from "./Evaluation.js";
import type {MetricName} from "./metrics.js";

/** The project's tolerance between scores of one candidate in different batch compositions. */
export const TUNE_TOLERANCE = 1e-4;

/** Metrics tune replays (str_em needs long-form ASQA records, which cannot be replayed). */
export const TUNE_METRICS: readonly MetricName[] = ["match", "em", "f1", "accuracy"];

/** Plan options a run's traces were recorded with that only a new run can change: what refusing them says. */
const UNREPLAYABLE: Readonly<Record<string, string>> = {
    profile: "the prompts and post-processing", ndocs: "the passages, so the candidates", maxNewTokens: "the candidates' token budget",
    task: "the prompts", choices: "the prompts", closedSet: "how answers are chosen", maxPassageTokens: "the passages as the model read them",
    mode: "the decision rule (tune replays the adaptive threshold: 0 retrieves whatever has a ratio above 0, 1 never retrieves)",
    prefetchPassages: "nothing tune measures", passages: "the passages", retriever: "the passages",
    retrieveRatio: "the ratio the threshold applies to", stop: "where the candidates end",
    "weights.useSupport": "which critique terms count (here --w-sup values count the support term)",
    "weights.useUtility": "which critique terms count (here --w-use values count the utility term)"
};

/** One question as `selfrag eval --save-traces` writes it: a trace with both branches answered, its golds and settings. */
export interface ReplayTrace extends TraceRecord {
    form: "short";
    question: string;
    task: Task;
    golds?: string[];
    choices?: string[];
    /** The run's settings as plan options (`planOptions`, without passages): profile, ndocs, weights ... */
    options: Record<string, unknown>;
    /** The run's answer (the decided branch's), for reading. */
    prediction?: string;
}

/** A trace line of `selfrag eval --save-traces` from an answered question's trace. */
export function replayTrace(trace: TraceRecord, item: {question: string, golds?: string[], choices?: string[]}, plan: ShortFormPlan, task: Task,
    prediction: string): ReplayTrace {
    const {passages: _p, traces: _t, bothBranches: _b, ...options} = planOptions(plan);
    const {id, ...rest} = trace;
    return {id, form: "short", question: item.question, task, ...(item.golds != null ? {golds: item.golds} : {}),
        ...(item.choices != null ? {choices: item.choices} : {}), options, prediction, ...rest};
}

/** The settings to replay: every combination of the lists. */
export interface TuneGrid {
    /** match (default) | em | f1 | accuracy. */
    metric?: MetricName;
    /** Thresholds, or "all" (default): one per distinct retrieval set, mid-way between consecutive recorded ratios, with 0 and 1. */
    thresholds?: readonly number[] | "all";
    /** Weight lists (default: the run's weight). A support or utility list also counts that term (the reference profile's use flags). */
    relevance?: readonly number[];
    support?: readonly number[];
    utility?: readonly number[];
    useSequenceScore?: readonly boolean[];
    /** Also the best setting that retrieves for at most this fraction of the questions. */
    maxRetrievalRate?: number;
    /** Near-tie tolerance (default TUNE_TOLERANCE). */
    tolerance?: number;
}

/** The weights a setting replays, as plan options (`weights`). */
export interface TuneWeights {
    relevance: number;
    support: number;
    utility: number;
    useSequenceScore: boolean;
    useSupport?: boolean;
    useUtility?: boolean;
}

export interface TuneSetting {
    threshold: number;
    weights: TuneWeights;
    /** Mean metric over the questions with golds (null: none has golds). */
    metric: number | null;
    retrievalRate: number;
    /** Tokens a run with this setting generates (the decided branch's candidates). */
    generatedTokens: number;
    /** Questions a fresh run may decide otherwise: ratio within the tolerance of the threshold; winner within it of another answer. */
    nearTies: {decisions: number, answers: number};
}

/** A setting with the flags that reproduce it with `selfrag eval`. */
export type ReproducibleSetting = TuneSetting & {flags: string, args: string[]};

export interface TuneResult {
    metric: MetricName;
    questions: number;
    /** Questions with golds (the metric's denominator). */
    scored: number;
    retrieveRatio: RetrieveRatio;
    tolerance: number;
    /** Every combination, thresholds fastest, in grid order. */
    settings: TuneSetting[];
    /** The Pareto front of metric (higher) against retrieval rate (lower), by retrieval rate. */
    front: TuneSetting[];
    /** Best metric (then lower retrieval rate, fewer tokens), among settings without near-ties when there are any. */
    best: ReproducibleSetting;
    /** The same under `maxRetrievalRate` (null: no setting stays under it; undefined: no budget given). */
    bestUnderBudget?: ReproducibleSetting | null;
}

/** One question prepared for replay: everything a setting's outcome depends on, as numbers. */
interface Prepared {
    trace: ReplayTrace;
    /** The decision's ratio under the tuned retrieve ratio. */
    p: number;
    /** Passages were given (a question without them never retrieves). */
    canRetrieve: boolean;
    closed: boolean;
    /** Retrieval candidates' terms. */
    expSeq: Float64Array;
    rel: Float64Array;
    sup: Float64Array;
    use: Float64Array;
    /** Per candidate: index of its prediction (open) or vote key (closed) in `outcomes`. */
    outcomeOf: Int32Array;
    /** Distinct predictions of the retrieval branch, and their metric values (NaN: unscored). */
    outcomes: string[];
    outcomeMetric: Float64Array;
    noRetrieval: {prediction: string, metric: number, tokens: number};
    retrievalTokens: number;
}

/**
 * Replays every combination of a grid over recorded traces: per setting the metric, the retrieval
 * rate and the generated tokens; the Pareto front; the best setting overall and under a budget,
 * with the `selfrag eval` flags that reproduce it.
 *
 * ```ts
 * const traces = fs.readFileSync("traces.jsonl", "utf8").trim().split("\n").map((l) => JSON.parse(l));
 * const {best, front} = tune(traces, {relevance: [0.5, 1, 2], maxRetrievalRate: 0.3});
 * console.log(best.flags); // "--threshold 0.41 --w-rel 2"
 * ```
 */
export function tune(traces: readonly ReplayTrace[], grid: TuneGrid = {}): TuneResult {
    const g = checkGrid(grid);
    const {base, plan} = commonSettings(traces);
    const retrieveRatio = plan.retrieveRatio;
    const prepared = traces.map((t, i) => prepare(t, i, plan, g.metric, retrieveRatio));
    const baseWeights = resolveBase(plan);
    const lists = {
        relevance: g.relevance ?? [baseWeights.relevance], support: g.support ?? [baseWeights.support],
        utility: g.utility ?? [baseWeights.utility], useSequenceScore: g.useSequenceScore ?? [baseWeights.useSequenceScore]
    };
    const thresholds = g.thresholds === "all" ? allThresholds(prepared) : [...g.thresholds];
    const total = thresholds.length * lists.relevance.length * lists.support.length * lists.utility.length * lists.useSequenceScore.length;
    if (total > 5_000_000) throw new SelfRagError(`the grid has ${total} settings; at most 5,000,000 are replayed at once: shorten a list`, "INVALID_ARGUMENT");

    // Questions that can retrieve, by ratio: a threshold's retrieving questions are a suffix.
    const order = prepared.map((_, i) => i).filter((i) => prepared[i].canRetrieve).sort((a, b) => prepared[a].p - prepared[b].p);
    const sortedP = Float64Array.from(order, (i) => prepared[i].p);
    let noRetMetric = 0;
    let noRetTokens = 0;
    let scored = 0;
    for (const q of prepared) {
        noRetTokens += q.noRetrieval.tokens;
        if (!Number.isNaN(q.noRetrieval.metric)) {
            scored++;
            noRetMetric += q.noRetrieval.metric;
        }
    }
    const n = order.length;
    const metricGain = new Float64Array(n + 1);
    const tokenGain = new Float64Array(n + 1);
    const answerTies = new Int32Array(n + 1);
    const decisionTies = thresholds.map((t) => countWithin(sortedP, t, g.tolerance));
    const cuts = thresholds.map((t) => upperBound(sortedP, t));
    const settings: TuneSetting[] = [];
    for (const useSequenceScore of lists.useSequenceScore) {
        for (const utility of lists.utility) {
            for (const support of lists.support) {
                for (const relevance of lists.relevance) {
                    const weights: TuneWeights = {relevance, support, utility, useSequenceScore,
                        ...(g.support != null ? {useSupport: true} : {}), ...(g.utility != null ? {useUtility: true} : {})};
                    const w = resolveWeights({...plan.weights, ...weights});
                    // Suffix sums over the questions by ratio: what retrieving from there on changes.
                    metricGain[n] = 0;
                    tokenGain[n] = 0;
                    answerTies[n] = 0;
                    for (let k = n - 1; k >= 0; k--) {
                        const q = prepared[order[k]];
                        const outcome = retrievalOutcome(q, w, g.tolerance);
                        const m = q.outcomeMetric[outcome.index];
                        metricGain[k] = metricGain[k + 1] + (Number.isNaN(m) ? 0 : m - q.noRetrieval.metric);
                        tokenGain[k] = tokenGain[k + 1] + q.retrievalTokens - q.noRetrieval.tokens;
                        answerTies[k] = answerTies[k + 1] + (outcome.nearTie ? 1 : 0);
                    }
                    thresholds.forEach((threshold, t) => {
                        const k = cuts[t];
                        settings.push({
                            threshold, weights, metric: scored > 0 ? (noRetMetric + metricGain[k]) / scored : null,
                            retrievalRate: prepared.length > 0 ? (n - k) / prepared.length : 0,
                            generatedTokens: noRetTokens + tokenGain[k],
                            nearTies: {decisions: decisionTies[t], answers: answerTies[k]}
                        });
                    });
                }
            }
        }
    }
    const reproducible = (s: TuneSetting): ReproducibleSetting => {
        const args = [...settingFlags(plan, base, s), ...(g.metric !== "match" ? ["--metric", g.metric] : [])];
        return {...s, args, flags: args.map(shellWord).join(" ")};
    };
    const best = pickBest(settings);
    const budget = g.maxRetrievalRate != null ? pickBest(settings.filter((s) => s.retrievalRate <= g.maxRetrievalRate!)) : undefined;
    return {
        metric: g.metric, questions: prepared.length, scored, retrieveRatio, tolerance: g.tolerance, settings, front: paretoFront(settings),
        best: reproducible(best!), ...(g.maxRetrievalRate != null ? {bestUnderBudget: budget != null ? reproducible(budget) : null} : {})
    };
}

/** One question's replayed outcome under a setting, as the output record of a fresh `selfrag eval` has it. */
export interface ReplayedQuestion {
    id: string;
    prediction: string;
    retrieve: {decision: boolean, p: number};
    /** The metric (absent without golds). */
    score?: number;
    generatedTokens: number;
}

/**
 * One setting replayed question by question with the run's own functions (`decide`'s ratio,
 * `selectAnswer`, `scoreRecord`), in input order: what a fresh `selfrag eval` with the setting's
 * flags writes, and its summary.
 */
export function replay(traces: readonly ReplayTrace[], setting: Pick<TuneSetting, "threshold" | "weights">, metric: MetricName = "match"):
    {records: ReplayedQuestion[], mean: number | null, retrievalRate: number, generatedTokens: number} {
    const {plan} = commonSettings(traces);
    const profile = plan.profile;
    const w = resolveWeights({...plan.weights, ...setting.weights});
    const records = traces.map((t, i) => {
        const q = prepare(t, i, plan, metric, plan.retrieveRatio);
        const decision = q.canRetrieve && q.p > setting.threshold;
        let prediction = q.noRetrieval.prediction;
        if (decision) {
            const candidates = t.candidates.map((c, j) => ({text: c.text ?? "", answer: postProcessAnswer(c.text ?? "", {task: t.task, profile}),
                score: weighted(q, j, w)}));
            prediction = selectAnswer(candidates, {retrieved: true, closed: q.closed, profile}).answer;
        }
        const record = scoreRecord({id: t.id, question: t.question, prediction} as EvalRecord, {golds: t.golds, record: {}}, [metric], t.task, profile);
        return {id: t.id, prediction, retrieve: {decision, p: q.p}, ...(record.score != null ? {score: record.score} : {}),
            generatedTokens: decision ? q.retrievalTokens : q.noRetrieval.tokens};
    });
    const scored = records.filter((r) => r.score != null);
    return {
        records, mean: scored.length > 0 ? scored.reduce((a, r) => a + r.score!, 0) / scored.length : null,
        retrievalRate: records.length > 0 ? records.filter((r) => r.retrieve.decision).length / records.length : 0,
        generatedTokens: records.reduce((a, r) => a + r.generatedTokens, 0)
    };
}

// ---------------------------------------------------------------------------------------------

function checkGrid(grid: TuneGrid): Required<Pick<TuneGrid, "metric" | "thresholds" | "tolerance">> & TuneGrid {
    if (grid == null || typeof grid !== "object") throw invalidParameterError("grid", "an object of setting lists", grid);
    for (const key of Object.keys(grid)) {
        if (Object.hasOwn(UNREPLAYABLE, key)) throw unreplayable(key, key);
    }
    refuseUnknownKeys(grid, ["metric", "thresholds", "relevance", "support", "utility", "useSequenceScore", "maxRetrievalRate", "tolerance"], "grid key");
    const metric = grid.metric ?? "match";
    if (metric === "str_em") {
        throw new SelfRagError("metric str_em scores long-form ASQA answers, which tune cannot replay (a tree search is not recorded)", "INVALID_ARGUMENT",
            {option: "metric"});
    }
    if (!TUNE_METRICS.includes(metric)) throw invalidParameterError("metric", TUNE_METRICS.join(" | "), metric);
    const numbers = (name: string, list: unknown, min: number, max: number): number[] | undefined => {
        if (list === undefined) return undefined;
        if (!Array.isArray(list) || list.length === 0) throw invalidParameterError(name, "a non-empty list of numbers", list);
        return list.map((v, i) => requireNumberInRange(`${name}[${i}]`, v, min, max));
    };
    const thresholds = grid.thresholds === undefined || grid.thresholds === "all" ? "all" as const : numbers("thresholds", grid.thresholds, 0, 1)!;
    if (grid.useSequenceScore !== undefined && (!Array.isArray(grid.useSequenceScore) || grid.useSequenceScore.length === 0 ||
        grid.useSequenceScore.some((v) => typeof v !== "boolean"))) {
        throw invalidParameterError("useSequenceScore", "a non-empty list of booleans", grid.useSequenceScore);
    }
    return {
        ...grid, metric, thresholds,
        relevance: numbers("relevance", grid.relevance, -1e6, 1e6), support: numbers("support", grid.support, -1e6, 1e6),
        utility: numbers("utility", grid.utility, -1e6, 1e6),
        maxRetrievalRate: grid.maxRetrievalRate === undefined ? undefined : requireNumberInRange("maxRetrievalRate", grid.maxRetrievalRate, 0, 1),
        tolerance: grid.tolerance === undefined ? TUNE_TOLERANCE : requireNumberInRange("tolerance", grid.tolerance, 0, 1)
    };
}

function unreplayable(key: string, name: string): SelfRagError {
    return new SelfRagError(`${name} cannot be replayed: it changes ${UNREPLAYABLE[key]}, which the traces recorded for one value only; ` +
        `record traces with it (\`selfrag eval ... --save-traces FILE\`) and tune those`, "INVALID_ARGUMENT", {option: name});
}

/** The CLI refusal of a question flag tune cannot replay (by the flag's name). */
export function unreplayableFlag(key: string, flag: string): SelfRagError {
    return Object.hasOwn(UNREPLAYABLE, key) ? unreplayable(key, flag)
        : new SelfRagError(`${flag} cannot be replayed: the traces were recorded with one value of it; record traces with it ` +
            "(`selfrag eval ... --save-traces FILE`) and tune those", "INVALID_ARGUMENT", {option: flag});
}

/** The settings every trace shares (what a fresh run's flags must give), as one plan; mixed runs are refused. */
function commonSettings(traces: readonly ReplayTrace[]): {base: Record<string, unknown>, plan: ShortFormPlan} {
    if (!Array.isArray(traces) || traces.length === 0) throw invalidParameterError("traces", "a non-empty list of traces", traces);
    traces.forEach((t, i) => checkTrace(t, i));
    const strip = (o: Record<string, unknown>) => {
        const {threshold: _t, weights: _w, mode: _m, ...rest} = o;
        return JSON.stringify(rest);
    };
    const first = strip(traces[0].options);
    const firstWeights = JSON.stringify(traces[0].options.weights ?? {});
    for (const [i, t] of traces.entries()) {
        if (strip(t.options) !== first || JSON.stringify(t.options.weights ?? {}) !== firstWeights) {
            throw new SelfRagError(`trace ${i} (question ${t.id}) was recorded with other settings than trace 0 ` +
                `(${strip(t.options)} vs ${first}): tune replays the traces of one run`, "INVALID_TRACE");
        }
    }
    // Settings as a fresh run would plan them: adaptive, the run's options otherwise.
    const {mode: _m, ...base} = traces[0].options;
    return {base, plan: planShortForm(base)};
}

function checkTrace(t: ReplayTrace, i: number): void {
    const where = `trace ${i}${t != null && typeof t === "object" && t.id != null ? ` (question ${t.id})` : ""}`;
    const fail = (message: string): never => {
        throw new SelfRagError(`${where}: ${message}`, "INVALID_TRACE");
    };
    if (t == null || typeof t !== "object") fail("expected a trace object");
    if ((t as {form?: unknown}).form === "long") {
        fail("a long-form trace: a long-form answer is a tree search whose children depend on each decision, which cannot be replayed offline; " +
            "tune replays short-form traces (`selfrag eval --save-traces` without --long)");
    }
    if (t.no_retrieval == null || t.retrieval_logprobs == null) {
        fail("recorded without both branches (a `selfrag ask --save-traces` or server trace holds the decided branch only): replaying another " +
            "threshold needs the other branch; record with `selfrag eval ... --save-traces FILE`");
    }
    if (t.form !== "short" || t.options == null || typeof t.task !== "string") fail("not a `selfrag eval --save-traces` line (form, task and options are missing)");
    for (const [j, c] of [...t.candidates.map((c, j) => [String(j), c] as const), ["no_retrieval", t.no_retrieval!] as const]) {
        if (c.critique == null || typeof c.text !== "string") fail(`candidate ${j} has no critique terms or text: replaying weights needs them`);
    }
}

function logprob(v: number | null): number {
    return v == null ? -Infinity : v;
}

function prepare(t: ReplayTrace, _index: number, plan: ShortFormPlan, metric: MetricName, ratio: RetrieveRatio): Prepared {
    const profile = plan.profile;
    const [logRet, logNo] = [logprob(t.retrieval_logprobs![0]), logprob(t.retrieval_logprobs![1])];
    // `decide`'s ratio, with its arithmetic.
    const p = ratio === "probability" ? retrievalProbability(logRet, logNo) : logRet / (logRet + logNo);
    const closed = plan.closedSet ?? profile.closedSetTasks.has(t.task);
    const metricOf = (prediction: string) => {
        const r = scoreRecord({id: t.id, question: t.question, prediction} as EvalRecord, {golds: t.golds, record: {}}, [metric], t.task, profile);
        return r.score ?? Number.NaN;
    };
    const count = t.candidates.length;
    const outcomes: string[] = [];
    const outcomeOf = new Int32Array(count);
    t.candidates.forEach((c, j) => {
        const answer = postProcessAnswer(c.text!, {task: t.task, profile});
        // What selectAnswer answers when this candidate wins (open) or its key wins the vote (closed).
        const key = closed ? profile.voteKey(answer) : profile.rawRetrievedAnswer ? c.text! : answer;
        let k = outcomes.indexOf(key);
        if (k < 0) k = outcomes.push(key) - 1;
        outcomeOf[j] = k;
    });
    const term = (pick: (c: TraceCandidate) => number) => Float64Array.from(t.candidates, pick);
    const noPrediction = postProcessAnswer(t.no_retrieval!.text!, {task: t.task, profile});
    return {
        trace: t, p, canRetrieve: count > 0, closed,
        expSeq: term((c) => Math.exp(logprob(c.critique!.seq))), rel: term((c) => c.critique!.relevance),
        sup: term((c) => c.critique!.support), use: term((c) => c.critique!.utility),
        outcomeOf, outcomes, outcomeMetric: Float64Array.from(outcomes, metricOf),
        noRetrieval: {prediction: noPrediction, metric: metricOf(noPrediction), tokens: t.no_retrieval!.tokens.length},
        retrievalTokens: t.candidates.reduce((a, c) => a + c.tokens.length, 0)
    };
}

type Resolved = ReturnType<typeof resolveWeights>;

/** A candidate's score with the scorer's formula and order of operations (critique_math.h). */
function weighted(q: Prepared, j: number, w: Resolved): number {
    return (w.useSequenceScore ? q.expSeq[j] : 0) + w.relevance * q.rel[j] + w.support * q.sup[j] + w.utility * q.use[j];
}

const totals = new Float64Array(64);

/** The retrieval branch's outcome under weights (`selectAnswer`'s rule) and whether a different answer is within the tolerance. */
function retrievalOutcome(q: Prepared, w: Resolved, tolerance: number): {index: number, nearTie: boolean} {
    const count = q.rel.length;
    if (!q.closed) {
        let best = 0;
        let bestScore = weighted(q, 0, w);
        const scores = count <= 64 ? totals : new Float64Array(count);
        scores[0] = bestScore;
        for (let j = 1; j < count; j++) {
            const s = weighted(q, j, w);
            scores[j] = s;
            if (s > bestScore) {
                best = j;
                bestScore = s;
            }
        }
        const winner = q.outcomeOf[best];
        let nearTie = false;
        for (let j = 0; j < count && !nearTie; j++) nearTie = q.outcomeOf[j] !== winner && bestScore - scores[j] < tolerance;
        return {index: winner, nearTie};
    }
    // The vote: totals per key in first-seen order, the first largest wins (closedSetVote).
    const keys = q.outcomes.length;
    const sums = keys <= 64 ? totals : new Float64Array(keys);
    sums.fill(0, 0, keys);
    for (let j = 0; j < count; j++) sums[q.outcomeOf[j]] += weighted(q, j, w);
    let best = 0;
    for (let k = 1; k < keys; k++) if (sums[k] > sums[best]) best = k;
    let nearTie = false;
    for (let k = 0; k < keys && !nearTie; k++) nearTie = k !== best && sums[best] - sums[k] < tolerance;
    return {index: best, nearTie};
}

function resolveBase(plan: ShortFormPlan): TuneWeights {
    const w = resolveWeights(plan.weights);
    return {relevance: plan.weights.relevance ?? w.relevance, support: plan.weights.support ?? 1, utility: plan.weights.utility ?? 0.5,
        useSequenceScore: w.useSequenceScore};
}

/**
 * One threshold per distinct set of retrieving questions: 0, one mid-way between each two
 * consecutive distinct ratios (the shortest decimal near the middle), and 1.
 */
function allThresholds(prepared: readonly Prepared[]): number[] {
    const ps = [...new Set(prepared.filter((q) => q.canRetrieve).map((q) => q.p))].sort((a, b) => a - b);
    const out = [0];
    for (let i = 0; i + 1 < ps.length; i++) out.push(between(ps[i], ps[i + 1]));
    out.push(1);
    return [...new Set(out)].sort((a, b) => a - b);
}

/** A short decimal strictly inside (lo, hi), at least 40% of the gap from either end (the exact middle when none is). */
export function between(lo: number, hi: number): number {
    const gap = hi - lo;
    const mid = lo + gap / 2;
    for (let digits = 1; digits <= 17; digits++) {
        const r = Number(mid.toPrecision(digits));
        if (r - lo >= 0.4 * gap && hi - r >= 0.4 * gap) return r;
    }
    return mid;
}

/** Index of the first value > t in a sorted array. */
function upperBound(sorted: Float64Array, t: number): number {
    let lo = 0;
    let hi = sorted.length;
    while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (sorted[mid] > t) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

/** Values within the tolerance of t: a fresh run's ratio may fall on the other side. */
function countWithin(sorted: Float64Array, t: number, tolerance: number): number {
    let lo = 0;
    let hi = sorted.length;
    while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (sorted[mid] > t - tolerance) hi = mid;
        else lo = mid + 1;
    }
    let n = 0;
    for (let k = lo; k < sorted.length && sorted[k] < t + tolerance; k++) n++;
    return n;
}

function better(a: TuneSetting, b: TuneSetting): boolean {
    const ma = a.metric ?? -Infinity;
    const mb = b.metric ?? -Infinity;
    if (ma !== mb) return ma > mb;
    if (a.retrievalRate !== b.retrievalRate) return a.retrievalRate < b.retrievalRate;
    return a.generatedTokens < b.generatedTokens;
}

const ties = (s: TuneSetting) => s.nearTies.decisions + s.nearTies.answers;

/** The best setting, among those without near-ties when there are any (their replay is what a fresh run gives). */
function pickBest(settings: readonly TuneSetting[]): TuneSetting | undefined {
    const stable = settings.filter((s) => ties(s) === 0);
    let best: TuneSetting | undefined;
    for (const s of stable.length > 0 ? stable : settings) if (best == null || better(s, best)) best = s;
    return best;
}

/** Settings no other beats on both metric (higher) and retrieval rate (lower), by retrieval rate. */
function paretoFront(settings: readonly TuneSetting[]): TuneSetting[] {
    const sorted = [...settings].sort((a, b) => a.retrievalRate - b.retrievalRate || (b.metric ?? -Infinity) - (a.metric ?? -Infinity) ||
        ties(a) - ties(b) || a.generatedTokens - b.generatedTokens);
    const front: TuneSetting[] = [];
    for (const s of sorted) {
        if (front.length === 0 || (s.metric ?? -Infinity) > (front[front.length - 1].metric ?? -Infinity)) front.push(s);
    }
    return front;
}

/**
 * The `selfrag eval` flags of a setting: the run's settings and the setting's threshold and
 * weights, each option that differs from its profile's default, spelled from the plan's table.
 */
function settingFlags(plan: ShortFormPlan, base: Record<string, unknown>, s: Pick<TuneSetting, "threshold" | "weights">): string[] {
    const wanted = planOptions(planShortForm({...base, threshold: s.threshold, weights: {...(base.weights as object), ...s.weights}}));
    const defaults = planOptions(planShortForm({profile: plan.profile.name}));
    const differing: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(wanted)) {
        if (key === "traces" || key === "bothBranches") continue;
        if (key === "weights") {
            const w: Record<string, unknown> = {};
            // A use flag the profile leaves unset is on (resolveWeights): only an explicit difference is spelled.
            const d = {useSupport: true, useUtility: true, ...(defaults.weights as Record<string, unknown>)};
            for (const [k, v] of Object.entries(value as object)) if (v !== undefined && (d as Record<string, unknown>)[k] !== v) w[k] = v;
            // Tuned weights are always spelled out, so the flags read as the setting.
            for (const k of ["relevance", "support", "utility", "useSequenceScore"] as const) w[k] = (value as Record<string, unknown>)[k] ?? w[k];
            differing.weights = w;
        } else if (key === "profile" ? value !== "default" : key === "threshold" || JSON.stringify(defaults[key]) !== JSON.stringify(value)) {
            differing[key] = value;
        }
    }
    return optionFlags(differing);
}

function shellWord(word: string): string {
    return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}
