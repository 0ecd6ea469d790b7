// What the search calibration queries with. Real queries are questions: short, and for E5/BGE-style
// embedders prefixed differently from passages, so measuring recall with passage vectors (as a
// build did at first) overstates it: a "gustave eiffel" query can miss at an ef where every
// held-out passage is found. The calibration therefore queries with question-like spans of the
// held-out passages, embedded as queries, or with the user's own questions; held-out passages are
// still measured, for comparison.
import fs from "node:fs";
import {SelfRagError} from "../errors.js";
import type {Passage} from "../selfrag/prompts.js";

/** Longest question-like span, in words. */
const MAX_WORDS = 12;

/**
 * A question-like query per passage: the first sentence of its text, at most 12 words (a shorter
 * text's first 12 words when the sentence has fewer than 3). Deterministic, so the same corpus
 * gives the same calibration.
 */
export function questionLikeQueries(passages: readonly Passage[]): string[] {
    return passages.map((p) => {
        const words = (text: string) => text.split(/\s+/).filter((w) => w !== "");
        const sentence = /^(.+?[.!?])(\s|$)/s.exec(p.text.trim())?.[1] ?? p.text;
        let chosen = words(sentence);
        if (chosen.length < 3) chosen = words(p.text);
        const span = chosen.slice(0, MAX_WORDS).join(" ");
        return span !== "" ? span : p.title;
    });
}

/**
 * Questions from a file: one per line, as plain text or as a JSON object with "question", "query"
 * or "text" (JSONL; the evaluation files' records work as they are). Empty lines are skipped; a
 * JSON line without one of those fields is an error naming its line.
 */
export function readCalibrationQuestions(file: string): string[] {
    if (!fs.existsSync(file)) throw new SelfRagError(`calibration questions file not found: ${file}`, "CORPUS_NOT_FOUND");
    const questions: string[] = [];
    fs.readFileSync(file, "utf8").split("\n").forEach((line, i) => {
        const trimmed = line.trim();
        if (trimmed === "") return;
        if (trimmed.startsWith("{")) {
            let record: Record<string, unknown>;
            try {
                record = JSON.parse(trimmed) as Record<string, unknown>;
            } catch (error) {
                throw new SelfRagError(`${file}:${i + 1}: not valid JSON (${(error as Error).message})`, "INVALID_JSONL");
            }
            const field = ["question", "query", "text"].find((f) => typeof record[f] === "string" && (record[f] as string).trim() !== "");
            if (field == null) throw new SelfRagError(`${file}:${i + 1}: expected a string "question", "query" or "text"`, "INVALID_JSONL");
            questions.push(record[field] as string);
        } else {
            questions.push(trimmed);
        }
    });
    if (questions.length === 0) throw new SelfRagError(`${file} holds no questions`, "EMPTY_CORPUS");
    return questions;
}
