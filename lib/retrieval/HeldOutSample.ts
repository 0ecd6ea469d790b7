import {mulberry32} from "../random.js";

/**
 * A uniform sample of a stream of vectors, held out of the index while it is built (reservoir
 * sampling, algorithm R). The search calibration queries the finished index with them, so it
 * measures recall on queries the graph has never seen, as real queries are; a vector evicted from
 * the sample goes into the index at once, and the sample itself is added after calibration.
 * Seeded, so the same corpus gives the same sample.
 */
export class HeldOutSample {
    private readonly keys: bigint[] = [];
    private readonly vectors: Float32Array;
    private seen = 0;
    private readonly random: () => number;

    public constructor(public readonly capacity: number, private readonly dimensions: number, seed = 0x5e1f4a6) {
        this.vectors = new Float32Array(capacity * dimensions);
        this.random = mulberry32(seed);
    }

    public get size(): number {
        return this.keys.length;
    }

    /** Offers a batch; returns what goes into the index now (the rest of the batch and any evicted vectors). */
    public offer(keys: BigUint64Array, rows: Float32Array): {keys: BigUint64Array, rows: Float32Array} {
        const d = this.dimensions;
        if (this.capacity === 0) return {keys, rows};
        const outKeys: bigint[] = [];
        const outRows = new Float32Array(rows.length);
        let out = 0;
        const emit = (key: bigint, source: Float32Array, offset: number) => {
            outKeys.push(key);
            outRows.set(source.subarray(offset, offset + d), out * d);
            out++;
        };
        for (let i = 0; i < keys.length; i++) {
            const row = rows.subarray(i * d, (i + 1) * d);
            if (this.keys.length < this.capacity) {
                this.vectors.set(row, this.keys.length * d);
                this.keys.push(keys[i]);
            } else {
                const slot = Math.floor(this.random() * (this.seen + 1));
                if (slot < this.capacity) {
                    emit(this.keys[slot], this.vectors, slot * d);
                    this.keys[slot] = keys[i];
                    this.vectors.set(row, slot * d);
                } else {
                    emit(keys[i], rows, i * d);
                }
            }
            this.seen++;
        }
        return {keys: BigUint64Array.from(outKeys), rows: outRows.subarray(0, out * d)};
    }

    /** The held-out keys and vectors (copies). */
    public sample(): {keys: BigUint64Array, rows: Float32Array} {
        return {keys: BigUint64Array.from(this.keys), rows: this.vectors.slice(0, this.keys.length * this.dimensions)};
    }
}
