import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type {LlamaEmbeddingContext, LlamaModel, Token} from "node-llama-cpp";
import {SelfRagError, requirePositiveInteger} from "../errors.js";
import {loadAddon, type GpuOption} from "../engine/addon.js";
import type {Passage} from "../selfrag/prompts.js";
import {normaliseRows, passageText, type Embedder, type EmbedderInfo} from "./Embedder.js";

export interface GgufEmbedderOptions {
    /** A GGUF embedding model: Contriever, BGE, E5, GTE, ... converted with llama.cpp. */
    modelPath: string;
    /** Tokens per input; longer passages are truncated (min(model's training context, 512)). */
    contextSize?: number;
    /**
     * CPU threads (default: one less than the logical CPUs, between 1 and 4). llama.cpp's threads
     * spin at every barrier, so more threads than free cores is ruinous: node-llama-cpp's own
     * default of 4 on the 2-core test machine made a small embedding take 1 s instead of 1 ms.
     */
    threads?: number;
    gpu?: GpuOption;
    /** Prepended to every query, e.g. "query: " for E5, BGE's "Represent this sentence for searching relevant passages: ". */
    queryPrefix?: string;
    /** Prepended to every passage, e.g. "passage: " for E5. */
    passagePrefix?: string;
}

/**
 * Embeddings from a GGUF embedding model through node-llama-cpp's LlamaEmbeddingContext, on the
 * llama.cpp build selfrag already loaded (one per process). Vectors are the model's pooled
 * embedding (its own pooling type: mean for Contriever and E5, CLS for BGE), L2-normalised.
 *
 * ```ts
 * const embedder = await GgufEmbedder.load({modelPath: "bge-small-en-v1.5-f16.gguf",
 *     queryPrefix: "Represent this sentence for searching relevant passages: "});
 * const vectors = await embedder.embedQueries(["who wrote hamlet"]); // Float32Array(384)
 * await embedder.dispose();
 * ```
 */
export class GgufEmbedder implements Embedder {
    private constructor(
        public readonly info: EmbedderInfo,
        private readonly model: LlamaModel,
        private readonly context: LlamaEmbeddingContext,
        private readonly maxTokens: number,
        private readonly queryPrefix: string,
        private readonly passagePrefix: string
    ) {}

    public static async load(options: GgufEmbedderOptions): Promise<GgufEmbedder> {
        const modelPath = path.resolve(options.modelPath);
        if (!fs.existsSync(modelPath)) throw new SelfRagError(`embedding model file not found: ${modelPath}`, "MODEL_NOT_FOUND");
        const {llama} = await loadAddon({gpu: options.gpu ?? "auto"});
        let model: LlamaModel;
        try {
            model = await llama.loadModel({modelPath});
        } catch (error) {
            throw new SelfRagError(`cannot load the embedding model ${modelPath}: ${(error as Error).message}`, "MODEL_LOAD_FAILED", {cause: error});
        }
        try {
            const contextSize = requirePositiveInteger("contextSize", options.contextSize ?? Math.min(model.trainContextSize || 512, 512), 1 << 20);
            if (contextSize < 8) throw new SelfRagError(`contextSize ${contextSize} is too small for an embedding model`, "INVALID_ARGUMENT");
            // A non-causal model (BERT) must see a whole input in one batch: batch size = context size.
            const threads = requirePositiveInteger("threads", options.threads ?? Math.max(1, Math.min(4, os.availableParallelism() - 1)), 1024);
            const context = await model.createEmbeddingContext({contextSize, batchSize: contextSize, threads});
            const queryPrefix = options.queryPrefix ?? "";
            const passagePrefix = options.passagePrefix ?? "";
            // Room for the tokens node-llama-cpp adds ([CLS] ... [SEP], or BOS/EOS) and its "< context size" check.
            const maxTokens = contextSize - 4;
            const weights = await fileFingerprint(modelPath);
            const dimensions = model.embeddingVectorSize;
            const name = (model.fileInfo.metadata as {general?: {name?: string}})?.general?.name ?? path.basename(modelPath);
            const settings = `gguf|weights=${weights}|dims=${dimensions}|maxTokens=${maxTokens}|query=${queryPrefix}|passage=${passagePrefix}`;
            return new GgufEmbedder({
                kind: "gguf", name, dimensions,
                fingerprint: crypto.createHash("sha256").update(settings).digest("hex"),
                details: {modelPath, modelBytes: fs.statSync(modelPath).size, weightsFingerprint: weights, maxTokens, queryPrefix, passagePrefix}
            }, model, context, maxTokens, queryPrefix, passagePrefix);
        } catch (error) {
            await model.dispose();
            if (error instanceof SelfRagError) throw error;
            throw new SelfRagError(`cannot create an embedding context for ${modelPath}: ${(error as Error).message}`,
                "CONTEXT_CREATE_FAILED", {cause: error});
        }
    }

    public embedPassages(passages: readonly Passage[]): Promise<Float32Array> {
        return this.embed(passages.map((p) => this.passagePrefix + passageText(p)));
    }

    public embedQueries(queries: readonly string[]): Promise<Float32Array> {
        return this.embed(queries.map((q) => this.queryPrefix + q));
    }

    public async dispose(): Promise<void> {
        await this.context.dispose();
        await this.model.dispose();
    }

    private async embed(texts: readonly string[]): Promise<Float32Array> {
        const dims = this.info.dimensions;
        const out = new Float32Array(texts.length * dims);
        for (let i = 0; i < texts.length; i++) {
            // Tokenised here (as plain text: "[SEP]" in a passage is not a control token) and cut to
            // the context: a long passage is embedded from its beginning instead of failing.
            const tokens: Token[] = this.model.tokenize(texts[i], false).slice(0, this.maxTokens);
            if (tokens.length === 0) continue; // nothing to embed: a zero vector, which matches nothing
            const embedding = await this.context.getEmbeddingFor(tokens);
            if (embedding.vector.length !== dims) {
                throw new SelfRagError(`the model returned a ${embedding.vector.length}-dimensional embedding, expected ${dims}`, "INTERNAL");
            }
            out.set(embedding.vector, i * dims);
        }
        return normaliseRows(out, dims);
    }
}

/**
 * Identity of a model file without reading gigabytes: sha256 over its size, its first and last
 * MiB (GGUF header, metadata, tensor table) and 64 KiB at 62 evenly spaced offsets of the tensor
 * data. Two different fine-tunes share the header but not their weights, so they differ here.
 */
export async function fileFingerprint(file: string): Promise<string> {
    const handle = await fs.promises.open(file, "r");
    try {
        const size = (await handle.stat()).size;
        const hash = crypto.createHash("sha256").update(`size=${size}\n`);
        const read = async (offset: number, length: number) => {
            const buffer = Buffer.alloc(Math.max(0, Math.min(length, size - offset)));
            const {bytesRead} = await handle.read(buffer, 0, buffer.length, offset);
            hash.update(buffer.subarray(0, bytesRead));
        };
        const mib = 1 << 20;
        if (size <= 8 * mib) {
            await read(0, size);
        } else {
            await read(0, mib);
            const block = 64 * 1024;
            for (let i = 1; i <= 62; i++) await read(Math.floor((size - block) * i / 63), block);
            await read(size - mib, mib);
        }
        return hash.digest("hex");
    } finally {
        await handle.close();
    }
}
