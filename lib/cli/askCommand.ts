import {createHash} from "node:crypto";
import fs from "node:fs";
import {SelfRagError, invalidParameterError} from "../errors.js";
import {readPassagesJsonl} from "../selfrag/passages.js";
import {formatPassage, formatPrompt, taskInstruction} from "../selfrag/prompts.js";
import {longFormJson, shortFormJson} from "../serving/responses.js";
import {SelfRagModel} from "../SelfRagModel.js";
import type {ShortFormAnswer} from "../selfrag/ShortForm.js";
import type {LongFormAnswer} from "../selfrag/LongForm.js";
import {integerOption, requireModel} from "./options.js";
import {CACHE_FLAGS_HELP, cacheFlags, cacheOptions, parseCommand, refuseTogether, requireWith} from "./contract.js";
import {CLI_SURFACE, optionsFromFlags, planQuestion, questionFlagOptions, questionOptionsHelp, slotsNeeded, type QuestionPlan} from "../selfrag/plan.js";
import {renderLongFormHtml, renderShortFormHtml} from "../view/AnswerView.js";
import {checkHtmlTarget, writeHtml} from "./viewCommand.js";

const help = () => `Usage: selfrag ask [--model FILE] (--passages FILE.jsonl | --index DIR) [options] "question"

Short-form Self-RAG: decide retrieval, generate one candidate per passage (all in one batch),
score each with the reflection tokens and answer with the best. With --long: long-form Self-RAG,
a segment-level beam search whose nodes share their encoded prefix, with [n] citations.
  --passages FILE       JSONL, one {"id", "title", "text"} per line, best first
  --index DIR           retrieve from an index built by \`selfrag index build\` (top ndocs for the
                        question; in long form again at every segment with the text so far)
  --long                long form (the options marked "long form" below need it)
  --save-traces FILE    append this question's trace (JSONL) for \`selfrag rerank\` (short form)
  --html FILE           also write the answer as one self-contained HTML page: the search tree with
                        --long, the candidates side by side otherwise (see \`selfrag view\`)
  --id ID               the trace record's id (default: the first 8 hex digits of the question's SHA-1)
  --threads N --context-size N (tokens per sequence, 2048) --cpu --json
  ${CACHE_FLAGS_HELP}
The question's options (the same as the library's and the server's, by their flag names):
${questionOptionsHelp()}
Options that would do nothing are refused: the long-form ones without --long, --choices and
--save-traces with --long, --id without --save-traces.`;

export async function askCommand(args: string[]): Promise<void> {
    const parsed = parseCommand("selfrag ask", help, {args, allowPositionals: true, options: {
        model: {type: "string"}, passages: {type: "string"}, index: {type: "string"}, "save-traces": {type: "string"}, threads: {type: "string"},
        "context-size": {type: "string"}, cpu: {type: "boolean"}, json: {type: "boolean"}, long: {type: "boolean"}, id: {type: "string"},
        html: {type: "string"}, ...cacheFlags, ...questionFlagOptions()
    }});
    if (parsed == null) return;
    const {values, positionals} = parsed;
    const long = values.long === true;
    refuseTogether("--save-traces", values["save-traces"], "--long", long, "traces are written for short form only");
    requireWith("--id", values.id, "--save-traces", values["save-traces"] != null, "it is the id of the trace record");
    if (values.html != null) checkHtmlTarget(values.html);
    // The question's options, checked before any file is read or model loaded.
    const flagged = optionsFromFlags(values);
    planQuestion(long ? "long" : "short", flagged, CLI_SURFACE);
    // Words of an unquoted question arrive as several arguments; joining them would also hide a
    // misplaced value (`--ndocs 3 4`), so one argument is the question and more are refused.
    if (positionals.length > 1) {
        throw new SelfRagError(`selfrag ask takes one question, got ${positionals.length} arguments: ` +
            `${positionals.map((p) => JSON.stringify(p)).join(" ")} (quote the question: selfrag ask ... "What is ...?")`, "INVALID_ARGUMENT");
    }
    const question = (positionals[0] ?? "").trim();
    if (question === "") throw invalidParameterError("the question", "the question as the last argument", question);
    if ((values.passages == null) === (values.index == null)) {
        throw invalidParameterError("--passages / --index", "exactly one of a passages JSONL file or an index directory", values.passages ?? values.index);
    }
    const passages = values.passages != null ? await readPassagesJsonl(values.passages) : undefined;
    // The retrieval code (USearch, SQLite) is imported only when an index is asked for.
    const index = values.index != null ? await (await import("../retrieval/PassageIndex.js")).PassageIndex.open(values.index) : undefined;
    try {
        const plan = planQuestion(long ? "long" : "short", {
            ...flagged, ...(passages != null ? {passages} : {}), ...(index != null ? {retriever: index.asRetriever()} : {}),
            ...(!long && values["save-traces"] != null ? {traces: true} : {})
        }, CLI_SURFACE);
        await ask(values, question, plan);
    } finally {
        await index?.close();
    }
}

/**
 * A one-question process sizes its slots to the question: its prompt and longest passage (as the
 * short form lays them out in a slot) plus the generation budget, within the 2048 default, since
 * llama.cpp clears the whole KV cache when it creates a context (2048 x 5 slots: a third of a small
 * model's start-up). Long form and an index (passages unknown before the search) keep the default.
 */
export function shortFormSizing(plan: QuestionPlan, question: string): {sizeToPrompt?: string, sizeReserve?: number} {
    const passages = plan.passages?.slice(0, plan.ndocs);
    if (plan.form === "long" || passages == null || passages.length === 0) return {};
    const prompt = formatPrompt(taskInstruction(plan.task, question, plan.choices, {profile: plan.profile}));
    const longest = passages.map(formatPassage).reduce((a, b) => (b.length > a.length ? b : a));
    // A few tokens of slack: the two texts are tokenized apart in the slot, together here.
    return {sizeToPrompt: prompt + longest, sizeReserve: plan.maxNewTokens + 16};
}

/** The id of a question's trace: --id, else the first 8 hex digits of the question's SHA-1 (stable across runs). */
export function questionId(question: string, id?: string): string {
    return id ?? createHash("sha1").update(question).digest("hex").slice(0, 8);
}

/** The command's own option values (the question's options are the plan's). */
interface AskValues {
    model?: string; "save-traces"?: string; threads?: string; "context-size"?: string; cpu?: boolean; json?: boolean; long?: boolean;
    id?: string; html?: string; "kv-type"?: string; "flash-attn"?: string;
}

async function ask(values: AskValues, question: string, plan: QuestionPlan): Promise<void> {
    const contextSize = integerOption("--context-size", values["context-size"]);
    const model = await SelfRagModel.load({
        modelPath: requireModel(values.model), sequences: slotsNeeded(plan, plan.passages?.length),
        contextSize: contextSize ?? 2048, threads: integerOption("--threads", values.threads),
        gpu: values.cpu ? false : "auto", nodeLlamaCpp: false, ...cacheOptions(values),
        ...(contextSize == null ? shortFormSizing(plan, question) : {})
    });
    try {
        if (plan.form === "long") {
            const result = await model.answerLong(question, plan);
            if (values.html != null) writeHtml(values.html, renderLongFormHtml(result, {question}));
            if (values.json) console.log(JSON.stringify(longFormJson(result)));
            else printLongAnswer(result);
            return;
        }
        const saveTraces = values["save-traces"];
        const id = questionId(question, values.id);
        const result = await model.answer({id, question}, plan);
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
