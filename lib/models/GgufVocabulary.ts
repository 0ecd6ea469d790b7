// A small synchronous GGUF reader: the tokenizer vocabulary (`tokenizer.ggml.tokens`) and the
// tensor table's extent from a file's metadata, never the weights. The default-model lookup uses it, which is synchronous; `pull`
// and `models` verify with node-llama-cpp's `readGgufFileInfo` (see verifyModel.ts).
import fs from "node:fs";
import {SelfRagError} from "../errors.js";
import {ALIGNMENT_KEY, FileCursor, GGUF_MAGIC, Truncated, ValueType, skipValue, tensorBytes} from "../gguf/GgufReader.js";

export {GGML_TYPE_SIZES, tensorBytes} from "../gguf/GgufReader.js";

const TOKENS_KEY = "tokenizer.ggml.tokens";

export interface GgufSummary {
    /** `tokenizer.ggml.tokens` in id order, or undefined when the file has no tokenizer. */
    tokens?: string[];
    /** The file's size in bytes. */
    size: number;
    /** The size its tensor table needs (end of the last tensor's data). */
    expectedSize: number;
}

/**
 * A GGUF file's vocabulary (`tokenizer.ggml.tokens`) and the size its tensor table needs, read
 * synchronously from the metadata (never the weights). A file that is not GGUF or whose metadata
 * is cut short or malformed is an INVALID_GGUF SelfRagError naming the file; a missing file is
 * MODEL_NOT_FOUND. `size < expectedSize` means the tensor data is cut short.
 *
 * ```ts
 * const {tokens, size, expectedSize} = readGgufSummarySync("model.gguf");
 * ```
 */
export function readGgufSummarySync(file: string): GgufSummary {
    let fd: number;
    try {
        fd = fs.openSync(file, "r");
    } catch (error) {
        throw new SelfRagError(`model file not found: ${file}`, "MODEL_NOT_FOUND", {cause: error});
    }
    try {
        const size = fs.fstatSync(fd).size;
        const cursor = new FileCursor(fd, size);
        let magic: number;
        try {
            magic = cursor.u32();
        } catch {
            // Nothing lost: a file too short for the magic is refused just below as not a GGUF file.
            magic = -1;
        }
        if (magic !== GGUF_MAGIC) throw new SelfRagError(`${file} is not a GGUF file (no GGUF magic at its start)`, "INVALID_GGUF");
        const version = cursor.u32();
        if (version < 1 || version > 3) throw new SelfRagError(`${file}: unsupported GGUF version ${version}`, "INVALID_GGUF");
        const tensorCount = cursor.length(version);
        const kvCount = cursor.length(version);
        let tokens: string[] | undefined;
        let alignment = 32;
        for (let i = 0; i < kvCount; i++) {
            const key = cursor.string(version);
            const type = cursor.u32();
            if (key === TOKENS_KEY && type === ValueType.ARRAY) {
                const itemType = cursor.u32();
                if (itemType !== ValueType.STRING) throw new RangeError(`${TOKENS_KEY} is not an array of strings`);
                const count = cursor.length(version);
                tokens = new Array<string>(count);
                for (let t = 0; t < count; t++) tokens[t] = cursor.string(version);
            } else if (key === ALIGNMENT_KEY && type === ValueType.UINT32) {
                alignment = cursor.u32();
                if (alignment === 0) throw new RangeError("general.alignment is 0");
            } else {
                skipValue(cursor, type, version);
            }
        }
        let dataEnd = 0;
        for (let i = 0; i < tensorCount; i++) {
            cursor.string(version); // name
            const dimensionCount = cursor.u32();
            if (dimensionCount > 8) throw new RangeError(`a tensor with ${dimensionCount} dimensions`);
            const dimensions: number[] = [];
            for (let d = 0; d < dimensionCount; d++) dimensions.push(version === 1 ? cursor.u32() : cursor.u64());
            const ggmlType = cursor.u32();
            const offset = cursor.u64();
            dataEnd = Math.max(dataEnd, offset + tensorBytes(dimensions, ggmlType));
        }
        const dataStart = Math.ceil(cursor.offset / alignment) * alignment;
        return {tokens, size, expectedSize: dataStart + dataEnd};
    } catch (error) {
        if (error instanceof SelfRagError) throw error;
        const why = error instanceof Truncated ? "its metadata is cut short (truncated download?)" : `malformed metadata (${(error as Error).message})`;
        throw new SelfRagError(`${file} is not a valid GGUF file: ${why}`, "INVALID_GGUF", {cause: error});
    } finally {
        fs.closeSync(fd);
    }
}

/** The vocabulary of a GGUF file (see readGgufSummarySync); undefined when it has no tokenizer. */
export function readGgufTokensSync(file: string): string[] | undefined {
    return readGgufSummarySync(file).tokens;
}
