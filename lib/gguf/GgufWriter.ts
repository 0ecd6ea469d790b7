import fs from "node:fs";
import path from "node:path";
import {Q4_0_BLOCK_BYTES, Q8_0_BLOCK_BYTES, QK, quantizeQ4_0, quantizeQ8_0} from "./quantize.js";

/** GGUF metadata value types (ggml/include/gguf.h). */
export const enum GgufType {
    UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7, STRING = 8,
    ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12
}

/** ggml tensor types this writer can store (Q4_0 and Q8_0 quantized as ggml's reference code does, ./quantize.ts). */
export const enum GgmlType {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q8_0 = 8
}

/** llama_ftype of a file whose large tensors are of one type ("general.file_type"). */
export function fileTypeOf(type: GgmlType): number {
    switch (type) {
        case GgmlType.F32: return 0;
        case GgmlType.F16: return 1;
        case GgmlType.Q4_0: return 2;
        case GgmlType.Q8_0: return 7;
    }
}

/** Fills `out` with the tensor's values from index `offset` on; called in order, chunk after chunk. */
export type TensorFill = (offset: number, out: Float32Array) => void;

type Scalar = {type: GgufType.UINT32 | GgufType.INT32 | GgufType.FLOAT32 | GgufType.UINT64, value: number}
    | {type: GgufType.BOOL, value: boolean}
    | {type: GgufType.STRING, value: string};
type ArrayValue = {type: GgufType.ARRAY, itemType: GgufType.STRING, value: readonly string[]}
    | {type: GgufType.ARRAY, itemType: GgufType.FLOAT32 | GgufType.INT32, value: ArrayLike<number>};
type Value = Scalar | ArrayValue;

interface TensorSpec {
    name: string;
    /** ggml order: dims[0] is the contiguous one (columns). */
    dims: number[];
    type: GgmlType;
    /** Produces the data when it is written, so large models never sit in memory whole. */
    data: (() => Float32Array) | {fill: TensorFill};
}

/** Values per chunk of a streamed tensor (a multiple of every block size). */
const CHUNK_VALUES = 1 << 20;

const ALIGNMENT = 32;

/**
 * A minimal GGUF v3 writer for the models the tests generate (F32/F16/Q4_0/Q8_0 tensors, the metadata
 * types llama.cpp reads). Writes to a temporary file and renames, so a half-written model never
 * appears under the final name.
 */
export class GgufWriter {
    private readonly kv: [string, Value][] = [];
    private readonly tensors: TensorSpec[] = [];

    /** Sets a metadata key (replacing an earlier value: GGUF forbids duplicate keys). */
    public set(key: string, value: Value): this {
        const existing = this.kv.findIndex(([k]) => k === key);
        if (existing >= 0) this.kv[existing] = [key, value];
        else this.kv.push([key, value]);
        return this;
    }

    public u32(key: string, value: number): this {
        return this.set(key, {type: GgufType.UINT32, value});
    }

    public f32(key: string, value: number): this {
        return this.set(key, {type: GgufType.FLOAT32, value});
    }

    public str(key: string, value: string): this {
        return this.set(key, {type: GgufType.STRING, value});
    }

    public bool(key: string, value: boolean): this {
        return this.set(key, {type: GgufType.BOOL, value});
    }

    public tensor(name: string, dims: number[], data: () => Float32Array, type: GgmlType = GgmlType.F32): this {
        return this.add({name, dims, type, data});
    }

    /**
     * A tensor produced chunk by chunk while it is written (a 1B-parameter model never needs more
     * than one chunk of floats in memory): `fill(offset, out)` writes values offset.. into out.
     */
    public tensorStream(name: string, dims: number[], fill: TensorFill, type: GgmlType = GgmlType.F32): this {
        return this.add({name, dims, type, data: {fill}});
    }

    private add(spec: TensorSpec): this {
        if ((spec.type === GgmlType.Q4_0 || spec.type === GgmlType.Q8_0) && spec.dims[0] % QK !== 0) {
            throw new RangeError(`tensor ${spec.name}: a quantized tensor's rows must hold a multiple of ${QK} values, got ${spec.dims[0]}`);
        }
        this.tensors.push(spec);
        return this;
    }

    public async write(file: string): Promise<void> {
        fs.mkdirSync(path.dirname(path.resolve(file)), {recursive: true});
        const temp = `${file}.${process.pid}.tmp`;
        const handle = await fs.promises.open(temp, "w");
        try {
            const header = new ByteWriter();
            header.raw(Buffer.from("GGUF", "latin1"));
            header.u32(3);
            header.u64(this.tensors.length);
            header.u64(this.kv.length);
            for (const [key, value] of this.kv) {
                header.string(key);
                writeValue(header, value);
            }
            let offset = 0;
            const offsets: number[] = [];
            for (const t of this.tensors) {
                header.string(t.name);
                header.u32(t.dims.length);
                for (const d of t.dims) header.u64(d);
                header.u32(t.type);
                offsets.push(offset);
                header.u64(offset);
                offset = align(offset + tensorBytes(t));
            }
            header.padTo(ALIGNMENT);
            let position = 0;
            position += (await handle.write(header.toBuffer(), 0, undefined, position)).bytesWritten;
            const dataStart = position;
            for (let i = 0; i < this.tensors.length; i++) {
                const t = this.tensors[i];
                const count = valueCount(t);
                let at = dataStart + offsets[i];
                if (typeof t.data === "function") {
                    const values = t.data();
                    if (values.length !== count) {
                        throw new Error(`tensor ${t.name}: ${values.length} values for dims ${t.dims.join("x")}`);
                    }
                    const bytes = encode(values, t.type);
                    at += (await handle.write(bytes, 0, bytes.length, at)).bytesWritten;
                } else {
                    const chunk = new Float32Array(Math.min(CHUNK_VALUES, count));
                    for (let done = 0; done < count; done += chunk.length) {
                        const part = count - done < chunk.length ? chunk.subarray(0, count - done) : chunk;
                        t.data.fill(done, part);
                        const bytes = encode(part, t.type);
                        at += (await handle.write(bytes, 0, bytes.length, at)).bytesWritten;
                    }
                }
                const padded = dataStart + align(offsets[i] + tensorBytes(t));
                if (padded > at) await handle.write(Buffer.alloc(padded - at), 0, padded - at, at);
            }
        } finally {
            await handle.close();
        }
        fs.renameSync(temp, file);
    }
}

function valueCount(t: TensorSpec): number {
    return t.dims.reduce((a, b) => a * b, 1);
}

function tensorBytes(t: TensorSpec): number {
    const n = valueCount(t);
    switch (t.type) {
        case GgmlType.F32: return n * 4;
        case GgmlType.F16: return n * 2;
        case GgmlType.Q4_0: return (n / QK) * Q4_0_BLOCK_BYTES;
        case GgmlType.Q8_0: return (n / QK) * Q8_0_BLOCK_BYTES;
    }
}

function encode(values: Float32Array, type: GgmlType): Buffer {
    switch (type) {
        case GgmlType.F32: return Buffer.from(values.buffer, values.byteOffset, values.byteLength);
        case GgmlType.F16: return Buffer.from(toF16(values).buffer);
        case GgmlType.Q4_0: {
            const blocks = quantizeQ4_0(values);
            return Buffer.from(blocks.buffer, blocks.byteOffset, blocks.byteLength);
        }
        case GgmlType.Q8_0: {
            const blocks = quantizeQ8_0(values);
            return Buffer.from(blocks.buffer, blocks.byteOffset, blocks.byteLength);
        }
    }
}

function align(n: number): number {
    return Math.ceil(n / ALIGNMENT) * ALIGNMENT;
}

function writeValue(w: ByteWriter, value: Value): void {
    w.u32(value.type);
    switch (value.type) {
        case GgufType.UINT32: w.u32(value.value); break;
        case GgufType.INT32: w.i32(value.value); break;
        case GgufType.FLOAT32: w.f32(value.value); break;
        case GgufType.UINT64: w.u64(value.value); break;
        case GgufType.BOOL: w.u8(value.value ? 1 : 0); break;
        case GgufType.STRING: w.string(value.value); break;
        case GgufType.ARRAY:
            w.u32(value.itemType);
            w.u64(value.value.length);
            if (value.itemType === GgufType.STRING) {
                for (const s of value.value as readonly string[]) w.string(s);
            } else {
                for (let i = 0; i < value.value.length; i++) {
                    const v = (value.value as ArrayLike<number>)[i];
                    if (value.itemType === GgufType.FLOAT32) w.f32(v);
                    else w.i32(v);
                }
            }
            break;
    }
}

/** IEEE 754 binary16 conversion (round to nearest even), for F16 tensors. */
export function toF16(values: Float32Array): Uint16Array {
    const out = new Uint16Array(values.length);
    const f = new Float32Array(1);
    const u = new Uint32Array(f.buffer);
    for (let i = 0; i < values.length; i++) {
        f[0] = values[i];
        const x = u[0];
        const sign = (x >>> 16) & 0x8000;
        const exp = (x >>> 23) & 0xff;
        let mant = x & 0x7fffff;
        if (exp === 0xff) {
            out[i] = sign | 0x7c00 | (mant !== 0 ? 0x200 : 0);
            continue;
        }
        const e = exp - 127 + 15;
        if (e >= 0x1f) {
            out[i] = sign | 0x7c00;
            continue;
        }
        if (e <= 0) {
            if (e < -10) {
                out[i] = sign;
                continue;
            }
            mant |= 0x800000;
            const shift = 14 - e;
            let half = mant >>> shift;
            const rem = mant & ((1 << shift) - 1);
            const mid = 1 << (shift - 1);
            if (rem > mid || (rem === mid && (half & 1) !== 0)) half++;
            out[i] = sign | half;
            continue;
        }
        let half = (e << 10) | (mant >>> 13);
        const rem = mant & 0x1fff;
        if (rem > 0x1000 || (rem === 0x1000 && (half & 1) !== 0)) half++;
        out[i] = sign | half;
    }
    return out;
}

class ByteWriter {
    private chunks: Buffer[] = [];
    private length = 0;

    public raw(b: Buffer): void {
        this.chunks.push(b);
        this.length += b.length;
    }

    public u8(v: number): void {
        const b = Buffer.alloc(1);
        b.writeUInt8(v);
        this.raw(b);
    }

    public u32(v: number): void {
        const b = Buffer.alloc(4);
        b.writeUInt32LE(v);
        this.raw(b);
    }

    public i32(v: number): void {
        const b = Buffer.alloc(4);
        b.writeInt32LE(v);
        this.raw(b);
    }

    public f32(v: number): void {
        const b = Buffer.alloc(4);
        b.writeFloatLE(v);
        this.raw(b);
    }

    public u64(v: number): void {
        const b = Buffer.alloc(8);
        b.writeBigUInt64LE(BigInt(v));
        this.raw(b);
    }

    public string(s: string): void {
        const bytes = Buffer.from(s, "utf8");
        this.u64(bytes.length);
        this.raw(bytes);
    }

    public padTo(alignment: number): void {
        const pad = (alignment - (this.length % alignment)) % alignment;
        if (pad > 0) this.raw(Buffer.alloc(pad));
    }

    public toBuffer(): Buffer {
        return Buffer.concat(this.chunks, this.length);
    }
}
