// JSON records from a file, streamed: one per line for JSONL (.jsonl, or anything not .json), or
// the elements of one array for a .json file (also `{"data": [...]}`, as some evaluation files
// are). Evaluation files and passage lists share this reader, so both report a bad record the
// same way: `file:line` for JSONL, `file record N` for a JSON array.
import fs from "node:fs";
import {MAX_LINE_BYTES, readLines, type ByteCounter} from "./retrieval/lineReader.js";

export type JsonRecord =
    | {kind: "record", value: unknown, line: number, where: string}
    | {kind: "malformed", line: number, message: string};

export function isJsonArrayFile(file: string): boolean {
    return /\.json(\.gz)?$/i.test(file);
}

export async function* readJsonRecords(file: string, counter: ByteCounter = {bytes: 0}): AsyncGenerator<JsonRecord> {
    if (!isJsonArrayFile(file)) {
        for await (const line of readLines(file, counter)) {
            if (line.overlong) {
                yield {kind: "malformed", line: line.number, message: `${file}:${line.number}: line longer than ${MAX_LINE_BYTES} bytes`};
                continue;
            }
            if (line.text.trim() === "") continue;
            try {
                yield {kind: "record", value: JSON.parse(line.text), line: line.number, where: `${file}:${line.number}`};
            } catch (error) {
                yield {kind: "malformed", line: line.number, message: `${file}:${line.number}: not valid JSON (${(error as Error).message})`};
            }
        }
        return;
    }
    // A .json evaluation file is one document (the largest, ASQA's, is tens of MB): parse it whole.
    let records: unknown;
    try {
        const text = fs.readFileSync(file, "utf8");
        counter.bytes = fs.statSync(file).size;
        const parsed = JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text) as unknown;
        records = Array.isArray(parsed) ? parsed : (parsed as {data?: unknown})?.data;
    } catch (error) {
        yield {kind: "malformed", line: 1, message: `${file}: not valid JSON (${(error as Error).message})`};
        return;
    }
    if (!Array.isArray(records)) {
        yield {kind: "malformed", line: 1, message: `${file}: expected a JSON array of records (or {"data": [...]})`};
        return;
    }
    for (let r = 0; r < records.length; r++) yield {kind: "record", value: records[r], line: r + 1, where: `${file} record ${r + 1}`};
}
