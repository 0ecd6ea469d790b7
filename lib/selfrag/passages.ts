import fs from "node:fs";
import readline from "node:readline";
import {SelfRagError} from "../errors.js";
import type {Passage} from "./prompts.js";

/**
 * Reads a passages JSONL file (`{"id", "title", "text"}` per line). A malformed line is an error
 * that names the file, the line and the field; an empty file is an error too.
 */
export async function readPassagesJsonl(file: string): Promise<Passage[]> {
    if (!fs.existsSync(file)) throw new SelfRagError(`passages file not found: ${file}`, "INVALID_ARGUMENT");
    const passages: Passage[] = [];
    const lines = readline.createInterface({input: fs.createReadStream(file, "utf8"), crlfDelay: Infinity});
    let lineNumber = 0;
    for await (const line of lines) {
        lineNumber++;
        if (line.trim() === "") continue;
        passages.push(parsePassageLine(line, `${file}:${lineNumber}`));
    }
    if (passages.length === 0) throw new SelfRagError(`passages file ${file} holds no passages`, "EMPTY_PASSAGES");
    return passages;
}

export function parsePassageLine(line: string, where: string): Passage {
    let value: unknown;
    try {
        value = JSON.parse(line);
    } catch (error) {
        throw new SelfRagError(`${where}: not valid JSON (${(error as Error).message})`, "INVALID_JSONL");
    }
    if (value == null || typeof value !== "object" || Array.isArray(value)) {
        throw new SelfRagError(`${where}: expected an object {"id", "title", "text"}`, "INVALID_JSONL");
    }
    const record = value as Record<string, unknown>;
    if (typeof record.text !== "string") {
        throw new SelfRagError(`${where}: field "text" must be a string (got ${typeof record.text})`, "INVALID_JSONL");
    }
    if (record.title != null && typeof record.title !== "string") {
        throw new SelfRagError(`${where}: field "title" must be a string (got ${typeof record.title})`, "INVALID_JSONL");
    }
    if (record.id != null && typeof record.id !== "string" && typeof record.id !== "number") {
        throw new SelfRagError(`${where}: field "id" must be a string or a number`, "INVALID_JSONL");
    }
    return {id: record.id == null ? undefined : String(record.id), title: (record.title as string | undefined) ?? "", text: record.text};
}
