/** Self-RAG prompt construction (docs/self-rag.md, "Prompts"), as the reference scripts build it. */
import {PROFILE_STRATEGIES, profileStrategy, type Profile, type ProfileStrategy} from "./profiles.js";

export interface Passage {
    id?: string;
    title: string;
    text: string;
}

/** Task instructions of the reference `TASK_INST` table (retrieval_lm/utils.py). */
export const TASK_INSTRUCTIONS = {
    wow: "Given a chat history separated by new lines, generates an informative, knowledgeable and engaging response. ",
    fever: "Is the following statement correct or not? Say true if it's correct; otherwise say false.",
    eli5: "Provide a paragraph-length response using simple words to answer the following question.",
    obqa: "Given four answer candidates, A, B, C and D, choose the best answer choice.",
    arc_easy: "Given four answer candidates, A, B, C and D, choose the best answer choice.",
    arc_c: "Given four answer candidates, A, B, C and D, choose the best answer choice.",
    trex: "Given the input format 'Subject Entity [SEP] Relationship Type,' predict the target entity.",
    asqa: "Answer the following question. The question may be ambiguous and have multiple correct answers, and in that case, you have to provide a long-form answer including all correct answers."
} as const;

/** "factscore": the long-form script's FactScore task, whose prompt is the record's input as is. */
export type Task = keyof typeof TASK_INSTRUCTIONS | "popqa" | "triviaqa" | "factscore" | "none";

export const TASKS: readonly Task[] = [...Object.keys(TASK_INSTRUCTIONS) as (keyof typeof TASK_INSTRUCTIONS)[], "popqa", "triviaqa", "factscore", "none"];

/** Tasks whose answers come from a closed set and are decided by a score vote (default profile; see ProfileStrategy.closedSetTasks). */
export const CLOSED_SET_TASKS: ReadonlySet<Task> = PROFILE_STRATEGIES.default.closedSetTasks;

/** The short-form script votes for `fever` and `arc_c` only (`closed=args.task in ["fever", "arc_c"]`). */
export const REFERENCE_CLOSED_SET_TASKS: ReadonlySet<Task> = PROFILE_STRATEGIES.reference.closedSetTasks;

export interface InstructionOptions {
    /** The reference profile: the scripts' strings (see `Profile`). */
    profile?: Profile | ProfileStrategy;
    /** The long-form script's prompt (`run_long_form_static.py`) rather than the short-form one. */
    long?: boolean;
}

/** `### Instruction:\n{instruction}\n\n[### Input:\n{input}\n\n]### Response:\n` */
export function formatPrompt(instruction: string, input?: string): string {
    return input != null && input !== ""
        ? `### Instruction:\n${instruction}\n\n### Input:\n${input}\n\n### Response:\n`
        : `### Instruction:\n${instruction}\n\n### Response:\n`;
}

/** `[Retrieval]<paragraph>{title}\n{text}</paragraph>`, appended after the response header. */
export function formatPassage(passage: Passage): string {
    return `[Retrieval]<paragraph>${passage.title}\n${passage.text}</paragraph>`;
}

/**
 * The instruction for a question of a task, as the reference's preprocessing builds it: ARC-style
 * tasks get their choices appended as `\nA: ...\nB: ...`; other tasks with an instruction get it
 * prefixed with the reference's `"\n\n## Input:\n\n"` separator.
 *
 * Under the reference profile, exactly the scripts' strings: the long-form script joins the ASQA
 * / ELI5 instruction without the blank line (`"...answers.## Input:\n\nQ"`); the short-form
 * script builds choices for `arc_c` only, A to D (a fifth choice is dropped), and gives
 * `arc_easy` / `obqa` the plain `"\n\n## Input:\n\n"` form without choices.
 */
export function taskInstruction(task: Task, question: string, choices?: readonly string[], options: InstructionOptions = {}): string {
    const profile = profileStrategy(options.profile);
    const instruction = (TASK_INSTRUCTIONS as Record<string, string>)[task];
    if (profile.tightLongInstruction && options.long && (task === "asqa" || task === "eli5")) return `${instruction}## Input:\n\n${question}`;
    if (profile.choiceTasks.has(task)) {
        const labels = ["A", "B", "C", "D", "E"];
        const padded = [...(choices ?? [])];
        while (padded.length < 4) padded.push("");
        const listed = padded.slice(0, profile.listedChoices).map((c, i) => `\n${labels[i]}: ${c}`).join("");
        return `${instruction}\n\n### Input:\n${question}${listed}`;
    }
    return instruction != null ? `${instruction}\n\n## Input:\n\n${question}` : question;
}
