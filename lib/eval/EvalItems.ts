// Questions of an evaluation file, in the shapes the Self-RAG evaluation data comes in:
//   - PopQA / TriviaQA: {"question", "answers": [...], "ctxs": [{id, title, text}, ...]}
//     (PopQA's own release: "possible_answers" as a JSON-encoded list);
//   - PubHealth: {"question" (the claim), "answers": ["true" | "false"], "ctxs"};
//   - ARC-Challenge: {"question", "choices": {"text": [...], "label": ["A".."D" | "1".."4"]},
//     "answerKey", "ctxs"};
//   - ASQA (ALCE): {"question", "qa_pairs": [{"short_answers": [...]}], "docs": [...]};
// plus "instruction" / "query" / "claim" for the question, "answer" / "output" for the gold,
// "top_contexts" for the passages, and any "id". A record that has no question is reported with
// its file and line, and skipped.
import {SelfRagError} from "../errors.js";
import {profileStrategy, type Profile, type ProfileStrategy} from "../selfrag/profiles.js";
import {formatPrompt, taskInstruction, type Passage, type Task} from "../selfrag/prompts.js";

export interface EvalItem {
    id: string;
    question: string;
    /** Pre-retrieved passages, best first. */
    passages?: Passage[];
    /** ARC-style choices, in A, B, C, D(, E) order. */
    choices?: string[];
    /** Gold answers (match / accuracy). */
    golds?: string[];
    /** ASQA disambiguations (str-em). */
    qaPairs?: {short_answers: string[]}[];
    /** Where it came from, for messages: "file:line" or "file record N". */
    where: string;
    /** The record as read (the reference output format writes it back with the answer). */
    record: Record<string, unknown>;
}

const QUESTION_FIELDS = ["question", "instruction", "query", "claim", "input"];
const PASSAGE_FIELDS = ["ctxs", "top_contexts", "docs"];
const ID_FIELDS = ["id", "q_id", "question_id", "qid", "sample_id", "idx"];
const ARC_LABELS: Record<string, string> = {"1": "A", "2": "B", "3": "C", "4": "D", "5": "E"};

/**
 * An EvalItem, or the reason the record cannot be one. Under the reference profile ARC records
 * are read as the short-form script reads them: only `arc_c` has choices, labels 1-4 and A-D
 * become A-D and any fifth choice is dropped, and the gold stays the `answerKey` as written (a
 * numeric key "1" is not relabelled, so it never matches); `arc_easy` / `obqa` take their golds
 * from `answers`.
 */
export function toEvalItem(value: unknown, where: string, ordinal: number, task: Task, profile?: Profile | ProfileStrategy): EvalItem | string {
    if (value == null || typeof value !== "object" || Array.isArray(value)) return `${where}: expected a JSON object`;
    const r = value as Record<string, unknown>;
    const questionField = QUESTION_FIELDS.find((f) => typeof r[f] === "string" && (r[f] as string).trim() !== "");
    if (questionField == null) return `${where}: no question (expected a non-empty string in one of ${QUESTION_FIELDS.join(", ")})`;
    const idField = ID_FIELDS.find((f) => typeof r[f] === "string" || typeof r[f] === "number");
    const item: EvalItem = {id: idField != null ? String(r[idField]) : String(ordinal), question: r[questionField] as string, where, record: r};

    const passagesField = PASSAGE_FIELDS.find((f) => r[f] != null);
    if (passagesField != null) {
        const list = r[passagesField];
        if (!Array.isArray(list)) return `${where}: field "${passagesField}" must be an array of {title, text}`;
        const passages: Passage[] = [];
        for (const [i, p] of list.entries()) {
            const ctx = p as Record<string, unknown> | null;
            if (ctx == null || typeof ctx !== "object" || typeof ctx.text !== "string") {
                return `${where}: ${passagesField}[${i}] must be an object with a string "text"`;
            }
            passages.push({...(ctx.id != null ? {id: String(ctx.id)} : {}), title: typeof ctx.title === "string" ? ctx.title : "", text: ctx.text});
        }
        if (passages.length > 0) item.passages = passages;
    }

    const strategy = profileStrategy(profile);
    if (strategy.choiceTasks.has(task)) {
        const choices = r.choices as {text?: unknown, label?: unknown} | undefined;
        if (choices == null || !Array.isArray(choices.text) || !Array.isArray(choices.label) || choices.text.length !== choices.label.length) {
            return `${where}: an ${task} record needs "choices": {"text": [...], "label": [...]} of equal length`;
        }
        // As the reference: numeric labels become letters; a missing D is an empty choice.
        const byLetter = new Map<string, string>();
        choices.label.forEach((label, i) => byLetter.set(ARC_LABELS[String(label)] ?? String(label), String((choices.text as unknown[])[i])));
        item.choices = ["A", "B", "C", "D", ...(byLetter.has("E") && strategy.listedChoices === 5 ? ["E"] : [])].map((l) => byLetter.get(l) ?? "");
        const key = r.answerKey;
        if (key != null) item.golds = [strategy.goldKeyAsGiven ? String(key) : ARC_LABELS[String(key)] ?? String(key)];
    }

    item.golds ??= golds(r);
    if (Array.isArray(r.qa_pairs)) {
        item.qaPairs = (r.qa_pairs as {short_answers?: unknown}[]).map((pair) => ({
            short_answers: Array.isArray(pair?.short_answers) ? pair.short_answers.map(String) : []
        }));
    }
    return item;
}

function golds(r: Record<string, unknown>): string[] | undefined {
    // FlashRAG datasets: golden_answers.
    for (const field of ["answers", "golden_answers", "answer", "output", "possible_answers"]) {
        let v = r[field];
        if (v == null) continue;
        // PopQA's release stores possible_answers as a JSON-encoded list.
        if (typeof v === "string" && field === "possible_answers" && v.startsWith("[")) {
            try {
                v = JSON.parse(v);
            } catch {
                // a plain string after all
            }
        }
        if (typeof v === "string") return [v];
        if (typeof v === "number" || typeof v === "boolean") return [String(v)];
        if (Array.isArray(v)) return v.filter((x) => typeof x === "string" || typeof x === "number").map(String);
    }
    return undefined;
}

export interface EvalPromptOptions {
    task?: Task;
    profile?: Profile | ProfileStrategy;
    /** The long-form script's prompt (ASQA, FactScore) rather than the short-form one. */
    long?: boolean;
}

/**
 * The exact prompt string an evaluation record is answered with (before any passage), e.g.
 * `formatEvalPrompt({question: "Who...", choices: {...}, answerKey: "B"}, {task: "arc_c", profile})`.
 * A record that cannot be read is an error naming the problem.
 */
export function formatEvalPrompt(record: unknown, options: EvalPromptOptions = {}): string {
    const task = options.task ?? "none";
    const item = toEvalItem(record, "record", 0, task, options.profile);
    if (typeof item === "string") throw new SelfRagError(item, "INVALID_ARGUMENT");
    return formatPrompt(taskInstruction(task, item.question, item.choices, {profile: options.profile, long: options.long}));
}
