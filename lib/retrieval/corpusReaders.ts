// Streaming readers for the corpora an index is built from. Each yields passages one by one with
// the line they came from, and reports a malformed line as an item of its own (with file:line and
// the reason) instead of throwing: the builder decides whether to skip it or, with --strict, stop.
import crypto from "node:crypto";
import fs from "node:fs";
import {readJsonRecords} from "../jsonRecords.js";
import {SelfRagError} from "../errors.js";
import {parsePassageLine} from "../selfrag/passages.js";
import type {Passage} from "../selfrag/prompts.js";
import {MAX_LINE_BYTES, readLines, type ByteCounter, type Line} from "./lineReader.js";

/**
 * - `tsv`: DPR's psgs_w100.tsv, a header `id\ttext\ttitle` then one passage per line; fields may be
 *   quoted with `""` escapes, as Python's csv module writes them.
 * - `jsonl`: one `{"id", "title", "text"}` per line (other fields are kept as metadata).
 * - `ctxs`: Self-RAG / ALCE evaluation files whose records carry pre-retrieved passages in
 *   `ctxs` (or `docs`): a JSON array or JSONL; passages seen before (same id, or same title and
 *   text) are skipped as duplicates.
 * - `pyserini`: FlashRAG's and Pyserini's JSONL collections, `{"id", "contents"}` with the title
 *   as a quoted first line of `contents` (`"\"Title\"\ntext"`); `contents` without such a line is
 *   the text, with no title.
 * - `beir`: BEIR's corpus.jsonl, `{"_id", "title", "text", "metadata"?}`.
 */
export type CorpusFormat = "tsv" | "jsonl" | "ctxs" | "pyserini" | "beir";
export const CORPUS_FORMATS: readonly CorpusFormat[] = ["tsv", "jsonl", "ctxs", "pyserini", "beir"];

export type CorpusItem =
    | {kind: "passage", passage: Passage, metadata?: Record<string, unknown>, line: number}
    | {kind: "malformed", line: number, /** "file:line: reason" */ message: string}
    | {kind: "duplicate", line: number};

/**
 * One pass over a corpus file. `items()` can be called again for another pass (the idf count and
 * the build each read the file).
 *
 * ```ts
 * const corpus = await openCorpus("psgs_w100.tsv");
 * for await (const item of corpus.items()) if (item.kind === "passage") console.log(item.passage.title);
 * ```
 */
export interface Corpus {
    file: string;
    format: CorpusFormat;
    /** Size of the file in bytes: with `bytesRead` of a pass it gives the progress fraction. */
    totalBytes: number;
    items(counter?: ByteCounter): AsyncGenerator<CorpusItem>;
}

/** Opens a corpus, taking the format from `format` or else from the file name and first record. */
export async function openCorpus(file: string, options: {format?: CorpusFormat} = {}): Promise<Corpus> {
    let stat: fs.Stats;
    try {
        stat = fs.statSync(file);
    } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        // Only a missing file is "not found"; anything else (no permission ...) says what it was.
        if (code === "ENOENT" || code === "ENOTDIR") throw new SelfRagError(`corpus file not found: ${file}`, "CORPUS_NOT_FOUND");
        throw new SelfRagError(`cannot read corpus file ${file}: ${(error as Error).message}`, "CORPUS_NOT_FOUND", {cause: error});
    }
    if (!stat.isFile()) throw new SelfRagError(`corpus ${file} is not a file`, "CORPUS_NOT_FOUND");
    if (options.format != null && !CORPUS_FORMATS.includes(options.format)) {
        throw new SelfRagError(`unknown corpus format "${String(options.format)}" (expected ${CORPUS_FORMATS.join(", ")})`, "INVALID_ARGUMENT");
    }
    const format = options.format ?? await detectFormat(file);
    const read = {tsv: readTsv, jsonl: readJsonl, ctxs: readCtxs, pyserini: readPyserini, beir: readBeir}[format];
    return {file, format, totalBytes: stat.size, items: (counter?: ByteCounter) => read(file, counter ?? {bytes: 0})};
}

async function detectFormat(file: string): Promise<CorpusFormat> {
    const name = file.toLowerCase().replace(/\.gz$/, "");
    if (name.endsWith(".tsv")) return "tsv";
    if (name.endsWith(".json")) return "ctxs";
    if (name.endsWith(".jsonl") || name.endsWith(".ndjson")) {
        // The same extension holds plain passages and evaluation records: look at the first record.
        for await (const line of readLines(file)) {
            if (line.text.trim() === "") continue;
            try {
                const value = JSON.parse(line.text) as Record<string, unknown>;
                if (Array.isArray(value?.ctxs) || Array.isArray(value?.docs)) return "ctxs";
                if (typeof value?.contents === "string" && value.text === undefined) return "pyserini";
                if (value?._id !== undefined && value.id === undefined) return "beir";
                return "jsonl";
            } catch {
                return "jsonl"; // the build reports the bad line with its number
            }
        }
        return "jsonl";
    }
    throw new SelfRagError(`cannot tell the format of ${file} from its name; pass --format ${CORPUS_FORMATS.join("|")}`, "INVALID_ARGUMENT");
}

function overlong(file: string, line: Line): CorpusItem {
    return {kind: "malformed", line: line.number, message: `${file}:${line.number}: line longer than ${MAX_LINE_BYTES} bytes`};
}

// ---------------------------------------------------------------------------------------------
// DPR TSV
// ---------------------------------------------------------------------------------------------

/** Column positions of id, text and title. */
interface TsvColumns {
    id: number;
    text: number;
    title: number;
    count: number;
}

const DPR_COLUMNS: TsvColumns = {id: 0, text: 1, title: 2, count: 3};

async function* readTsv(file: string, counter: ByteCounter): AsyncGenerator<CorpusItem> {
    let columns: TsvColumns | undefined;
    for await (const line of readLines(file, counter)) {
        if (line.overlong) {
            yield overlong(file, line);
            continue;
        }
        if (line.text.trim() === "") continue;
        const fields = splitTsvLine(line.text);
        if (columns == null) {
            // The first line is a header when it names the columns (DPR's `id\ttext\ttitle`);
            // otherwise the file is taken to be in DPR's column order and the line is a passage.
            const header = typeof fields === "string" ? undefined : headerColumns(fields);
            columns = header ?? DPR_COLUMNS;
            if (header != null) continue;
        }
        if (typeof fields === "string") {
            yield {kind: "malformed", line: line.number, message: `${file}:${line.number}: ${fields}`};
            continue;
        }
        if (fields.length !== columns.count) {
            yield {kind: "malformed", line: line.number, message: `${file}:${line.number}: expected ${columns.count} tab-separated ` +
                `fields (id, text, title), found ${fields.length}`};
            continue;
        }
        const text = fields[columns.text];
        if (text.trim() === "") {
            yield {kind: "malformed", line: line.number, message: `${file}:${line.number}: field "text" is empty`};
            continue;
        }
        const id = columns.id >= 0 && fields[columns.id] !== "" ? fields[columns.id] : undefined;
        const title = columns.title >= 0 ? fields[columns.title] : "";
        yield {kind: "passage", passage: {id, title, text}, line: line.number};
    }
}

function headerColumns(fields: string[]): TsvColumns | undefined {
    const names = fields.map((f) => f.trim().toLowerCase());
    const text = names.indexOf("text");
    if (text < 0 || !names.includes("id")) return undefined;
    return {id: names.indexOf("id"), text, title: names.indexOf("title"), count: names.length};
}

/**
 * Splits a line on tabs; a field that starts with `"` runs to the next lone `"`, with `""` standing
 * for one quote (csv.QUOTE_MINIMAL). Returns the reason as a string when the quoting is broken.
 */
export function splitTsvLine(line: string): string[] | string {
    const fields: string[] = [];
    let i = 0;
    for (;;) {
        if (line.charCodeAt(i) === 34 /* " */) {
            let value = "";
            let from = i + 1;
            for (;;) {
                const quote = line.indexOf("\"", from);
                if (quote < 0) return `unterminated quoted field ${fields.length + 1} (opened at column ${i + 1})`;
                value += line.slice(from, quote);
                if (line.charCodeAt(quote + 1) === 34) {
                    value += "\"";
                    from = quote + 2;
                    continue;
                }
                i = quote + 1;
                break;
            }
            fields.push(value);
            if (i === line.length) return fields;
            if (line.charCodeAt(i) !== 9 /* \t */) return `unexpected character after the closing quote of field ${fields.length} (column ${i + 1})`;
            i++;
        } else {
            const tab = line.indexOf("\t", i);
            if (tab < 0) {
                fields.push(line.slice(i));
                return fields;
            }
            fields.push(line.slice(i, tab));
            i = tab + 1;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// JSONL passages
// ---------------------------------------------------------------------------------------------

const PASSAGE_FIELDS = new Set(["id", "title", "text"]);

async function* readJsonl(file: string, counter: ByteCounter): AsyncGenerator<CorpusItem> {
    for await (const line of readLines(file, counter)) {
        if (line.overlong) {
            yield overlong(file, line);
            continue;
        }
        if (line.text.trim() === "") continue;
        let passage: Passage;
        try {
            // The same validation as `ask --passages`, so both accept exactly the same lines.
            passage = parsePassageLine(line.text, `${file}:${line.number}`);
        } catch (error) {
            if (!(error instanceof SelfRagError)) throw error;
            yield {kind: "malformed", line: line.number, message: error.message};
            continue;
        }
        if (passage.text.trim() === "") {
            yield {kind: "malformed", line: line.number, message: `${file}:${line.number}: field "text" is empty`};
            continue;
        }
        yield {kind: "passage", passage, metadata: extraFields(JSON.parse(line.text) as Record<string, unknown>, PASSAGE_FIELDS),
            line: line.number};
    }
}

/** Fields besides the passage's own, kept as metadata; undefined when there are none. */
function extraFields(record: Record<string, unknown>, skip: ReadonlySet<string>): Record<string, unknown> | undefined {
    let extra: Record<string, unknown> | undefined;
    for (const [key, value] of Object.entries(record)) {
        if (skip.has(key)) continue;
        (extra ??= {})[key] = value;
    }
    return extra;
}

// ---------------------------------------------------------------------------------------------
// FlashRAG / Pyserini and BEIR collections
// ---------------------------------------------------------------------------------------------

/**
 * One passage per JSON line, through `toPassage` (which returns the passage or the reason the
 * record is not one); blank lines skipped, overlong and non-object lines reported by line.
 */
async function* readObjectLines(file: string, counter: ByteCounter,
    toPassage: (r: Record<string, unknown>) => {passage: Passage, metadata?: Record<string, unknown>} | string): AsyncGenerator<CorpusItem> {
    for await (const line of readLines(file, counter)) {
        if (line.overlong) {
            yield overlong(file, line);
            continue;
        }
        if (line.text.trim() === "") continue;
        const at = `${file}:${line.number}`;
        let value: unknown;
        try {
            value = JSON.parse(line.text);
        } catch (error) {
            yield {kind: "malformed", line: line.number, message: `${at}: not valid JSON (${(error as Error).message})`};
            continue;
        }
        if (value == null || typeof value !== "object" || Array.isArray(value)) {
            yield {kind: "malformed", line: line.number, message: `${at}: expected a JSON object`};
            continue;
        }
        const result = toPassage(value as Record<string, unknown>);
        if (typeof result === "string") yield {kind: "malformed", line: line.number, message: `${at}: ${result}`};
        else yield {kind: "passage", passage: result.passage, metadata: result.metadata, line: line.number};
    }
}

function idOf(value: unknown): string | undefined | false {
    if (value == null) return undefined;
    return typeof value === "string" || typeof value === "number" ? String(value) : false;
}

/**
 * FlashRAG's `contents`: `"Title"\ntext`. The first line is the title when it is a quoted string
 * (JSON-style escapes allowed); otherwise the whole of `contents` is the text.
 */
export function splitContents(contents: string): {title: string, text: string} {
    const newline = contents.indexOf("\n");
    if (newline > 0) {
        const first = contents.slice(0, newline).trim();
        if (first.length >= 2 && first.startsWith("\"") && first.endsWith("\"")) {
            let title: string;
            try {
                title = JSON.parse(first) as string;
            } catch {
                // Nothing lost: a quoted line that is not valid JSON is still a title, taken between its quotes.
                title = first.slice(1, -1);
            }
            return {title, text: contents.slice(newline + 1)};
        }
    }
    return {title: "", text: contents};
}

function readPyserini(file: string, counter: ByteCounter): AsyncGenerator<CorpusItem> {
    return readObjectLines(file, counter, (r) => {
        const id = idOf(r.id);
        if (id === false) return `field "id" must be a string or a number`;
        if (typeof r.contents !== "string" || r.contents.trim() === "") return `field "contents" must be a non-empty string (got ${typeof r.contents})`;
        const {title, text} = splitContents(r.contents);
        if (text.trim() === "") return `"contents" has a title line but no text`;
        return {passage: {id, title, text}, metadata: extraFields(r, new Set(["id", "contents"]))};
    });
}

function readBeir(file: string, counter: ByteCounter): AsyncGenerator<CorpusItem> {
    return readObjectLines(file, counter, (r) => {
        const id = idOf(r._id);
        if (id === false || id === undefined) return `field "_id" must be a string or a number`;
        if (typeof r.text !== "string" || r.text.trim() === "") return `field "text" must be a non-empty string (got ${typeof r.text})`;
        if (r.title != null && typeof r.title !== "string") return `field "title" must be a string (got ${typeof r.title})`;
        return {passage: {id, title: (r.title as string | undefined) ?? "", text: r.text}, metadata: extraFields(r, new Set(["_id", "title", "text"]))};
    });
}

// ---------------------------------------------------------------------------------------------
// Evaluation files with pre-retrieved passages (ctxs / docs)
// ---------------------------------------------------------------------------------------------

/** `score` and `hasanswer` describe one question's retrieval, not the passage: not kept. */
const CTX_SKIPPED_FIELDS = new Set(["id", "title", "text", "score", "hasanswer"]);

async function* readCtxs(file: string, counter: ByteCounter): AsyncGenerator<CorpusItem> {
    const seen = new Set<string>();
    for await (const record of readJsonRecords(file, counter)) {
        if (record.kind === "malformed") yield record;
        else yield* recordPassages(record.value, record.where, record.line, seen);
    }
}

function* recordPassages(record: unknown, where: string, line: number, seen: Set<string>): Generator<CorpusItem> {
    const r = record as Record<string, unknown> | null;
    const list = r?.ctxs ?? r?.docs;
    if (r == null || typeof r !== "object" || !Array.isArray(list)) {
        yield {kind: "malformed", line, message: `${where}: expected a record with a "ctxs" (or "docs") array of passages`};
        return;
    }
    const field = r.ctxs != null ? "ctxs" : "docs";
    for (let i = 0; i < list.length; i++) {
        const ctx = list[i] as Record<string, unknown> | null;
        const at = `${where}: ${field}[${i}]`;
        if (ctx == null || typeof ctx !== "object" || Array.isArray(ctx)) {
            yield {kind: "malformed", line, message: `${at}: expected an object {"id", "title", "text"}`};
            continue;
        }
        if (typeof ctx.text !== "string" || ctx.text.trim() === "") {
            yield {kind: "malformed", line, message: `${at}: field "text" must be a non-empty string (got ${typeof ctx.text})`};
            continue;
        }
        if (ctx.title != null && typeof ctx.title !== "string") {
            yield {kind: "malformed", line, message: `${at}: field "title" must be a string (got ${typeof ctx.title})`};
            continue;
        }
        if (ctx.id != null && typeof ctx.id !== "string" && typeof ctx.id !== "number") {
            yield {kind: "malformed", line, message: `${at}: field "id" must be a string or a number`};
            continue;
        }
        const passage: Passage = {id: ctx.id == null ? undefined : String(ctx.id), title: (ctx.title as string | undefined) ?? "", text: ctx.text};
        const key = passage.id != null ? `id:${passage.id}`
            : `sha1:${crypto.createHash("sha1").update(passage.title).update("\0").update(passage.text).digest("base64")}`;
        if (seen.has(key)) {
            yield {kind: "duplicate", line};
            continue;
        }
        seen.add(key);
        yield {kind: "passage", passage, metadata: extraFields(ctx, CTX_SKIPPED_FIELDS), line};
    }
}
