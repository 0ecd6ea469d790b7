import fs from "node:fs";
import {Transform} from "node:stream";
import zlib from "node:zlib";
import {SelfRagError} from "../errors.js";

export interface Line {
    /** 1-based, as editors and error messages count. */
    number: number;
    text: string;
    /** The line was longer than the limit; `text` is empty and the line should be reported. */
    overlong?: boolean;
}

/** Bytes of the file consumed so far (compressed bytes for .gz), for progress and ETA. */
export interface ByteCounter {
    bytes: number;
}

/** A corrupt file can lack newlines for gigabytes; such a "line" is reported, never buffered whole. */
export const MAX_LINE_BYTES = 16 * 1024 * 1024;
const CHUNK_BYTES = 1024 * 1024;

/**
 * Streams the lines of a text file (gzip-compressed when it ends in .gz) in constant memory,
 * counting the bytes read so callers can show progress on multi-gigabyte corpora. Handles \n and
 * \r\n endings and a UTF-8 byte order mark.
 */
export async function* readLines(file: string, counter: ByteCounter = {bytes: 0}): AsyncGenerator<Line> {
    const raw = fs.createReadStream(file, {highWaterMark: CHUNK_BYTES});
    const counting = new Transform({
        transform(chunk: Buffer, _encoding, done) {
            counter.bytes += chunk.length;
            done(null, chunk);
        }
    });
    const source = file.endsWith(".gz") ? raw.pipe(counting).pipe(zlib.createGunzip()) : raw.pipe(counting);
    raw.on("error", (error) => source.destroy(error));
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    let overlong = false;
    let number = 0;
    const take = (tail: Buffer): Line => {
        number++;
        if (overlong) {
            overlong = false;
            pending = [];
            pendingBytes = 0;
            return {number, text: "", overlong: true};
        }
        const bytes = pending.length === 0 ? tail : Buffer.concat([...pending, tail]);
        pending = [];
        pendingBytes = 0;
        let end = bytes.length;
        if (end > 0 && bytes[end - 1] === 13) end--; // \r of a \r\n ending
        let text = bytes.toString("utf8", 0, end);
        if (number === 1 && text.charCodeAt(0) === 0xfeff) text = text.slice(1);
        return {number, text};
    };
    try {
        for await (const chunk of source as AsyncIterable<Buffer>) {
            let start = 0;
            for (let newline = chunk.indexOf(10, start); newline >= 0; newline = chunk.indexOf(10, start)) {
                yield take(chunk.subarray(start, newline));
                start = newline + 1;
            }
            if (start < chunk.length && !overlong) {
                pending.push(chunk.subarray(start));
                pendingBytes += chunk.length - start;
                if (pendingBytes > MAX_LINE_BYTES) {
                    overlong = true;
                    pending = [];
                    pendingBytes = 0;
                }
            }
        }
        if (pendingBytes > 0 || overlong) yield take(Buffer.alloc(0));
    } catch (error) {
        if (error instanceof SelfRagError) throw error;
        // EACCES, EISDIR, a .gz that is not gzip ("incorrect header check"), a truncated .gz, ...
        throw new SelfRagError(`cannot read ${file} after line ${number}: ${(error as Error).message}`, "CORPUS_READ_FAILED", {cause: error});
    } finally {
        // An early `break` by the caller (the idf pass reads only a sample) must close the file.
        raw.destroy();
        source.destroy();
    }
}
