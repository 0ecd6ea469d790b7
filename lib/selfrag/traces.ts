import fs from "node:fs";
import readline from "node:readline";
import {SelfRagError} from "../errors.js";
import type {Passage} from "./prompts.js";
import {REFLECTION_COUNT} from "../engine/ReflectionTokens.js";
import type {CritiqueScore, CritiqueWeights, ScoredSegment, SegmentScorer} from "./SegmentScorer.js";

/**
 * One question's generation record (JSONL, one per line): everything the critique scores are
 * computed from, so weights can be re-tuned offline with `selfrag rerank`.
 */
export interface TraceRecord {
    id: string;
    /** The question's text (traces written before it was recorded have none). */
    question?: string;
    /** The 15 reflection token ids, in the order of the Self-RAG table. */
    reflection_ids: number[];
    candidates: TraceCandidate[];
}

export interface TraceCandidate {
    tokens: number[];
    logprobs: number[];
    /** One row of 15 log-probs per generated position. */
    reflection: number[][];
    text?: string;
    passage?: Passage;
}

export function traceCandidate(segment: ScoredSegment, text?: string, passage?: Passage): TraceCandidate {
    const reflection: number[][] = [];
    for (let i = 0; i < segment.tokens.length; i++) {
        reflection.push(Array.from(segment.reflection.subarray(i * REFLECTION_COUNT, (i + 1) * REFLECTION_COUNT)));
    }
    return {tokens: Array.from(segment.tokens), logprobs: Array.from(segment.logprobs), reflection, text, passage};
}

/** Checks a parsed trace line; errors name the file, line, candidate and field. */
export function validateTrace(value: unknown, where: string): TraceRecord {
    const fail = (message: string): never => {
        throw new SelfRagError(`${where}: ${message}`, "INVALID_TRACE");
    };
    if (value == null || typeof value !== "object") fail("expected a trace object");
    const record = value as Partial<TraceRecord>;
    if (typeof record.id !== "string" && typeof record.id !== "number") fail(`field "id" must be a string`);
    if (record.question != null && typeof record.question !== "string") fail(`field "question" must be a string when given`);
    if (!Array.isArray(record.reflection_ids) || record.reflection_ids.length !== REFLECTION_COUNT ||
        !record.reflection_ids.every((id) => Number.isInteger(id))) {
        fail(`field "reflection_ids" must hold ${REFLECTION_COUNT} token ids`);
    }
    if (!Array.isArray(record.candidates)) fail(`field "candidates" must be an array`);
    record.candidates!.forEach((c, i) => {
        if (c == null || !Array.isArray(c.tokens) || !Array.isArray(c.logprobs) || !Array.isArray(c.reflection)) {
            fail(`candidate ${i}: "tokens", "logprobs" and "reflection" must be arrays`);
        }
        if (c.logprobs.length !== c.tokens.length || c.reflection.length !== c.tokens.length) {
            fail(`candidate ${i}: ${c.tokens.length} tokens but ${c.logprobs.length} log-probs and ${c.reflection.length} reflection rows`);
        }
        c.reflection.forEach((row, p) => {
            if (!Array.isArray(row) || row.length !== REFLECTION_COUNT) {
                fail(`candidate ${i}, position ${p}: reflection row has ${Array.isArray(row) ? row.length : "no"} values, expected ${REFLECTION_COUNT}`);
            }
            if (!row.every((v) => typeof v === "number" || v === null)) fail(`candidate ${i}, position ${p}: reflection values must be numbers`);
        });
    });
    return {...record, id: String(record.id)} as TraceRecord;
}

/** Streams a traces JSONL file: {line, record} per non-empty line, validated. */
export async function* readTraces(file: string): AsyncGenerator<{line: number, record: TraceRecord}> {
    if (!fs.existsSync(file)) throw new SelfRagError(`traces file not found: ${file}`, "INVALID_ARGUMENT");
    const lines = readline.createInterface({input: fs.createReadStream(file, "utf8"), crlfDelay: Infinity});
    let line = 0;
    for await (const text of lines) {
        line++;
        if (text.trim() === "") continue;
        let value: unknown;
        try {
            value = JSON.parse(text);
        } catch (error) {
            throw new SelfRagError(`${file}:${line}: not valid JSON (${(error as Error).message})`, "INVALID_JSONL");
        }
        yield {line, record: validateTrace(value, `${file}:${line}`)};
    }
}

/** JSON turns -Infinity into null; read it back as the log-prob it was. */
function logprob(v: number | null): number {
    return v == null ? -Infinity : v;
}

export function traceSegments(record: TraceRecord): ScoredSegment[] {
    return record.candidates.map((c) => ({
        tokens: Int32Array.from(c.tokens),
        logprobs: Float32Array.from(c.logprobs, logprob),
        reflection: Float32Array.from(c.reflection.flat(), logprob)
    }));
}

export interface RerankedTrace {
    id: string;
    best: number;
    candidates: CritiqueScore[];
}

/** Re-scores a saved trace with other weights; `best` is the highest-scoring candidate (first on ties). */
export function rerankTrace(record: TraceRecord, scorer: SegmentScorer, weights: CritiqueWeights): RerankedTrace {
    const scores = scorer.score(traceSegments(record), weights, Int32Array.from(record.reflection_ids));
    let best = -1;
    scores.forEach((s, i) => {
        if (best < 0 || s.score > scores[best].score) best = i;
    });
    return {id: record.id, best, candidates: scores};
}
