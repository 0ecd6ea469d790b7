// Segment sources for testing the tree search: a scripted one (hand-computed expectations) and a
// re-encoding oracle that builds every child's context from scratch, as the reference script does.
import {formatPassage, type Passage} from "../lib/selfrag/prompts.js";
import {R} from "../lib/engine/ReflectionTokens.js";
import type {CritiqueWeights, SegmentScorer} from "../lib/selfrag/SegmentScorer.js";
import type {SelfRagModel} from "../lib/SelfRagModel.js";
import type {ExpandRequest, GeneratedSegment, SegmentSource, TreeNode} from "../lib/selfrag/TreeSearch.js";

export interface ScriptedSegment {
    text: string;
    score: number;
    asks: boolean;
}

/** Segments chosen by (parent id, passage index); tracks which nodes hold state. */
export class ScriptedSource implements SegmentSource {
    public readonly alive = new Set<number>([0]);
    public readonly discarded: number[] = [];
    public expandCalls = 0;

    public constructor(private readonly script: (parent: TreeNode, passageIndex: number) => ScriptedSegment,
        private readonly blocked: (node: TreeNode) => string | undefined = () => undefined) {}

    public async expand(requests: readonly ExpandRequest[]): Promise<GeneratedSegment[][]> {
        this.expandCalls++;
        return requests.map((request) => {
            if (!this.alive.has(request.node.id)) throw new Error(`node ${request.node.id} expanded after its state was discarded`);
            this.alive.delete(request.node.id);
            return request.passages.map((_, i) => {
                const s = this.script(request.node, i);
                this.alive.add(request.childIds[i]);
                return {
                    tokens: Int32Array.of(i), text: s.text, passageTokens: Int32Array.of(100 + i), asksRetrieval: s.asks,
                    stopReason: s.asks ? "stop" : "eos", critique: {score: s.score, relevance: 0, support: 0, utility: 0, seq: 0}
                };
            });
        });
    }

    public async discard(nodes: readonly TreeNode[]): Promise<void> {
        for (const node of nodes) {
            if (this.alive.delete(node.id)) this.discarded.push(node.id);
        }
    }

    public cannotExpand(node: TreeNode): string | undefined {
        return this.blocked(node);
    }
}

/**
 * The straightforward implementation: each child gets a fresh slot and its whole context
 * (prompt + path + passage) encoded from scratch, one child at a time.
 */
export class ReencodingSource implements SegmentSource {
    public tokensEvaluated = 0;
    private readonly nodes = new Map<number, TreeNode>();

    public constructor(private readonly model: SelfRagModel, private readonly scorer: SegmentScorer, private readonly prompt: Int32Array,
        private readonly options: {policy: "reference" | "interleaved", maxNewTokens: number, threshold: number, weights?: CritiqueWeights}) {}

    public async expand(requests: readonly ExpandRequest[]): Promise<GeneratedSegment[][]> {
        const ctx = this.model.context;
        const out: GeneratedSegment[][] = [];
        for (const request of requests) {
            const prefix = this.context(request.node);
            const children: GeneratedSegment[] = [];
            for (const passage of request.passages) {
                const passageTokens = this.model.tokenize(formatPassage(passage as Passage), {bos: false});
                const [seq] = ctx.acquire(1);
                const before = ctx.stats.tokensEvaluated;
                await ctx.evaluate([{seq, tokens: Int32Array.from([...prefix, ...passageTokens])}]);
                const [segment] = await ctx.generate([{seq, maxTokens: this.options.maxNewTokens}], {
                    stopTokens: Int32Array.of(this.model.reflection.id("[Retrieval]")),
                    gate: {noRetrievalIndex: R.noRetrieval, retrievalIndex: R.retrieval, continueIndex: R.continueEvidence, threshold: this.options.threshold}
                });
                this.tokensEvaluated += ctx.stats.tokensEvaluated - before;
                await ctx.release(seq);
                const [critique] = this.scorer.score([segment], this.options.weights);
                const asks = segment.stopReason === "stop" || segment.stopReason === "retrieve";
                const tokens = asks ? segment.tokens.slice(0, -1) : segment.tokens;
                children.push({tokens, text: this.model.detokenize(tokens), passageTokens, critique, asksRetrieval: asks, stopReason: segment.stopReason});
            }
            out.push(children);
        }
        return out;
    }

    /** Records nodes so children can rebuild their path (called by the test after the search creates them). */
    public remember(nodes: readonly TreeNode[]): void {
        for (const node of nodes) this.nodes.set(node.id, node);
    }

    public async discard(): Promise<void> {}

    private context(node: TreeNode): number[] {
        const path: TreeNode[] = [];
        for (let n: TreeNode | undefined = node; n != null && n.parent != null; n = this.nodes.get(n.parent)) path.unshift(n);
        const tokens = [...this.prompt];
        for (const n of path) {
            if (this.options.policy === "interleaved") tokens.push(...(n.passageTokens ?? []));
            tokens.push(...n.tokens);
        }
        return tokens;
    }
}
