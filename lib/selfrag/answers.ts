import {REFLECTION_TOKENS, PAD_TOKEN} from "../engine/ReflectionTokens.js";
import {profileStrategy, type Profile, type ProfileStrategy} from "./profiles.js";
import type {Task} from "./prompts.js";

const REMOVED = [...REFLECTION_TOKENS.map((t) => t.text), PAD_TOKEN, "</s>", "<|endoftext|>"];

/**
 * `control_tokens` of the reference's utils.py, in its order: the short-form script removes these
 * one after the other, so the order matters (`"[Fully [Retrieval]supported]"` gives
 * `"[Fully supported]"`), and `[Continue to Use Evidence]` and the padding token are not in it.
 */
export const REFERENCE_CONTROL_TOKENS = ["[Fully supported]", "[Partially supported]", "[No support / Contradictory]", "[No Retrieval]",
    "[Retrieval]", "[Irrelevant]", "[Relevant]", "<paragraph>", "</paragraph>", "[Utility:1]", "[Utility:2]", "[Utility:3]", "[Utility:4]",
    "[Utility:5]"] as const;

export interface PostProcessOptions {
    task?: Task;
    profile?: Profile | ProfileStrategy;
}

/**
 * The answer post-processing.
 * - default profile: every reflection token, the padding token, `</s>`, `<|endoftext|>` and
 *   newlines removed, surrounding whitespace trimmed (SentencePiece leaves a space after a
 *   reflection token), and for PubHealth (`fever`) SUPPORTS / REFUTES become true / false.
 * - reference profile: the short-form script's `postprocess_answer_option_conditioned`, character for
 *   character: its control tokens removed in its order, then `</s>`, newlines and `<|endoftext|>`;
 *   nothing trimmed (the SUPPORTS / REFUTES mapping happens when scoring, for every task).
 */
export function postProcessAnswer(text: string, options: PostProcessOptions | Task = {}): string {
    const {task = "none", profile} = typeof options === "string" ? {task: options} : options;
    if (profileStrategy(profile).scriptPostProcessing) {
        let answer = text;
        for (const token of REFERENCE_CONTROL_TOKENS) answer = answer.split(token).join("");
        return answer.split("</s>").join("").split("\n").join("").split("<|endoftext|>").join("");
    }
    let answer = text;
    for (const token of REMOVED) answer = answer.split(token).join("");
    answer = answer.replace(/\n/g, "").trim();
    if (task === "fever") {
        if (answer === "SUPPORTS") return "true";
        if (answer === "REFUTES") return "false";
    }
    return answer;
}

/**
 * Closed-set vote (ARC, PubHealth): sum the candidates' scores per answer and return the answer
 * with the largest sum (ties: the answer seen first, as Python's stable sort in the script).
 * Default profile: answers that differ only in surrounding whitespace vote together;
 * reference profile: the keys are the answers as given (`"true"` and `" true"` are two answers).
 */
export function closedSetVote(candidates: readonly {answer: string, score: number}[], options: {profile?: Profile | ProfileStrategy} = {}):
    {answer: string, totals: Map<string, number>} {
    const totals = new Map<string, number>();
    const {voteKey} = profileStrategy(options.profile);
    for (const c of candidates) {
        const key = voteKey(c.answer);
        totals.set(key, (totals.get(key) ?? 0) + c.score);
    }
    let best = "";
    let bestTotal = -Infinity;
    for (const [answer, total] of totals) {
        if (total > bestTotal) {
            best = answer;
            bestTotal = total;
        }
    }
    return {answer: best, totals};
}
