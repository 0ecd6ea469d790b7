import fs from "node:fs";
import path from "node:path";

/** GGUF metadata value types (ggml/include/gguf.h). */
export const enum GgufType {
    UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7, STRING = 8,
    ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12
}

/** ggml tensor types this writer can store. */
export const enum GgmlType {
    F32 = 0,
    F16 = 1
}

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
    data: () => Float32Array;
}

const ALIGNMENT = 32;

/**
 * A minimal GGUF v3 writer for the models the tests generate (F32/F16 tensors, the metadata
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
        this.tensors.push({name, dims, type, data});
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
                const values = t.data();
                const expected = t.dims.reduce((a, b) => a * b, 1);
                if (values.length !== expected) {
                    throw new Error(`tensor ${t.name}: ${values.length} values for dims ${t.dims.join("x")}`);
                }
                const bytes = t.type === GgmlType.F32
                    ? Buffer.from(values.buffer, values.byteOffset, values.byteLength)
                    : Buffer.from(toF16(values).buffer);
                await handle.write(bytes, 0, bytes.length, dataStart + offsets[i]);
                const end = dataStart + offsets[i] + bytes.length;
                const padded = dataStart + align(offsets[i] + bytes.length);
                if (padded > end) await handle.write(Buffer.alloc(padded - end), 0, padded - end, end);
            }
        } finally {
            await handle.close();
        }
        fs.renameSync(temp, file);
    }
}

function tensorBytes(t: TensorSpec): number {
    return t.dims.reduce((a, b) => a * b, 1) * (t.type === GgmlType.F32 ? 4 : 2);
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
