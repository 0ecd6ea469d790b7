// A small synchronous GGUF reader: the tokenizer vocabulary (`tokenizer.ggml.tokens`) and the
// tensor table's extent from a file's metadata, never the weights. The default-model lookup uses it, which is synchronous; `pull`
// and `models` verify with node-llama-cpp's `readGgufFileInfo` (see verifyModel.ts).
import fs from "node:fs";
import {SelfRagError} from "../errors.js";

const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian uint32
const TOKENS_KEY = "tokenizer.ggml.tokens";
const ALIGNMENT_KEY = "general.alignment";

const enum ValueType {
    UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7,
    STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12
}

const FIXED_SIZE: Record<number, number> = {
    [ValueType.UINT8]: 1, [ValueType.INT8]: 1, [ValueType.BOOL]: 1, [ValueType.UINT16]: 2, [ValueType.INT16]: 2,
    [ValueType.UINT32]: 4, [ValueType.INT32]: 4, [ValueType.FLOAT32]: 4,
    [ValueType.UINT64]: 8, [ValueType.INT64]: 8, [ValueType.FLOAT64]: 8
};

/** Upper bound on any one string or array length: a larger value means a corrupt file, not a big vocabulary. */
const MAX_LENGTH = 2 ** 31;

class Truncated extends Error {}

/** Sequential reads through a window of the file (metadata only: never the tensor data). */
class FileCursor {
    private buffer = Buffer.alloc(0);
    private bufferStart = 0;
    private position = 0;

    public constructor(private readonly fd: number, private readonly size: number) {}

    private ensure(n: number): number {
        const offset = this.position - this.bufferStart;
        if (offset + n <= this.buffer.length) return offset;
        if (this.position + n > this.size) throw new Truncated();
        const length = Math.min(Math.max(n, 1 << 20), this.size - this.position);
        const buffer = Buffer.allocUnsafe(length);
        let read = 0;
        while (read < length) {
            const got = fs.readSync(this.fd, buffer, read, length - read, this.position + read);
            if (got === 0) throw new Truncated();
            read += got;
        }
        this.buffer = buffer;
        this.bufferStart = this.position;
        return 0;
    }

    /** Bytes read so far. */
    public get offset(): number {
        return this.position;
    }

    public u32(): number {
        const at = this.ensure(4);
        this.position += 4;
        return this.buffer.readUInt32LE(at);
    }

    public u64(): number {
        const at = this.ensure(8);
        this.position += 8;
        const value = this.buffer.readBigUInt64LE(at);
        if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new RangeError(`length ${value} out of range`);
        return Number(value);
    }

    public length(version: number): number {
        const n = version === 1 ? this.u32() : this.u64();
        if (n > MAX_LENGTH) throw new RangeError(`length ${n} out of range`);
        return n;
    }

    public string(version: number): string {
        const n = this.length(version);
        const at = this.ensure(n);
        this.position += n;
        return this.buffer.toString("utf8", at, at + n);
    }

    public skip(n: number): void {
        if (this.position + n > this.size) throw new Truncated();
        this.position += n;
    }
}

function skipValue(cursor: FileCursor, type: number, version: number): void {
    if (type === ValueType.STRING) {
        cursor.skip(cursor.length(version));
    } else if (type === ValueType.ARRAY) {
        const itemType = cursor.u32();
        const count = cursor.length(version);
        const fixed = FIXED_SIZE[itemType];
        if (fixed != null) cursor.skip(fixed * count);
        else for (let i = 0; i < count; i++) skipValue(cursor, itemType, version);
    } else {
        const fixed = FIXED_SIZE[type];
        if (fixed == null) throw new RangeError(`unknown metadata value type ${type}`);
        cursor.skip(fixed);
    }
}

/** Block size and bytes per block of the ggml tensor types (ggml/src/ggml-common.h); other types are not size-checked. */
export const GGML_TYPE_SIZES: Readonly<Record<number, readonly [blockSize: number, typeSize: number]>> = {
    0: [1, 4], 1: [1, 2], 2: [32, 18], 3: [32, 20], 6: [32, 22], 7: [32, 24], 8: [32, 34], 9: [32, 36],
    10: [256, 84], 11: [256, 110], 12: [256, 144], 13: [256, 176], 14: [256, 210], 15: [256, 292],
    16: [256, 66], 17: [256, 74], 18: [256, 98], 19: [256, 50], 20: [32, 18], 21: [256, 110], 22: [256, 82],
    23: [256, 136], 24: [1, 1], 25: [1, 2], 26: [1, 4], 27: [1, 8], 28: [1, 8], 29: [256, 56], 30: [1, 2],
    34: [256, 54], 35: [256, 66], 39: [32, 17]
};

/** Bytes of a tensor's data (1 for a non-empty tensor of a type not in the table: a lower bound). */
export function tensorBytes(dimensions: readonly (number | bigint)[], ggmlType: number): number {
    const elements = dimensions.reduce<number>((n, d) => n * Number(d), 1);
    const sizes = GGML_TYPE_SIZES[ggmlType];
    return sizes != null ? Math.ceil(elements / sizes[0]) * sizes[1] : (elements > 0 ? 1 : 0);
}

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
