// ggml's Q4_0 and Q8_0 block formats, written exactly as ggml defines them (ggml/src/ggml-quants.c:
// quantize_row_q4_0_ref, quantize_row_q8_0_ref, dequantize_row_q4_0, dequantize_row_q8_0; the
// fp16 conversion of ggml-impl.h), so a file written here holds the bytes llama-quantize's
// reference path would write. Every float operation of the C code is a float32 operation; here
// each is a double operation rounded with Math.fround, which gives the same float for + - * /
// (a double holds the exact product of two floats, and rounding a correctly rounded double
// quotient or sum to float equals rounding the exact value). test/29.gguf.quantized checks the
// bytes against ggml's own functions.

/** Values per block (QK4_0 = QK8_0 = 32). */
export const QK = 32;
/** Bytes per block: an fp16 scale, then 16 bytes of nibbles (Q4_0) or 32 signed bytes (Q8_0). */
export const Q4_0_BLOCK_BYTES = 18;
export const Q8_0_BLOCK_BYTES = 34;

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

function bitsOf(f: number): number {
    scratchF32[0] = f;
    return scratchU32[0];
}

function fromBits(bits: number): number {
    scratchU32[0] = bits >>> 0;
    return scratchF32[0];
}

/** ggml_compute_fp32_to_fp16 (round to nearest even, NaN as 0x7E00), bit for bit. */
export function fp32ToFp16Bits(f: number): number {
    let base = Math.fround(Math.fround(Math.abs(f) * 2 ** 112) * 2 ** -110);
    const w = bitsOf(f);
    const shl1w = (w + w) >>> 0;
    const sign = w & 0x80000000;
    let bias = (shl1w & 0xff000000) >>> 0;
    if (bias < 0x71000000) bias = 0x71000000;
    base = Math.fround(fromBits((bias >>> 1) + 0x07800000) + base);
    const bits = bitsOf(base);
    const nonsign = ((bits >>> 13) & 0x7c00) + (bits & 0x0fff);
    return ((sign >>> 16) | (shl1w > 0xff000000 ? 0x7e00 : nonsign)) & 0xffff;
}

/** ggml_compute_fp16_to_fp32: every half is exactly a float. */
export function fp16BitsToFp32(h: number): number {
    const sign = h & 0x8000 ? -1 : 1;
    const exponent = (h >>> 10) & 0x1f;
    const mantissa = h & 0x3ff;
    if (exponent === 0) return sign * mantissa * 2 ** -24;
    if (exponent === 0x1f) return mantissa !== 0 ? NaN : sign * Infinity;
    return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

function checkLength(values: Float32Array, what: string): void {
    if (values.length % QK !== 0) throw new RangeError(`${what}: ${values.length} values is not a multiple of ${QK}`);
}

/**
 * quantize_row_q4_0_ref: per block of 32, d = (the value of largest magnitude) / -8, and each
 * value as min(15, trunc(x / d + 8.5)) in a nibble (first 16 values low, last 16 high).
 */
export function quantizeQ4_0(x: Float32Array, out: Uint8Array = new Uint8Array((x.length / QK) * Q4_0_BLOCK_BYTES)): Uint8Array {
    checkLength(x, "Q4_0");
    for (let b = 0, o = 0; b < x.length; b += QK, o += Q4_0_BLOCK_BYTES) {
        let amax = 0;
        let max = 0;
        for (let j = 0; j < QK; j++) {
            const v = x[b + j];
            if (amax < Math.abs(v)) {
                amax = Math.abs(v);
                max = v;
            }
        }
        const d = Math.fround(max / -8);
        const id = d !== 0 ? Math.fround(1 / d) : 0;
        const h = fp32ToFp16Bits(d);
        out[o] = h & 0xff;
        out[o + 1] = h >>> 8;
        for (let j = 0; j < QK / 2; j++) {
            const x0 = Math.fround(x[b + j] * id);
            const x1 = Math.fround(x[b + QK / 2 + j] * id);
            // (int8_t)(x + 8.5f) truncates toward zero; x + 8.5 lies in [0, 16.5] here.
            const q0 = Math.min(15, Math.trunc(Math.fround(x0 + 8.5)));
            const q1 = Math.min(15, Math.trunc(Math.fround(x1 + 8.5)));
            out[o + 2 + j] = q0 | (q1 << 4);
        }
    }
    return out;
}

/** quantize_row_q8_0_ref: per block of 32, d = max|x| / 127 and each value as roundf(x / d) (halves away from zero). */
export function quantizeQ8_0(x: Float32Array, out: Uint8Array = new Uint8Array((x.length / QK) * Q8_0_BLOCK_BYTES)): Uint8Array {
    checkLength(x, "Q8_0");
    for (let b = 0, o = 0; b < x.length; b += QK, o += Q8_0_BLOCK_BYTES) {
        let amax = 0;
        for (let j = 0; j < QK; j++) amax = Math.max(amax, Math.abs(x[b + j]));
        const d = Math.fround(amax / 127);
        const id = d !== 0 ? Math.fround(1 / d) : 0;
        const h = fp32ToFp16Bits(d);
        out[o] = h & 0xff;
        out[o + 1] = h >>> 8;
        for (let j = 0; j < QK; j++) {
            const x0 = Math.fround(x[b + j] * id);
            const q = x0 < 0 ? -Math.round(-x0) : Math.round(x0);
            out[o + 2 + j] = q & 0xff;
        }
    }
    return out;
}

/** dequantize_row_q4_0: (nibble - 8) * d. */
export function dequantizeQ4_0(blocks: Uint8Array, out: Float32Array = new Float32Array((blocks.length / Q4_0_BLOCK_BYTES) * QK)): Float32Array {
    for (let o = 0, b = 0; o < blocks.length; o += Q4_0_BLOCK_BYTES, b += QK) {
        const d = fp16BitsToFp32(blocks[o] | (blocks[o + 1] << 8));
        for (let j = 0; j < QK / 2; j++) {
            const q = blocks[o + 2 + j];
            out[b + j] = ((q & 0x0f) - 8) * d;
            out[b + QK / 2 + j] = ((q >>> 4) - 8) * d;
        }
    }
    return out;
}

/** dequantize_row_q8_0: q * d. */
export function dequantizeQ8_0(blocks: Uint8Array, out: Float32Array = new Float32Array((blocks.length / Q8_0_BLOCK_BYTES) * QK)): Float32Array {
    for (let o = 0, b = 0; o < blocks.length; o += Q8_0_BLOCK_BYTES, b += QK) {
        const d = fp16BitsToFp32(blocks[o] | (blocks[o + 1] << 8));
        for (let j = 0; j < QK; j++) out[b + j] = ((blocks[o + 2 + j] << 24) >> 24) * d;
    }
    return out;
}
