import fs from "node:fs";
import path from "node:path";
import {readGgufFileInfo} from "node-llama-cpp";
import {SelfRagError} from "../errors.js";
import {GgufType, GgufWriter} from "../gguf/GgufWriter.js";
import {llamaCppSourceDir} from "../paths.js";

/** Shape of the generated BERT: small enough to write and load in a second. */
export const BERT_FIXTURE = {embd: 64, layers: 2, heads: 2, ff: 128, context: 512} as const;

interface BertVocab {
    tokens: string[];
    types: number[];
    ids: {unknown: number, separator: number, padding: number, cls: number, mask: number};
    pre: string;
}

/** The WordPiece vocabulary of BGE (30522 tokens) that llama.cpp ships for its tokenizer tests. */
async function readBertVocab(): Promise<BertVocab> {
    const file = path.join(llamaCppSourceDir(), "models", "ggml-vocab-bert-bge.gguf");
    if (!fs.existsSync(file)) {
        throw new SelfRagError(`the BERT vocabulary ${file} is missing: run \`npx --no node-llama-cpp source download --skipBuild\``,
            "MODEL_NOT_FOUND");
    }
    const info = await readGgufFileInfo(file, {sourceType: "filesystem", logWarnings: false});
    const ggml = (info.metadata as unknown as {tokenizer: {ggml: Record<string, unknown>}}).tokenizer.ggml;
    return {
        tokens: ggml.tokens as string[],
        types: ggml.token_type as number[],
        ids: {
            unknown: ggml.unknown_token_id as number, separator: ggml.seperator_token_id as number,
            padding: ggml.padding_token_id as number, cls: ggml.cls_token_id as number, mask: ggml.mask_token_id as number
        },
        pre: (ggml.pre as string | undefined) ?? "bert-bge"
    };
}

/** mulberry32 + Box-Muller: the same weights on every machine, without a dependency. */
function gaussian(seed: number, std: number): (size: number) => () => Float32Array {
    let state = seed >>> 0;
    const uniform = () => {
        state = (state + 0x6d2b79f5) >>> 0;
        let t = state;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return (((t ^ (t >>> 14)) >>> 0) + 0.5) / 4294967296;
    };
    return (size) => () => {
        const out = new Float32Array(size);
        for (let i = 0; i < size; i += 2) {
            const r = Math.sqrt(-2 * Math.log(uniform())) * std;
            const a = 2 * Math.PI * uniform();
            out[i] = r * Math.cos(a);
            if (i + 1 < size) out[i + 1] = r * Math.sin(a);
        }
        return out;
    };
}

/**
 * Writes a tiny BERT embedding model (llama.cpp's `bert` architecture, mean pooling) with BGE's
 * real WordPiece tokenizer. Not a trained model, but designed so its embeddings mean something:
 * token embeddings are random unit-variance vectors and every other weight is small (std 0.02),
 * so each layer stays close to the identity (residual + layer norm) and the pooled output is about
 * the average of the input's token vectors. Texts sharing word pieces therefore score higher than
 * unrelated texts, while the whole BERT graph (positions, attention, GELU FFN, norms) still runs.
 *
 * ```ts
 * await writeBertFixture("/tmp/bert.gguf");
 * const embedder = await GgufEmbedder.load({modelPath: "/tmp/bert.gguf"}); // 64 dimensions
 * ```
 */
export async function writeBertFixture(file: string, seed = 7): Promise<void> {
    const vocab = await readBertVocab();
    const {embd: e, layers, heads, ff, context} = BERT_FIXTURE;
    const n = vocab.tokens.length;
    const small = gaussian(seed, 0.02);
    const ones = (size: number) => () => new Float32Array(size).fill(1);
    const zeros = (size: number) => () => new Float32Array(size);
    const writer = new GgufWriter()
        .str("general.architecture", "bert")
        .str("general.name", "selfrag-fixture-bert")
        .u32("general.file_type", 0)
        .u32("bert.context_length", context)
        .u32("bert.embedding_length", e)
        .u32("bert.feed_forward_length", ff)
        .u32("bert.block_count", layers)
        .u32("bert.attention.head_count", heads)
        .f32("bert.attention.layer_norm_epsilon", 1e-12)
        .bool("bert.attention.causal", false)
        .u32("bert.pooling_type", 1) // LLAMA_POOLING_TYPE_MEAN
        .str("tokenizer.ggml.model", "bert")
        .str("tokenizer.ggml.pre", vocab.pre)
        .set("tokenizer.ggml.tokens", {type: GgufType.ARRAY, itemType: GgufType.STRING, value: vocab.tokens})
        .set("tokenizer.ggml.token_type", {type: GgufType.ARRAY, itemType: GgufType.INT32, value: vocab.types})
        .u32("tokenizer.ggml.token_type_count", 2)
        .u32("tokenizer.ggml.unknown_token_id", vocab.ids.unknown)
        .u32("tokenizer.ggml.seperator_token_id", vocab.ids.separator)
        .u32("tokenizer.ggml.padding_token_id", vocab.ids.padding)
        .u32("tokenizer.ggml.cls_token_id", vocab.ids.cls)
        .u32("tokenizer.ggml.mask_token_id", vocab.ids.mask)
        .tensor("token_embd.weight", [e, n], gaussian(seed + 1, 1)(e * n))
        .tensor("token_types.weight", [e, 2], small(e * 2))
        .tensor("position_embd.weight", [e, context], small(e * context))
        .tensor("token_embd_norm.weight", [e], ones(e))
        .tensor("token_embd_norm.bias", [e], zeros(e));
    for (let l = 0; l < layers; l++) {
        const blk = `blk.${l}`;
        writer
            .tensor(`${blk}.attn_q.weight`, [e, e], small(e * e)).tensor(`${blk}.attn_q.bias`, [e], zeros(e))
            .tensor(`${blk}.attn_k.weight`, [e, e], small(e * e)).tensor(`${blk}.attn_k.bias`, [e], zeros(e))
            .tensor(`${blk}.attn_v.weight`, [e, e], small(e * e)).tensor(`${blk}.attn_v.bias`, [e], zeros(e))
            .tensor(`${blk}.attn_output.weight`, [e, e], small(e * e)).tensor(`${blk}.attn_output.bias`, [e], zeros(e))
            .tensor(`${blk}.attn_output_norm.weight`, [e], ones(e)).tensor(`${blk}.attn_output_norm.bias`, [e], zeros(e))
            .tensor(`${blk}.ffn_up.weight`, [e, ff], small(e * ff)).tensor(`${blk}.ffn_up.bias`, [ff], zeros(ff))
            .tensor(`${blk}.ffn_down.weight`, [ff, e], small(ff * e)).tensor(`${blk}.ffn_down.bias`, [e], zeros(e))
            .tensor(`${blk}.layer_output_norm.weight`, [e], ones(e)).tensor(`${blk}.layer_output_norm.bias`, [e], zeros(e));
    }
    await writer.write(file);
}
