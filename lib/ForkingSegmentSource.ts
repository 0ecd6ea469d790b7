import {formatPassage, type Passage} from "./prompts.js";
import {R} from "./ReflectionTokens.js";
import type {CritiqueWeights, SegmentScorer} from "./SegmentScorer.js";
import type {SelfRagModel} from "./SelfRagModel.js";
import type {ExpandRequest, GeneratedSegment, SegmentSource, TreeNode} from "./TreeSearch.js";

/**
 * What a child sees before its passage.
 * - "reference": the prompt and the generated text of the path, no earlier passages (the released
 *   script's behaviour, and the default for comparability);
 * - "interleaved": earlier passages stay in context, as in Self-RAG's training data.
 */
export type ContextPolicy = "reference" | "interleaved";

export interface ForkingSourceOptions {
    policy: ContextPolicy;
    maxNewTokens: number;
    threshold: number;
    weights?: CritiqueWeights;
}

interface Held {
    seq: number;
    /** Tokens of the node's prefix (what its children's passages are appended to), once built. */
    prefixLength: number;
    /** Length of the context the node's passage was appended to (to trim back to it). */
    baseLength: number;
    prefixReady: boolean;
}

/**
 * The engine's segment source: a node's prefix is encoded once and its children fork it, so each
 * child encodes only its passage and its own tokens; siblings (and cousins) decode in one batch.
 * The last child of a node takes over the node's slot, so a depth needs beamWidth x passages slots.
 */
export class ForkingSegmentSource implements SegmentSource {
    private readonly held = new Map<number, Held>();

    public constructor(private readonly model: SelfRagModel, private readonly scorer: SegmentScorer,
        private readonly options: ForkingSourceOptions, root: TreeNode, rootSeq: number, rootLength: number) {
        this.held.set(root.id, {seq: rootSeq, prefixLength: rootLength, baseLength: rootLength, prefixReady: true});
    }

    /** Tokens a node's children would hold before their passage (for the context check). */
    public prefixLength(node: TreeNode): number {
        const held = this.held.get(node.id);
        if (held == null) return Infinity;
        if (held.prefixReady) return held.prefixLength;
        return this.options.policy === "reference"
            ? held.baseLength + node.tokens.length
            : held.baseLength + (node.passageTokens?.length ?? 0) + node.tokens.length;
    }

    public cannotExpand(node: TreeNode, passages: readonly Passage[]): string | undefined {
        const perSequence = this.model.context.info.contextPerSequence;
        const longest = Math.max(...passages.map((p) => this.model.tokenize(formatPassage(p), {bos: false}).length));
        const needed = this.prefixLength(node) + longest + this.options.maxNewTokens;
        return needed > perSequence
            ? `context full: the path so far (${this.prefixLength(node)} tokens), a passage (${longest}) and maxNewTokens ` +
              `(${this.options.maxNewTokens}) need ${needed} of ${perSequence} tokens per sequence`
            : undefined;
    }

    public async expand(requests: readonly ExpandRequest[]): Promise<GeneratedSegment[][]> {
        const ctx = this.model.context;
        // 1. Each parent's prefix. "reference": drop the parent's passage and re-append its segment
        //    (trim back to the context the passage was added to); "interleaved": the parent's slot
        //    already holds context + passage + segment.
        const rebuild: {seq: number, tokens: Int32Array}[] = [];
        for (const {node} of requests) {
            const held = this.held.get(node.id)!;
            if (held.prefixReady) continue;
            if (this.options.policy === "reference") {
                await ctx.trim(held.seq, held.baseLength);
                if (node.tokens.length > 0) rebuild.push({seq: held.seq, tokens: node.tokens});
            }
            held.prefixLength = this.prefixLength(node);
            held.prefixReady = true;
        }
        if (rebuild.length > 0) await ctx.evaluate(rebuild);

        // 2. One slot per child: forks of the parent, the last child takes the parent's slot over.
        const childSeqs: number[][] = [];
        const appends: {seq: number, tokens: Int32Array}[] = [];
        const passageTokens: Int32Array[][] = [];
        for (const {node, passages} of requests) {
            const held = this.held.get(node.id)!;
            const fresh = ctx.acquire(passages.length - 1);
            for (const seq of fresh) await ctx.fork(held.seq, seq);
            const seqs = [...fresh, held.seq];
            this.expandedPrefix.set(node.id, held.prefixLength);
            this.held.delete(node.id);
            childSeqs.push(seqs);
            passageTokens.push(passages.map((p) => this.model.tokenize(formatPassage(p), {bos: false})));
            seqs.forEach((seq, i) => appends.push({seq, tokens: passageTokens[passageTokens.length - 1][i]}));
        }
        await ctx.evaluate(appends);

        // 3. All children of the depth in one generate: a segment ends at [Retrieval], at a
        //    [No Retrieval] the threshold overrules, at EOS or at the budget.
        const items = childSeqs.flat().map((seq) => ({seq, maxTokens: this.options.maxNewTokens}));
        const segments = await ctx.generate(items, {
            stopTokens: Int32Array.of(this.model.reflection.id("[Retrieval]")),
            gate: {noRetrievalIndex: R.noRetrieval, retrievalIndex: R.retrieval, continueIndex: R.continueEvidence, threshold: this.options.threshold}
        });
        const critiques = this.scorer.score(segments, this.options.weights);

        let k = 0;
        return requests.map((request, r) => {
            const base = this.prefixLengthOfExpanded(request);
            return childSeqs[r].map((seq, i) => {
                const segment = segments[k];
                const critique = critiques[k++];
                const asksRetrieval = segment.stopReason === "stop" || segment.stopReason === "retrieve";
                // The retrieval request is not part of the segment: the next passage starts with [Retrieval].
                const tokens = asksRetrieval ? segment.tokens.slice(0, segment.tokens.length - 1) : segment.tokens;
                this.held.set(request.childIds[i], {seq, prefixLength: 0, baseLength: base, prefixReady: false});
                return {tokens, text: this.model.detokenize(tokens), passageTokens: passageTokens[r][i], critique,
                    asksRetrieval, stopReason: segment.stopReason};
            });
        });
    }

    private readonly expandedPrefix = new Map<number, number>();

    private prefixLengthOfExpanded(request: ExpandRequest): number {
        return this.expandedPrefix.get(request.node.id)!;
    }

    /** Releases every slot still held (after the search, or when it failed half way). */
    public async releaseAll(): Promise<void> {
        const seqs = [...this.held.values()].map((h) => h.seq);
        this.held.clear();
        if (seqs.length > 0) await this.model.context.release(...seqs);
    }

    public async discard(nodes: readonly TreeNode[]): Promise<void> {
        const seqs: number[] = [];
        for (const node of nodes) {
            const held = this.held.get(node.id);
            if (held == null) continue;
            this.held.delete(node.id);
            seqs.push(held.seq);
        }
        if (seqs.length > 0) await this.model.context.release(...seqs);
    }
}
