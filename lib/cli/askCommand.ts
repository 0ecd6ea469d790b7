import {createHash} from "node:crypto";
import fs from "node:fs";
import {SelfRagError, invalidParameterError} from "../errors.js";
import {readPassagesJsonl} from "../selfrag/passages.js";
import {formatPassage, formatPrompt, taskInstruction, TASKS, type Passage, type Task} from "../selfrag/prompts.js";
import type {PassageIndex} from "../retrieval/PassageIndex.js";
import {longFormJson, shortFormJson} from "../serving/responses.js";
import {SelfRagModel} from "../SelfRagModel.js";
import type {ShortFormAnswer} from "../selfrag/ShortForm.js";
import type {ContextPolicy} from "../selfrag/ForkingSegmentSource.js";
import type {LongFormAnswer} from "../selfrag/LongForm.js";
import {integerOption, numberOption, requireModel, weightOptions, weightsFrom, type WeightValues} from "./options.js";
import {checkLongOnly, modeOption, parseCommand, refuseTogether, requireWith} from "./contract.js";
import {LONG_FORM_DEFAULTS, PROFILES, SHORT_FORM_DEFAULTS, type Profile} from "../selfrag/profiles.js";
import {renderLongFormHtml, renderShortFormHtml} from "../view/AnswerView.js";
import {checkHtmlTarget, writeHtml} from "./viewCommand.js";

const help = `Usage: selfrag ask [--model FILE] (--passages FILE.jsonl | --index DIR) [options] "question"

Short-form Self-RAG: decide retrieval, generate one candidate per passage (all in one batch),
score each with the reflection tokens and answer with the best. With --long: long-form Self-RAG,
a segment-level beam search whose nodes share their encoded prefix, with [n] citations.
  --passages FILE       JSONL, one {"id", "title", "text"} per line, best first
  --index DIR           retrieve from an index built by \`selfrag index build\` (top ndocs for the
                        question; in long form again at every segment with the text so far)
  --mode M              adaptive (default) | always | never
  --threshold X         retrieve when P([Retrieval]) / (P([Retrieval]) + P([No Retrieval])) > X (0.2)
  --reference-retrieve-ratio  use the reference script's log-prob ratio (inverted meaning; for reproducing it)
  --ndocs N             passages to use (5; reference profile 10)
  --max-new-tokens N    tokens per candidate (100; reference profile 15)
  --profile P           default | reference (the released scripts' strings, defaults and bugs)
  --task T              popqa | triviaqa | fever | arc_c | asqa | ... (adds the reference's instruction)
  --choices "A|B|C|D"   answer choices for arc_c
  --w-rel X --w-sup X --w-use X --no-seqscore   critique weights (1, 1, 0.5, sequence score on)
  --use-groundness --use-utility --use-seqscore  the scripts' flags (the reference profile counts those terms only when given)
  --save-traces FILE    append this question's trace (JSONL) for \`selfrag rerank\` (short form)
  --html FILE           also write the answer as one self-contained HTML page: the search tree with
                        --long, the candidates side by side otherwise (see \`selfrag view\`)
  --id ID               the trace record's id (default: the first 8 hex digits of the question's SHA-1)
  --long                long form: --beam-width N (2) --max-depth N (7) --ignore-cont
                        --context reference|interleaved (what children see: generated text only, or earlier passages too)
  --threads N --context-size N (tokens per sequence, 2048) --cpu --json
Options that would do nothing are refused: the long-form ones without --long, --choices and
--save-traces with --long, --id without --save-traces.`;

export async function askCommand(args: string[]): Promise<void> {
    const parsed = parseCommand("selfrag ask", help, {args, allowPositionals: true, options: {
        model: {type: "string"}, passages: {type: "string"}, index: {type: "string"}, mode: {type: "string"}, threshold: {type: "string"},
        "reference-retrieve-ratio": {type: "boolean"}, ndocs: {type: "string"}, "max-new-tokens": {type: "string"},
        task: {type: "string"}, choices: {type: "string"}, "save-traces": {type: "string"}, threads: {type: "string"},
        "context-size": {type: "string"}, cpu: {type: "boolean"}, json: {type: "boolean"},
        long: {type: "boolean"}, "beam-width": {type: "string"}, "max-depth": {type: "string"}, "ignore-cont": {type: "boolean"},
        context: {type: "string"}, profile: {type: "string"}, id: {type: "string"}, html: {type: "string"}, ...weightOptions
    }});
    if (parsed == null) return;
    const {values, positionals} = parsed;
    checkAskOptions(values);
    const question = positionals.join(" ").trim();
    if (question === "") throw invalidParameterError("question", "the question as the last argument", question);
    if ((values.passages == null) === (values.index == null)) {
        throw invalidParameterError("--passages / --index", "exactly one of a passages JSONL file or an index directory", values.passages ?? values.index);
    }
    const passages = values.passages != null ? await readPassagesJsonl(values.passages) : undefined;
    // The retrieval code (USearch, SQLite) is imported only when an index is asked for.
    const index = values.index != null ? await (await import("../retrieval/PassageIndex.js")).PassageIndex.open(values.index) : undefined;
    try {
        await ask(values, question, passages, index);
    } finally {
        await index?.close();
    }
}

/** Refuses what would be silently ignored: options of the other form, unknown tasks and modes. */
function checkAskOptions(values: AskValues): void {
    const long = values.long === true;
    checkLongOnly(values, long);
    refuseTogether("--save-traces", values["save-traces"], "--long", long, "traces are written for short form only");
    refuseTogether("--choices", values.choices, "--long", long, "answer choices are a short-form option");
    requireWith("--id", values.id, "--save-traces", values["save-traces"] != null, "it is the id of the trace record");
    if (values.task != null && !TASKS.includes(values.task as Task)) throw invalidParameterError("--task", TASKS.join(" | "), values.task);
    modeOption(values.mode);
    if (values.html != null) checkHtmlTarget(values.html);
    if (values.context != null && values.context !== "reference" && values.context !== "interleaved") {
        throw invalidParameterError("--context", `"reference" or "interleaved"`, values.context);
    }
}

/**
 * A one-question process sizes its slots to the question: its prompt and longest passage (as the
 * short form lays them out in a slot) plus the generation budget, within the 2048 default, since
 * llama.cpp clears the whole KV cache when it creates a context (2048 x 5 slots: a third of a small
 * model's start-up). Long form and an index (passages unknown before the search) keep the default.
 */
export function shortFormSizing(values: AskValues, question: string, passages: readonly Passage[] | undefined, maxNewTokens: number, profile: Profile) {
    if (values.long || passages == null || passages.length === 0) return {};
    const prompt = formatPrompt(taskInstruction((values.task ?? "none") as Task, question, values.choices?.split("|"), {profile}));
    const longest = passages.map(formatPassage).reduce((a, b) => (b.length > a.length ? b : a));
    // A few tokens of slack: the two texts are tokenized apart in the slot, together here.
    return {sizeToPrompt: prompt + longest, sizeReserve: maxNewTokens + 16};
}

/** The id of a question's trace: --id, else the first 8 hex digits of the question's SHA-1 (stable across runs). */
export function questionId(question: string, id?: string): string {
    return id ?? createHash("sha1").update(question).digest("hex").slice(0, 8);
}

/** The parsed option values of `ask`. */
interface AskValues extends WeightValues {
    model?: string; mode?: string; threshold?: string; "reference-retrieve-ratio"?: boolean; ndocs?: string;
    "max-new-tokens"?: string; task?: string; choices?: string; "save-traces"?: string; threads?: string;
    "context-size"?: string; cpu?: boolean; json?: boolean; long?: boolean; "beam-width"?: string; "max-depth"?: string;
    "ignore-cont"?: boolean; context?: string; profile?: string; id?: string; html?: string;
}

async function ask(values: AskValues, question: string, passages: Passage[] | undefined, index: PassageIndex | undefined): Promise<void> {
    const profile = (values.profile ?? "default") as Profile;
    if (!PROFILES.includes(profile)) throw invalidParameterError("--profile", PROFILES.join(" | "), values.profile);
    const defaults = (values.long ? LONG_FORM_DEFAULTS : SHORT_FORM_DEFAULTS)[profile];
    const ndocs = integerOption("--ndocs", values.ndocs) ?? defaults.ndocs;
    const maxNewTokens = integerOption("--max-new-tokens", values["max-new-tokens"]) ?? defaults.maxNewTokens;
    const beamWidth = integerOption("--beam-width", values["beam-width"]) ?? 2;
    const usable = Math.max(1, Math.min(ndocs, passages?.length ?? ndocs));
    const contextSize = integerOption("--context-size", values["context-size"]);
    const model = await SelfRagModel.load({
        modelPath: requireModel(values.model), sequences: values.long ? beamWidth * usable : usable,
        contextSize: contextSize ?? 2048, threads: integerOption("--threads", values.threads),
        gpu: values.cpu ? false : "auto", nodeLlamaCpp: false,
        ...(contextSize == null ? shortFormSizing(values, question, passages?.slice(0, usable), maxNewTokens, profile) : {})
    });
    const common = {
        passages, retriever: index?.asRetriever(), ndocs, maxNewTokens, mode: modeOption(values.mode),
        threshold: numberOption("--threshold", values.threshold),
        retrieveRatio: values["reference-retrieve-ratio"] ? "reference-logprob" as const : undefined,
        weights: weightsFrom(values), task: values.task as Task | undefined, profile
    };
    try {
        if (values.long) {
            const result = await model.answerLong(question, {
                ...common, beamWidth, maxDepth: integerOption("--max-depth", values["max-depth"]),
                ignoreCont: values["ignore-cont"], contextPolicy: values.context as ContextPolicy | undefined
            });
            if (values.html != null) writeHtml(values.html, renderLongFormHtml(result, {question}));
            if (values.json) console.log(JSON.stringify(longFormJson(result)));
            else printLongAnswer(result);
            return;
        }
        const saveTraces = values["save-traces"];
        const id = questionId(question, values.id);
        const result = await model.answer({id, question, task: common.task, choices: values.choices?.split("|")}, {
            ...common, traces: saveTraces != null
        });
        if (saveTraces != null) {
            // The question's id and text first, so a traces file can be read (and joined with answers) by question.
            const {id: _id, question: _question, ...trace} = result.trace!;
            fs.appendFileSync(saveTraces, JSON.stringify({id, question, ...trace}) + "\n");
        }
        for (const warning of result.warnings) process.stderr.write(`selfrag: warning: ${warning}\n`);
        if (values.html != null) writeHtml(values.html, renderShortFormHtml(result, {question}));
        if (values.json) console.log(JSON.stringify(shortFormJson(result)));
        else printAnswer(result);
    } finally {
        await model.dispose();
    }
}

export function printLongAnswer(result: LongFormAnswer): void {
    console.log(`answer: ${result.answer}`);
    console.log(`retrieval: ${result.retrieve.decision ? "yes" : "no"} (p = ${result.retrieve.p.toFixed(4)})`);
    result.docs.forEach((d, i) => console.log(`  [${i + 1}] ${d.title}${d.id != null ? ` (${d.id})` : ""}`));
    const s = result.stats;
    console.log(`search: ${s.nodes} nodes, depth ${s.depth}, stopped: ${s.stop}; tokens evaluated ${s.evaluatedTokens} ` +
        `vs ${s.referenceTokens} re-encoding every context (${(s.evaluatedTokens / Math.max(1, s.referenceTokens)).toFixed(2)})`);
}

export function printAnswer(result: ShortFormAnswer): void {
    console.log(`answer: ${result.answer}`);
    console.log(`retrieval: ${result.retrieve.decision ? "yes" : "no"} (p = ${result.retrieve.p.toFixed(4)})`);
    if (result.candidates.length > 0) {
        console.log("candidates:");
        result.candidates.forEach((c, i) => {
            const mark = i === result.best ? "*" : " ";
            const source = c.passage != null ? `[${c.passage.id ?? i}] ${c.passage.title}` : "(no passage)";
            console.log(`${mark} ${c.score.toFixed(3).padStart(7)}  rel ${c.relevance.toFixed(2)} sup ${c.support.toFixed(2)} ` +
                `use ${c.utility.toFixed(2).padStart(5)} seq ${c.seq.toFixed(2).padStart(6)}  ${source}: ${JSON.stringify(c.text)}`);
        });
    }
    if (result.votes != null) console.log(`votes: ${JSON.stringify(result.votes)}`);
    if (result.candidates.length === 0) throw new SelfRagError("no candidate was generated", "INTERNAL");
}
