// One plan per question: every surface (library call, CLI flags, HTTP body, OpenAI `selfrag`
// field, eval run, BullMQ job, bench row) turns its raw options into one complete, frozen plan
// here, through one function per form. Profile defaults are applied, every value is checked once
// with one helper style, unknown keys are refused by name (with the nearest known name), options
// of the other form are refused with what turns that form on, and every error names the option
// as that surface spells it (`maxNewTokens`, `--max-new-tokens`, `selfrag.maxNewTokens`). The
// flows trust a plan and never read raw options. Adding a per-question option means one entry in
// OPTIONS (it then reaches the API, the CLI flags and help, HTTP, OpenAI, eval and the worker),
// one field in the plan and its public type, and the code that uses it.
// (sharp's constructor and llama.cpp's server `params_from_json_cmpl` follow the same pattern.)
import {
    SelfRagError, invalidParameterError, refuseUnknownKeys, requireBoolean, requireInteger, requireNumberInRange, requireObject, requireOneOf,
    requireString, unknownOptionError
} from "../errors.js";
import {PROFILES, profileStrategy, weightsOver, type Profile, type ProfileStrategy} from "./profiles.js";
import {TASKS, type Passage, type Task} from "./prompts.js";
import type {RetrievalMode, RetrieveRatio} from "./RetrievalDecision.js";
import type {CritiqueWeights} from "./SegmentScorer.js";

export type Form = "short" | "long";

/** What a long-form child sees before its passage (see ForkingSegmentSource). */
export const CONTEXT_POLICIES = ["reference", "interleaved"] as const;
export type ContextPolicy = (typeof CONTEXT_POLICIES)[number];
/** How the long-form root decides (see LongFormOptions.rootDecision). */
export const ROOT_DECISIONS = ["threshold", "reference"] as const;
export type RootDecision = (typeof ROOT_DECISIONS)[number];
export const RETRIEVAL_MODES: readonly RetrievalMode[] = ["adaptive", "always", "never"];
export const RETRIEVE_RATIOS: readonly RetrieveRatio[] = ["probability", "reference-logprob"];
/** The Self-RAG scripts' names of the retrieval modes (accepted on the command line). */
export const SCRIPT_MODES: Readonly<Record<string, RetrievalMode>> = {adaptive_retrieval: "adaptive", always_retrieve: "always", no_retrieval: "never"};

export type Retriever = (query: string, k: number) => Promise<readonly Passage[]> | readonly Passage[];

/** Most passages a question may bring. */
export const MAX_PASSAGES = 1024;
/** Largest token budget per candidate or segment. */
export const MAX_NEW_TOKENS = 1 << 16;

// ---------------------------------------------------------------------------------------------
// Surfaces: how each caller spells options.

/** Where options come from, and how that caller spells them. */
export interface Surface {
    readonly kind: "api" | "cli" | "http";
    /** The option or field as the caller spells it: `maxNewTokens`, `--max-new-tokens`, `selfrag.maxNewTokens`. */
    name(key: string): string;
    /** "option" or "field". */
    readonly noun: string;
    /** The refusal of an option of the other form, saying what turns its form on there (`--long`, `"long": true`, answerLong()). */
    wrongForm(name: string, optionForm: Form): string;
}

/** Library calls: options as their keys (`maxNewTokens`, `weights.relevance`). */
export const API_SURFACE: Surface = Object.freeze({
    kind: "api", name: (key: string) => key, noun: "option",
    wrongForm: (name: string, form: Form) => (form === "long"
        ? `${name} is a long-form option: answer() and answerBatch() do not take it (use answerLong() / answerLongBatch())`
        : `${name} is a short-form option: answerLong() and answerLongBatch() do not take it`)
});

/** JSON bodies (POST /v1/answer, jobs): fields as their keys; `prefix` for a nested object (`selfrag.`). */
export function httpSurface(prefix = ""): Surface {
    return Object.freeze({
        kind: "http", name: (key: string) => `${prefix}${key}`, noun: "field",
        wrongForm: (name: string, form: Form) => (form === "long"
            ? `${name} is a long-form field: it needs "${prefix}long": true`
            : `${name} is a short-form field: it cannot be used with "${prefix}long": true`)
    });
}

export const HTTP_SURFACE = httpSurface();

/** Command-line flags: options by their flag (`--max-new-tokens`, `--w-rel`). */
export const CLI_SURFACE: Surface = Object.freeze({
    kind: "cli", noun: "option",
    name: (key: string) => {
        const spec = SPECS.get(key);
        if (spec == null) return QUESTION_FLAGS[key] ?? `--${kebab(key)}`;
        return spec.flags.length > 0 ? spec.flags.map((f) => `--${f.flag}`).join(" / ") : `--${kebab(key)}`;
    },
    wrongForm: (name: string, form: Form) => (form === "long"
        ? `${name} has no effect without --long (it is a long-form option)`
        : `${name} cannot be used with --long (it is a short-form option)`)
});

const QUESTION_FLAGS: Record<string, string> = {question: "the question", passages: "--passages", id: "--id"};

// ---------------------------------------------------------------------------------------------
// The options.

interface Flag {
    /** Without the dashes. */
    readonly flag: string;
    readonly type: "string" | "boolean";
    /** A boolean flag sets this value. */
    readonly sets?: unknown;
    /** A string flag's text to the option's value (unchecked: the option's check names the flag). */
    readonly parse?: (text: string) => unknown;
    readonly help: string;
}

interface OptionSpec {
    /** The API key; weights are `weights.<key>`. */
    readonly key: string;
    readonly forms: readonly Form[];
    /** The value checked, named as the caller spells it. */
    readonly check: (value: unknown, name: string) => unknown;
    /** Surfaces that cannot spell it (a function, or what a body carries as a question field, over HTTP). */
    readonly hiddenOn?: readonly Surface["kind"][];
    /** Command-line flags; empty: none (the command sets it from its own flags: --passages, --index, --save-traces). */
    readonly flags: readonly Flag[];
}

const both: readonly Form[] = ["short", "long"];
const shortOnly: readonly Form[] = ["short"];
const longOnly: readonly Form[] = ["long"];

const number = (text: string): unknown => (text.trim() !== "" && Number.isFinite(Number(text)) ? Number(text) : text);
const integer = (min: number, max: number) => (v: unknown, name: string) => requireInteger(name, v, min, max);
const real = (min: number, max: number) => (v: unknown, name: string) => requireNumberInRange(name, v, min, max);
const oneOf = <T extends string>(values: readonly T[]) => (v: unknown, name: string) => requireOneOf(name, v, values);
const bool = (v: unknown, name: string) => requireBoolean(name, v);

/** `--flag` and `--no-flag` for a boolean option. */
function switches(flag: string, onHelp: string, offHelp?: string): Flag[] {
    return [{flag, type: "boolean", sets: true, help: onHelp}, ...(offHelp != null ? [{flag: `no-${flag}`, type: "boolean" as const, sets: false, help: offHelp}] : [])];
}

function valueFlag(flag: string, help: string, parse: (text: string) => unknown = number): Flag {
    return {flag, type: "string", parse, help};
}

const OPTION_SPECS: readonly OptionSpec[] = [
    {key: "profile", forms: both, check: oneOf(PROFILES),
        flags: [valueFlag("profile", "P  default | reference (the released scripts' strings, defaults and bugs)", String)]},
    {key: "mode", forms: both, check: oneOf(RETRIEVAL_MODES),
        flags: [valueFlag("mode", "M  adaptive (default) | always | never (or the scripts' adaptive_retrieval | always_retrieve | no_retrieval)",
            (text) => SCRIPT_MODES[text] ?? text)]},
    {key: "threshold", forms: both, check: real(0, 1),
        flags: [valueFlag("threshold", "X  retrieve when P([Retrieval]) / (P([Retrieval]) + P([No Retrieval])) > X (0.2)")]},
    {key: "retrieveRatio", forms: both, check: oneOf(RETRIEVE_RATIOS),
        flags: [valueFlag("retrieve-ratio", "R  probability (default) | reference-logprob (the short-form script's inverted log-prob ratio)", String),
            {flag: "reference-retrieve-ratio", type: "boolean", sets: "reference-logprob", help: "   the same as --retrieve-ratio reference-logprob"}]},
    {key: "ndocs", forms: both, check: integer(1, MAX_PASSAGES), flags: [valueFlag("ndocs", "N  passages per question or expansion (5; reference profile 10)")]},
    {key: "maxNewTokens", forms: both, check: integer(1, MAX_NEW_TOKENS),
        flags: [valueFlag("max-new-tokens", "N  tokens per candidate or segment (100; reference profile 15)")]},
    {key: "stop", forms: both, check: (v, name) => stopList(v, name),
        flags: [valueFlag("stop", "S  stop string: a candidate's generation ends before its first S (long form: the answer is cut there)", String)]},
    {key: "task", forms: both, check: oneOf(TASKS), flags: [valueFlag("task", "T  popqa | triviaqa | fever | arc_c | asqa | ... (adds the reference's instruction)", String)]},
    {key: "weights.relevance", forms: both, check: real(-1e6, 1e6), flags: [valueFlag("w-rel", "X  critique weight of relevance (1)")]},
    {key: "weights.support", forms: both, check: real(-1e6, 1e6), flags: [valueFlag("w-sup", "X  critique weight of support (1)")]},
    {key: "weights.utility", forms: both, check: real(-1e6, 1e6), flags: [valueFlag("w-use", "X  critique weight of utility (0.5; reference short form 1)")]},
    {key: "weights.useSequenceScore", forms: both, check: bool,
        flags: [...switches("use-seqscore", "   add the sequence score (default profile: on)"), {flag: "no-seqscore", type: "boolean", sets: false, help: "   leave the sequence score out"}]},
    {key: "weights.useSupport", forms: both, check: bool,
        flags: [...switches("use-groundness", "   count the support term (the scripts' flag; the reference profile counts it only when given)"),
            {flag: "use-grounding", type: "boolean", sets: true, help: "   the long-form script's name of --use-groundness"}]},
    {key: "weights.useUtility", forms: both, check: bool, flags: switches("use-utility", "   count the utility term (the scripts' flag)")},
    {key: "weights.referenceLongFormUtility", forms: both, check: bool, flags: []},
    {key: "choices", forms: shortOnly, check: (v, name) => choiceList(v, name),
        flags: [valueFlag("choices", "\"A|B|C|D\"  answer choices for arc_c", (text) => text.split("|"))]},
    {key: "closedSet", forms: shortOnly, check: bool,
        flags: switches("closed-set", "   vote over post-processed answers (default: fever, arc_c, arc_easy, obqa; reference: fever, arc_c)",
            "   never vote: answer with the best candidate")},
    {key: "prefetchPassages", forms: shortOnly, check: bool,
        flags: switches("prefetch-passages", "   prefill the passages while retrieval is decided (default)", "   prefill them only once retrieval is decided")},
    {key: "maxPassageTokens", forms: shortOnly, check: integer(1, 1 << 20),
        flags: [valueFlag("max-passage-tokens", "N  cut each passage to at most N tokens, markup kept (a warning says so; default: as the slot allows)")]},
    {key: "traces", forms: shortOnly, check: bool, hiddenOn: ["http"], flags: []},
    // Set by `selfrag eval --save-traces` (the traces `selfrag tune` replays): both branches answered.
    {key: "bothBranches", forms: shortOnly, check: bool, hiddenOn: ["http"], flags: []},
    {key: "beamWidth", forms: longOnly, check: integer(1, 64), flags: [valueFlag("beam-width", "N  children kept per depth (2)")]},
    {key: "maxDepth", forms: longOnly, check: integer(1, 64), flags: [valueFlag("max-depth", "N  depths 1..N-1 are generated (7)")]},
    {key: "ignoreCont", forms: longOnly, check: bool, flags: switches("ignore-cont", "   drop segments marked [No support / Contradictory]")},
    {key: "contextPolicy", forms: longOnly, check: oneOf(CONTEXT_POLICIES),
        flags: [valueFlag("context", "P  reference (children see the generated text only) | interleaved (earlier passages too)", String)]},
    {key: "rootDecision", forms: longOnly, check: oneOf(ROOT_DECISIONS),
        flags: [valueFlag("root-decision", "D  threshold (default) | reference (also requires [Retrieval] in a 25-token probe)", String)]},
    {key: "input", forms: longOnly, check: (v, name) => requireString(name, v), hiddenOn: ["http"], flags: []},
    {key: "passages", forms: both, check: (v, name) => passageList(v, name), hiddenOn: ["http"], flags: []},
    {key: "retriever", forms: both, check: (v, name) => retrieverFunction(v, name), hiddenOn: ["http"], flags: []}
];

const SPECS = new Map(OPTION_SPECS.map((s) => [s.key, s]));
const WEIGHT_KEYS = OPTION_SPECS.filter((s) => s.key.startsWith("weights.")).map((s) => s.key.slice("weights.".length));
const TOP_KEYS = [...new Set(OPTION_SPECS.map((s) => s.key.split(".")[0]))];

function kebab(key: string): string {
    return key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** The option keys a surface can spell (top level: `weights` once). */
export function optionKeys(surface: Surface, form?: Form): string[] {
    return TOP_KEYS.filter((key) => OPTION_SPECS.some((s) => s.key.split(".")[0] === key && !(s.hiddenOn ?? []).includes(surface.kind) &&
        (form == null || s.forms.includes(form))));
}

// ---------------------------------------------------------------------------------------------
// Values.

function choiceList(value: unknown, name: string): string[] {
    if (!Array.isArray(value) || value.length === 0 || value.length > 5 || value.some((c) => typeof c !== "string")) {
        throw invalidParameterError(name, "an array of 1 to 5 strings (the choices A, B, C, D(, E))", value);
    }
    return [...value] as string[];
}

/** Most stop strings a question may give (OpenAI's limit). */
export const MAX_STOP_STRINGS = 4;

/** A stop string or a list of up to MAX_STOP_STRINGS non-empty ones, as a list. */
function stopList(value: unknown, name: string): string[] {
    const list = typeof value === "string" ? [value] : value;
    if (!Array.isArray(list) || list.length > MAX_STOP_STRINGS || list.some((s) => typeof s !== "string" || s === "")) {
        throw invalidParameterError(name, `a non-empty string or an array of up to ${MAX_STOP_STRINGS} non-empty strings`, value);
    }
    return [...list] as string[];
}

function retrieverFunction(value: unknown, name: string): Retriever {
    if (typeof value !== "function") throw invalidParameterError(name, "a function (query, k) => passages", value);
    return value as Retriever;
}

/** A passage list: objects of {id?, title?, text}, at most MAX_PASSAGES; ids become strings, a missing title "". */
export function passageList(value: unknown, name: string): Passage[] {
    if (!Array.isArray(value)) throw invalidParameterError(name, "an array of passages {id?, title?, text}", value);
    if (value.length > MAX_PASSAGES) throw invalidParameterError(name, `at most ${MAX_PASSAGES} passages`, `${value.length} passages`);
    return value.map((p, i) => {
        const field = `${name}[${i}]`;
        const item = requireObjectNamed(field, p, "a passage {id?, title?, text}");
        refuseUnknownKeys(item, ["id", "title", "text"], "field", (k) => `${field}.${k}`);
        const text = requireString(`${field}.text`, item.text);
        const title = item.title === undefined ? "" : requireString(`${field}.title`, item.title);
        if (item.id !== undefined && typeof item.id !== "string" && !(typeof item.id === "number" && Number.isFinite(item.id))) {
            throw invalidParameterError(`${field}.id`, "a string or a number", item.id);
        }
        return Object.freeze({...(item.id !== undefined ? {id: String(item.id)} : {}), title, text});
    });
}

function requireObjectNamed(name: string, value: unknown, expected: string): Record<string, unknown> {
    if (value == null || typeof value !== "object" || Array.isArray(value)) throw invalidParameterError(name, expected, value);
    return value as Record<string, unknown>;
}

// ---------------------------------------------------------------------------------------------
// Plans.

const PLAN = Symbol("selfrag.plan");

interface PlanCommon {
    readonly [PLAN]: true;
    readonly profile: ProfileStrategy;
    readonly mode: RetrievalMode;
    readonly threshold: number;
    readonly retrieveRatio: RetrieveRatio;
    readonly ndocs: number;
    readonly maxNewTokens: number;
    /**
     * Stop strings (empty: none). Short form: each candidate's generation ends before the first
     * one (see `cutAtStop`); long form: the answer text is cut before the first one.
     */
    readonly stop: readonly string[];
    /** The profile's weights with the given ones over them. */
    readonly weights: Readonly<CritiqueWeights>;
    /** The task of questions that name none. */
    readonly task: Task;
    /** Passages of questions that bring none. */
    readonly passages?: readonly Passage[];
    readonly retriever?: Retriever;
    /** Who asked: later errors (the prompt fit, slots) name options as this surface spells them. */
    readonly surface: Surface;
}

/** A short-form question's settings, complete and checked (see `planShortForm`). */
export interface ShortFormPlan extends PlanCommon {
    readonly form: "short";
    readonly choices?: readonly string[];
    /** Vote over post-processed answers; undefined: the profile's closed-set tasks vote. */
    readonly closedSet?: boolean;
    readonly traces: boolean;
    /**
     * Answer both branches whatever the decision: the candidate after [No Retrieval] and one per
     * passage (one slot more per question). The answer is the decided branch's as without it; the
     * trace (with `traces`) holds both, so `tune` can replay any threshold and weights.
     */
    readonly bothBranches: boolean;
    readonly prefetchPassages: boolean;
    /** Tokens a passage may take at most (its text cut, markup kept); undefined: as many as the slot allows. */
    readonly maxPassageTokens?: number;
}

/** A long-form question's settings, complete and checked (see `planLongForm`). */
export interface LongFormPlan extends PlanCommon {
    readonly form: "long";
    readonly beamWidth: number;
    readonly maxDepth: number;
    readonly ignoreCont: boolean;
    readonly contextPolicy: ContextPolicy;
    readonly rootDecision: RootDecision;
    readonly input?: string;
}

export type QuestionPlan = ShortFormPlan | LongFormPlan;

export function isPlan(value: unknown): value is QuestionPlan {
    return value != null && typeof value === "object" && (value as {[PLAN]?: unknown})[PLAN] === true;
}

/** Raw options (a library call's, a parsed body's, flags turned into options) as one form's plan. */
export function planShortForm(options: unknown, surface: Surface = API_SURFACE): ShortFormPlan {
    return plan("short", options, surface) as ShortFormPlan;
}

export function planLongForm(options: unknown, surface: Surface = API_SURFACE): LongFormPlan {
    return plan("long", options, surface) as LongFormPlan;
}

export function planQuestion(form: Form, options: unknown, surface: Surface = API_SURFACE): QuestionPlan {
    return plan(form, options, surface);
}

function plan(form: Form, options: unknown, surface: Surface): QuestionPlan {
    if (isPlan(options)) {
        if (options.form !== form) throw new SelfRagError(`a ${options.form}-form plan was given where a ${form}-form one is needed`, "INVALID_ARGUMENT");
        return options;
    }
    const raw = options === undefined || options === null ? {} : requireObjectNamed("options", options, "an object of options");
    const values = checkedValues(form, raw, surface);
    const profile = profileStrategy(values.profile as Profile | undefined, surface.name("profile"));
    const defaults = form === "short" ? profile.shortForm : profile.longForm;
    const {weights: _weights, profile: _profile, ...given} = values;
    const common = {
        // Every checked value as given (an option without a default needs nothing more here) ...
        ...given,
        // ... and those with defaults, complete.
        [PLAN]: true as const,
        profile,
        mode: (values.mode as RetrievalMode | undefined) ?? "adaptive",
        threshold: (values.threshold as number | undefined) ?? 0.2,
        retrieveRatio: (values.retrieveRatio as RetrieveRatio | undefined) ?? (form === "short" ? profile.shortForm.retrieveRatio : "probability"),
        ndocs: (values.ndocs as number | undefined) ?? defaults.ndocs,
        maxNewTokens: (values.maxNewTokens as number | undefined) ?? defaults.maxNewTokens,
        stop: Object.freeze((values.stop as string[] | undefined) ?? []),
        weights: Object.freeze(weightsOver(defaults.weights, values.weights as CritiqueWeights | undefined)),
        task: (values.task as Task | undefined) ?? "none",
        ...(values.passages !== undefined ? {passages: Object.freeze(values.passages as Passage[])} : {}),
        ...(values.retriever !== undefined ? {retriever: values.retriever as Retriever} : {}),
        surface
    };
    if (form === "short") {
        return Object.freeze({
            ...common, form,
            ...(values.choices !== undefined ? {choices: Object.freeze(values.choices as string[])} : {}),
            ...(values.closedSet !== undefined ? {closedSet: values.closedSet as boolean} : {}),
            traces: (values.traces as boolean | undefined) ?? false,
            bothBranches: (values.bothBranches as boolean | undefined) ?? false,
            prefetchPassages: (values.prefetchPassages as boolean | undefined) ?? true
        });
    }
    return Object.freeze({
        ...common, form,
        beamWidth: (values.beamWidth as number | undefined) ?? 2,
        maxDepth: (values.maxDepth as number | undefined) ?? 7,
        ignoreCont: (values.ignoreCont as boolean | undefined) ?? false,
        contextPolicy: (values.contextPolicy as ContextPolicy | undefined) ?? "reference",
        rootDecision: (values.rootDecision as RootDecision | undefined) ?? "threshold",
        ...(values.input !== undefined ? {input: values.input as string} : {})
    });
}

/** Every given option checked, by name; unknown ones and those of the other form refused. */
function checkedValues(form: Form, raw: Record<string, unknown>, surface: Surface): Record<string, unknown> {
    const known = optionKeys(surface);
    const out: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(raw)) {
        if (value === undefined) continue;
        if (!known.includes(key)) throw unknownOptionError(key, known, surface.noun, surface.name);
        if (key === "weights") {
            const w = requireObject(surface.name("weights"), value);
            const weightKeys = WEIGHT_KEYS.filter((k) => !(SPECS.get(`weights.${k}`)!.hiddenOn ?? []).includes(surface.kind));
            refuseUnknownKeys(w, weightKeys, surface.noun, (k) => surface.name(`weights.${k}`));
            const weights: Record<string, unknown> = {};
            for (const [k, v] of Object.entries(w)) if (v !== undefined) weights[k] = SPECS.get(`weights.${k}`)!.check(v, surface.name(`weights.${k}`));
            out.weights = weights;
            continue;
        }
        const spec = SPECS.get(key)!;
        if (!spec.forms.includes(form)) {
            throw new SelfRagError(surface.wrongForm(surface.name(key), spec.forms[0]), "INVALID_ARGUMENT", {option: surface.name(key)});
        }
        out[key] = spec.check(value, surface.name(key));
    }
    return out;
}

/**
 * A plan as plain JSON options (every setting explicit, the profile by name; no retriever), which
 * plan again to the same settings: what a job carries to another process.
 */
export function planOptions(plan: QuestionPlan): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(plan)) {
        if (key === "form" || key === "surface" || key === "retriever" || value === undefined) continue;
        out[key] = key === "profile" ? (value as ProfileStrategy).name : key === "weights" ? {...(value as CritiqueWeights)} : value;
    }
    return out;
}

// ---------------------------------------------------------------------------------------------
// Questions.

const QUESTION = Symbol("selfrag.question");

/** A question as the flows use it: text checked, passages checked, id given. */
export interface PlannedQuestion {
    readonly [QUESTION]: true;
    readonly id: string;
    readonly question: string;
    readonly input?: string;
    /** The question's own passages (they take precedence over the plan's passages and retriever). */
    readonly passages?: readonly Passage[];
    readonly task: Task;
    readonly choices?: readonly string[];
}

const QUESTION_FIELDS: Readonly<Record<Form, readonly string[]>> = {
    short: ["id", "question", "input", "passages", "task", "choices"],
    long: ["id", "question", "input", "passages"]
};

/**
 * A question (a string or a question object) checked against its plan. `where` is how the caller
 * names it: "question" for one, `questions[3]` in a batch; fields of an object are `where.field`
 * in the library and the field alone in a body.
 */
export function planQuestionItem(q: unknown, index: number, plan: QuestionPlan, where = "question"): PlannedQuestion {
    const surface = plan.surface;
    if (q != null && typeof q === "object" && (q as {[QUESTION]?: unknown})[QUESTION] === true) return q as PlannedQuestion;
    const field = (f: string) => (surface.kind === "api" ? `${where}.${f}` : surface.name(f));
    if (typeof q === "string") {
        const text = requireString(surface.kind === "api" ? where : surface.name("question"), q, {nonBlank: true});
        return finishQuestion({id: String(index), question: text}, plan, field);
    }
    const item = requireObjectNamed(surface.kind === "api" ? where : "question", q, "a question string or an object {question, ...}");
    const fields = QUESTION_FIELDS[plan.form];
    refuseUnknownKeys(item, fields, "field", field);
    const text = requireString(field("question"), item.question, {nonBlank: true});
    const id = item.id === undefined ? String(index) : typeof item.id === "number" && Number.isFinite(item.id) ? String(item.id) : requireString(field("id"), item.id);
    return finishQuestion({
        id, question: text,
        ...(item.input !== undefined ? {input: requireString(field("input"), item.input)} : {}),
        ...(item.passages !== undefined ? {passages: Object.freeze(passageList(item.passages, field("passages")))} : {}),
        ...(item.task !== undefined ? {task: requireOneOf(field("task"), item.task, TASKS)} : {}),
        ...(item.choices !== undefined ? {choices: Object.freeze(choiceList(item.choices, field("choices")))} : {})
    }, plan, field);
}

function finishQuestion(q: Omit<PlannedQuestion, "task" | typeof QUESTION> & {task?: Task}, plan: QuestionPlan, field: (f: string) => string): PlannedQuestion {
    const surface = plan.surface;
    const task = q.task ?? plan.task;
    const input = q.input ?? (plan.form === "long" ? plan.input : undefined);
    if (plan.form === "short") {
        const choices = q.choices ?? plan.choices;
        if (choices != null && !plan.profile.choiceTasks.has(task)) {
            const name = q.choices != null ? field("choices") : surface.name("choices");
            throw new SelfRagError(`question ${q.id}: ${name} were given but task "${task}" does not list them in its prompt ` +
                `(the ${plan.profile.name} profile lists them for ${[...plan.profile.choiceTasks].join(", ")} only): pass task "arc_c"`,
            "INVALID_ARGUMENT", {option: name});
        }
        return Object.freeze({...q, [QUESTION]: true as const, task, ...(input != null ? {input} : {}), ...(choices != null ? {choices} : {})});
    }
    const staticPassages = q.passages ?? (plan.retriever == null ? plan.passages : undefined);
    if (plan.profile.scriptLongFormSearch && staticPassages == null && plan.retriever != null) {
        throw invalidParameterError(surface.kind === "api" ? "passages" : surface.name("passages"),
            `static passages under profile "${plan.profile.name}" (the script has no dynamic retrieval)`, "a retriever");
    }
    return Object.freeze({...q, [QUESTION]: true as const, task, ...(input != null ? {input} : {})});
}

// ---------------------------------------------------------------------------------------------
// What a question needs of the model.

/**
 * Sequence slots one question of this plan holds: one per passage in short form (`passages`
 * known, else ndocs), beamWidth x that in long form; 1 without retrieval; one per passage and
 * one more with `bothBranches`.
 */
export function slotsNeeded(plan: QuestionPlan, passages?: number): number {
    if (plan.form === "short" && plan.bothBranches) return Math.min(plan.ndocs, passages ?? plan.ndocs) + 1;
    if (plan.mode === "never") return 1;
    const width = Math.max(1, Math.min(plan.ndocs, passages ?? plan.ndocs));
    return plan.form === "short" ? width : plan.beamWidth * width;
}

/** Refuses a question that needs more slots than the model has (TOO_FEW_SLOTS), naming the options to lower. */
export function requireSlots(plan: QuestionPlan, slots: number, available: number, id: string): void {
    if (slots <= available) return;
    const name = plan.surface.name;
    throw new SelfRagError(plan.form === "short"
        ? `question ${id} needs ${slots} sequence slots (one per passage) but the model was loaded with sequences: ${available}; ` +
            `lower ${name("ndocs")} or raise sequences`
        : `the search needs ${name("beamWidth")} x ${name("ndocs")} = ${slots} sequence slots but the model was loaded with sequences: ${available}; ` +
            `lower ${name("beamWidth")} or ${name("ndocs")}, or raise sequences`, "TOO_FEW_SLOTS");
}

/** A question's plan with values no caller spells (the server's index as the retriever of a question without passages). */
export function planWith<P extends QuestionPlan>(plan: P, values: {retriever?: Retriever}): P {
    return Object.freeze({...plan, ...values}) as unknown as P;
}

/** Refuses a prompt that leaves no room for the token budget (CONTEXT_OVERFLOW), naming the budget as the caller spells it. */
export function requirePromptFits(plan: QuestionPlan, perSequence: number, promptTokens: number, id: string): void {
    if (promptTokens + 1 + plan.maxNewTokens <= perSequence) return;
    throw new SelfRagError(`question ${id}: the prompt (${promptTokens} tokens) plus ${plan.surface.name("maxNewTokens")} (${plan.maxNewTokens}) ` +
        `does not fit the context of ${perSequence} tokens per sequence`, "CONTEXT_OVERFLOW", {option: plan.surface.name("maxNewTokens")});
}

// ---------------------------------------------------------------------------------------------
// The command line.

/** parseArgs options for every question option a form's command takes (both forms: the plan refuses the other form's). */
export function questionFlagOptions(keys: (key: string) => boolean = () => true): Record<string, {type: "string" | "boolean"}> {
    const out: Record<string, {type: "string" | "boolean"}> = {};
    for (const spec of OPTION_SPECS) if (keys(spec.key)) for (const f of spec.flags) out[f.flag] = {type: f.type};
    return out;
}

/** The critique-weight flags alone (`--w-rel`, `--no-seqscore`, ...: `selfrag rerank`). */
export function weightFlagOptions(): Record<string, {type: "string" | "boolean"}> {
    return questionFlagOptions((key) => key.startsWith("weights."));
}

/** The critique weights those flags give, checked as every surface checks them and named by flag; flags not given stay unset. */
export function weightsFromFlags(values: Readonly<Record<string, unknown>>): CritiqueWeights {
    const {weights} = optionsFromFlags(values);
    return {...planShortForm(weights !== undefined ? {weights} : {}, CLI_SURFACE).weights};
}

/**
 * Parsed flag values as raw options (weights nested), for `planShortForm(..., CLI_SURFACE)`.
 * Two flags of one option that disagree (`--use-seqscore --no-seqscore`) are refused.
 */
export function optionsFromFlags(values: Readonly<Record<string, unknown>>): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const spec of OPTION_SPECS) {
        let seen: {flag: string, value: unknown} | undefined;
        for (const f of spec.flags) {
            const given = values[f.flag];
            if (given === undefined || given === false) continue;
            const value = f.type === "boolean" ? f.sets : (f.parse ?? number)(given as string);
            if (seen != null && seen.value !== value) {
                throw new SelfRagError(`--${seen.flag} and --${f.flag} contradict each other: give one`, "INVALID_ARGUMENT", {option: `--${f.flag}`});
            }
            seen = {flag: f.flag, value};
        }
        if (seen == null) continue;
        const [top, sub] = spec.key.split(".");
        if (sub != null) ((out[top] ??= {}) as Record<string, unknown>)[sub] = seen.value;
        else out[top] = seen.value;
    }
    return out;
}

/**
 * Plan options (as `planOptions` gives them) as the command-line flags that plan to them again: the
 * inverse of `optionsFromFlags`, spelled from the same table, so `selfrag eval` accepts exactly
 * these. A boolean takes the switch that sets its value, anything else its value flag (choices
 * joined with "|", numbers as JavaScript prints them, which read back to the same double). An
 * option no flag can spell is refused by name.
 *
 * ```ts
 * optionFlags({threshold: 0.35, weights: {relevance: 2, useSequenceScore: false}}); // ["--threshold", "0.35", "--w-rel", "2", "--no-seqscore"]
 * ```
 */
export function optionFlags(options: Readonly<Record<string, unknown>>): string[] {
    const out: string[] = [];
    const keys = new Set(OPTION_SPECS.map((s) => s.key.split(".")[0]));
    for (const key of Object.keys(options)) if (!keys.has(key)) throw unknownOptionError(key, [...keys], "option");
    for (const spec of OPTION_SPECS) {
        const [top, sub] = spec.key.split(".");
        const value = sub != null ? (options[top] as Record<string, unknown> | undefined)?.[sub] : options[top];
        if (value === undefined) continue;
        const flag = typeof value === "boolean" ? spec.flags.find((f) => f.type === "boolean" && f.sets === value) : spec.flags.find((f) => f.type === "string");
        if (flag == null) {
            throw new SelfRagError(`${spec.key} ${JSON.stringify(value)} has no command-line flag`, "INVALID_ARGUMENT", {option: spec.key});
        }
        if (flag.type === "boolean") out.push(`--${flag.flag}`);
        else out.push(`--${flag.flag}`, Array.isArray(value) ? value.join("|") : String(value));
    }
    return out;
}

/** The option a question flag sets (`w-rel` -> `weights.relevance`), or undefined for a flag that is not one. */
export function flagOptionKey(flag: string): string | undefined {
    return OPTION_SPECS.find((s) => s.flags.some((f) => f.flag === flag))?.key;
}

/** The help lines of the question options of a form (`form` undefined: both, long-only ones marked). */
export function questionOptionsHelp(form?: Form): string {
    const lines: string[] = [];
    for (const spec of OPTION_SPECS) {
        if (form != null && !spec.forms.includes(form)) continue;
        for (const f of spec.flags) {
            const [value, ...text] = f.help.split("  ");
            const left = `  --${f.flag}${value.trim() !== "" ? ` ${value.trim()}` : ""}`;
            const mark = form == null && spec.forms.length === 1 ? `(${spec.forms[0]} form) ` : "";
            lines.push(`${left.padEnd(24)}${left.length >= 24 ? " " : ""}${mark}${text.join("  ").trim()}`);
        }
    }
    return lines.join("\n");
}
