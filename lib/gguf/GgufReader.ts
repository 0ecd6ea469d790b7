// Synchronous GGUF metadata reading (never the weights): the cursor and value skipping the
// vocabulary lookup (models/GgufVocabulary.ts) and the load-time file check (SelfRagModel.load) share,
// and the file's layout: where the tensor data starts and where each tensor's data ends. One pass
// over the header through a window of the file, no node-llama-cpp import (which costs a few hundred
// ms of module loading in a process that only needs to know the file is whole).
import fs from "node:fs";

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian uint32
export const ALIGNMENT_KEY = "general.alignment";
export const TOKENS_KEY = "tokenizer.ggml.tokens";

export const enum ValueType {
    UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7,
    STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12
}

export const FIXED_SIZE: Record<number, number> = {
    [ValueType.UINT8]: 1, [ValueType.INT8]: 1, [ValueType.BOOL]: 1, [ValueType.UINT16]: 2, [ValueType.INT16]: 2,
    [ValueType.UINT32]: 4, [ValueType.INT32]: 4, [ValueType.FLOAT32]: 4,
    [ValueType.UINT64]: 8, [ValueType.INT64]: 8, [ValueType.FLOAT64]: 8
};

/** Bytes read from the file at a time. */
const WINDOW = 1 << 16;

/** Upper bound on any one string or array length: a larger value means a corrupt file, not a big vocabulary. */
const MAX_LENGTH = 2 ** 31;

/** A read past the end of the file; `needed` is the file size that read required (a lower bound of what the file should hold). */
export class Truncated extends Error {
    public constructor(public readonly needed: number) {
        super(`the file ends before byte ${needed}`);
    }
}

/** Sequential reads through a window of the file (metadata only: never the tensor data). */
export class FileCursor {
    /** The bytes of the file from bufferStart on (a view of `memory`). */
    private buffer = Buffer.alloc(0);
    private memory = Buffer.alloc(0);
    private bufferStart = 0;
    private position = 0;

    public constructor(private readonly fd: number, private readonly size: number) {}

    private ensure(n: number): number {
        const offset = this.position - this.bufferStart;
        if (offset + n <= this.buffer.length) return offset;
        if (this.position + n > this.size) throw new Truncated(this.position + n);
        // A 64 KiB window, reused: every value read is copied out of it, and each page of a fresh
        // buffer costs a page fault (a 1 MiB one took 3-4 ms to fill on a VM, 64 KiB reused 1 ms).
        const length = Math.min(Math.max(n, WINDOW), this.size - this.position);
        if (this.memory.length < length) this.memory = Buffer.allocUnsafe(Math.max(length, WINDOW));
        const buffer = this.memory.subarray(0, length);
        let read = 0;
        while (read < length) {
            const got = fs.readSync(this.fd, buffer, read, length - read, this.position + read);
            if (got === 0) throw new Truncated(this.position + n);
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

    /** Two 32-bit halves rather than a BigInt: a vocabulary is tens of thousands of string lengths. */
    public u64(): number {
        const at = this.ensure(8);
        this.position += 8;
        const low = this.buffer.readUInt32LE(at);
        const high = this.buffer.readUInt32LE(at + 4);
        if (high > 0x1fffff) throw new RangeError(`length ${this.buffer.readBigUInt64LE(at)} out of range`);
        // A small value stays a small integer: high * 2 ** 32 is a double, and a double added to
        // the read position makes every later step of it (tens of thousands per vocabulary) a boxed
        // heap number in the interpreter.
        return high === 0 ? low : high * 0x100000000 + low;
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
        if (this.position + n > this.size) throw new Truncated(this.position + n);
        this.position += n;
    }

    /**
     * Skips `count` length-prefixed strings in one tight loop: a vocabulary is tens of thousands of
     * them, and a start-up reads it with cold (interpreted) code, where a call per string costs
     * tens of milliseconds. With a `finder`, notes where its strings are on the way.
     */
    public skipStrings(count: number, version: number, finder?: StringFinder): void {
        const width = version === 1 ? 4 : 8;
        // The loop runs in the interpreter (once per process, too short for the optimising
        // compiler to finish), so it keeps to locals and small integers: a property read, or a
        // double such as high * 2 ** 32, costs a heap number or a lookup per string (3x slower).
        const size = this.size;
        let b = this.buffer;
        let start = this.bufferStart;
        let end = b.length;
        let position = this.position;
        try {
            for (let i = 0; i < count; i++) {
                let at = position - start;
                if (at < 0 || at + width > end) {
                    this.position = position;
                    at = this.ensure(width);
                    b = this.buffer;
                    start = this.bufferStart;
                    end = b.length;
                }
                const low = (b[at] | (b[at + 1] << 8) | (b[at + 2] << 16)) + b[at + 3] * 0x1000000;
                const high = width === 4 ? 0 : (b[at + 4] | (b[at + 5] << 8) | (b[at + 6] << 16)) + b[at + 7] * 0x1000000;
                if (high !== 0 || low > MAX_LENGTH) throw new RangeError(`length ${high * 0x100000000 + low} out of range`);
                // A sought string's length and first byte, else on to the next (two reads for most).
                if (finder !== undefined && low < finder.lengths.length && finder.lengths[low] === 1 &&
                    (at + width >= end || finder.firstBytes[b[at + width]] === 1)) {
                    if (at + width + low > end) {
                        this.position = position;
                        at = this.ensure(width + low);
                        b = this.buffer;
                        start = this.bufferStart;
                        end = b.length;
                    }
                    finder.check(b, at + width, low, i);
                }
                position += width + low;
                if (position > size) throw new Truncated(position);
            }
        } finally {
            this.position = position;
        }
    }
}

/** Strings sought in a string array while it is skipped: the index of each one's first occurrence, -1 when absent. */
export class StringFinder {
    public readonly indexes: Int32Array;
    /** 1 at each byte length a sought string has. */
    public readonly lengths: Uint8Array;
    /** 1 at each byte a sought string starts with. */
    public readonly firstBytes = new Uint8Array(256);
    private readonly wanted: Buffer[];

    public constructor(public readonly texts: readonly string[]) {
        this.wanted = texts.map((t) => Buffer.from(t, "utf8"));
        this.indexes = new Int32Array(texts.length).fill(-1);
        this.lengths = new Uint8Array(Math.max(0, ...this.wanted.map((w) => w.length)) + 1);
        for (const w of this.wanted) {
            this.lengths[w.length] = 1;
            if (w.length > 0) this.firstBytes[w[0]] = 1;
        }
    }

    /** The array's string `index` is `n` bytes at `at` of `buffer`. */
    public check(buffer: Buffer, at: number, n: number, index: number): void {
        for (let k = 0; k < this.wanted.length; k++) {
            if (this.indexes[k] < 0 && this.wanted[k].length === n && this.wanted[k].compare(buffer, at, at + n) === 0) this.indexes[k] = index;
        }
    }
}

export function skipValue(cursor: FileCursor, type: number, version: number, finder?: StringFinder): void {
    if (type === ValueType.STRING) {
        cursor.skip(cursor.length(version));
    } else if (type === ValueType.ARRAY) {
        const itemType = cursor.u32();
        const count = cursor.length(version);
        const fixed = FIXED_SIZE[itemType];
        if (fixed != null) cursor.skip(fixed * count);
        else if (itemType === ValueType.STRING) cursor.skipStrings(count, version, finder);
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

/** One tensor of a GGUF file: its data's absolute byte range. */
export interface GgufTensorExtent {
    name: string;
    ggmlType: number;
    /** Absolute offset of the data in the file. */
    start: number;
    /** Bytes of the data (a lower bound for a type not in GGML_TYPE_SIZES). */
    bytes: number;
}

/** Where a GGUF file's parts are, from its header alone. */
export interface GgufLayout {
    version: number;
    /** The header's end, aligned: where the tensor data starts (llama.cpp maps from here). */
    dataStart: number;
    tensors: GgufTensorExtent[];
    /** With `findTokens`: each one's first id in `tokenizer.ggml.tokens`, -1 when absent (or no vocabulary). */
    tokenIds?: Int32Array;
}

/**
 * The layout of the GGUF file open as `fd` (`size` bytes): one sequential read of the header,
 * metadata values skipped without decoding. Throws Truncated when the file ends inside the header
 * (with the size the read needed), RangeError when the header is malformed; the caller names the
 * file. The magic must have been checked by the caller (this reads from byte 0 anyway).
 * `findTokens`: vocabulary entries to locate on the way (the vocabulary is skipped through anyway).
 */
export function readGgufLayoutSync(fd: number, size: number, findTokens?: readonly string[]): GgufLayout {
    const finder = findTokens == null ? undefined : new StringFinder(findTokens);
    const cursor = new FileCursor(fd, size);
    if (cursor.u32() !== GGUF_MAGIC) throw new RangeError("no GGUF magic");
    const version = cursor.u32();
    if (version < 1 || version > 3) throw new RangeError(`unsupported GGUF version ${version}`);
    const tensorCount = cursor.length(version);
    const kvCount = cursor.length(version);
    let alignment = 32;
    for (let i = 0; i < kvCount; i++) {
        const key = cursor.string(version);
        const type = cursor.u32();
        if (key === ALIGNMENT_KEY && type === ValueType.UINT32) {
            alignment = cursor.u32();
            if (alignment === 0) throw new RangeError("general.alignment is 0");
        } else {
            skipValue(cursor, type, version, key === TOKENS_KEY ? finder : undefined);
        }
    }
    const tensors: {name: string, ggmlType: number, offset: number, bytes: number}[] = [];
    for (let i = 0; i < tensorCount; i++) {
        const name = cursor.string(version);
        const dimensionCount = cursor.u32();
        if (dimensionCount > 8) throw new RangeError(`tensor ${name} has ${dimensionCount} dimensions`);
        const dimensions: number[] = [];
        for (let d = 0; d < dimensionCount; d++) dimensions.push(version === 1 ? cursor.u32() : cursor.u64());
        const ggmlType = cursor.u32();
        const offset = cursor.u64();
        tensors.push({name, ggmlType, offset, bytes: tensorBytes(dimensions, ggmlType)});
    }
    const dataStart = Math.ceil(cursor.offset / alignment) * alignment;
    return {version, dataStart, tensors: tensors.map((t) => ({name: t.name, ggmlType: t.ggmlType, start: dataStart + t.offset, bytes: t.bytes})),
        ...(finder != null ? {tokenIds: finder.indexes} : {})};
}
