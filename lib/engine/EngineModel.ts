import type {SegmentScorer} from "../selfrag/SegmentScorer.js";
import type {DecodingContext} from "./DecodingContext.js";
import type {ReflectionTokens} from "./ReflectionTokens.js";

/**
 * What the Self-RAG flows need from a loaded model: its tokenizer, its reflection-token table and
 * its decoding context. SelfRagModel implements it; the flows depend on this interface only, so
 * the facade can import the flows without an import circle.
 */
export interface EngineModel {
    readonly reflection: ReflectionTokens;
    readonly context: DecodingContext;
    /** Critique scoring on this model's addon and reflection ids (the runtime the model was loaded with, not a process singleton). */
    readonly scorer: SegmentScorer;
    tokenize(text: string, options?: {bos?: boolean, special?: boolean}): Int32Array;
    detokenize(tokens: Int32Array | readonly number[], options?: {special?: boolean}): string;
    tokenText(id: number): string;
}
