import {REFLECTION_TOKENS, PAD_TOKEN} from "../engine/ReflectionTokens.js";
import type {Task} from "./prompts.js";

const REMOVED = [...REFLECTION_TOKENS.map((t) => t.text), PAD_TOKEN, "</s>", "<|endoftext|>"];

/**
 * The reference's answer post-processing: reflection tokens, `</s>` and newlines removed;
 * for PubHealth (`fever`) SUPPORTS / REFUTES become true / false. Surrounding whitespace is also
 * trimmed (SentencePiece leaves a space after a reflection token), so exact-match metrics work.
 */
export function postProcessAnswer(text: string, task: Task = "none"): string {
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
 * Closed-set vote (ARC, PubHealth): sum the candidates' scores per post-processed answer and
 * return the answer with the largest sum (ties: the answer seen first).
 */
export function closedSetVote(candidates: readonly {answer: string, score: number}[]): {answer: string, totals: Map<string, number>} {
    const totals = new Map<string, number>();
    for (const c of candidates) totals.set(c.answer, (totals.get(c.answer) ?? 0) + c.score);
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
