import type {EngineModel} from "../engine/EngineModel.js";
import {R} from "../engine/ReflectionTokens.js";
import type {SlotLease} from "../engine/SlotLease.js";
import type {SegmentEvent} from "./events.js";
import {fitPassage, truncationWarning} from "./PassageFit.js";
import {formatPassage, type Passage} from "./prompts.js";
import type {CritiqueWeights, SegmentScorer} from "./SegmentScorer.js";
import {sharedPrefixLength} from "./sharedPrefix.js";
import type {ContextPolicy} from "./plan.js";
import type {ExpandRequest, GeneratedSegment, SegmentSource, TreeNode} from "./TreeSearch.js";

export type {ContextPolicy};

/**
 * What a child sees before its passage (ContextPolicy).
 * - the reference policy: the prompt and the generated text of the path, no earlier passages (the released
 *   script's behaviour, and the default for comparability);
 * - "interleaved": earlier passages stay in context, as in Self-RAG's training data.
 */

export interface ForkingSourceOptions {
    policy: ContextPolicy;
    maxNewTokens: number;
    threshold: number;
    weights?: CritiqueWeights;
    /** Called as each child's segment is generated and scored. */
    onSegment?: (event: SegmentEvent) => void;
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
 * The engine's segment source for one search: a node's prefix is encoded once and its children
 * fork it, so each child encodes only its passage and its own tokens. Slots come from the
 * question's lease (beamWidth x passages); the last child of a node takes over the node's slot.
 * A depth's work is submitted at once (trim, rebuild, forks, passages, generations: ordered per
 * slot by the engine) and each child is scored as soon as its own generation stops; other
 * questions' work shares the same decode steps.
 */
export class ForkingSegmentSource implements SegmentSource {
    private readonly held = new Map<number, Held>();
    /** Passage tokens as checked by cannotExpand, reused by expand (keyed node:index). */
    private readonly fitted = new Map<string, Int32Array>();
    /** Passages truncated to fit (first level), for the answer's warnings. */
    public readonly warnings: string[] = [];

    public constructor(private readonly model: EngineModel, private readonly scorer: SegmentScorer,
        private readonly options: ForkingSourceOptions, private readonly lease: SlotLease,
        root: TreeNode, rootSeq: number, rootLength: number) {
        this.held.set(root.id, {seq: rootSeq, prefixLength: rootLength, baseLength: rootLength, prefixReady: true});
    }

    /** Tokens a node's children would hold before their passage (for the context check). */
    public prefixLength(node: TreeNode): number {
        const held = this.held.get(node.id);
        if (held == null) return Infinity;
        if (held.prefixReady) return held.prefixLength;
        return this.options.policy !== "interleaved"
            ? held.baseLength + node.tokens.length
            : held.baseLength + (node.passageTokens?.length ?? 0) + node.tokens.length;
    }

    /**
     * The passages of a node's children as tokens. The first level follows short form's rule: a
     * passage longer than the room left is truncated, with a warning; deeper levels keep their
     * passages whole (a node whose children cannot fit is not expanded: `stats.stop` "context").
     */
    private passageTokens(node: TreeNode, passages: readonly Passage[]): (Int32Array | undefined)[] {
        const perSequence = this.model.context.info.contextPerSequence;
        const room = perSequence - this.prefixLength(node) - this.options.maxNewTokens;
        return passages.map((p, i) => {
            const key = `${node.id}:${i}`;
            const cached = this.fitted.get(key);
            if (cached != null) return cached;
            const fitted = node.parent == null ? fitPassage(this.model, p, room) : {tokens: this.model.tokenize(formatPassage(p), {bos: false})};
            if (fitted?.truncatedFrom != null) this.warnings.push(truncationWarning(i, p, fitted.truncatedFrom, fitted.tokens.length, perSequence));
            if (fitted != null) this.fitted.set(key, fitted.tokens);
            return fitted?.tokens;
        });
    }

    public cannotExpand(node: TreeNode, passages: readonly Passage[]): string | undefined {
        const perSequence = this.model.context.info.contextPerSequence;
        const tokens = this.passageTokens(node, passages);
        if (tokens.some((t) => t == null)) {
            return `context full: the prompt (${this.prefixLength(node)} tokens) and maxNewTokens (${this.options.maxNewTokens}) ` +
                `leave no room for a passage in ${perSequence} tokens per sequence`;
        }
        const longest = Math.max(...tokens.map((t) => t!.length));
        const needed = this.prefixLength(node) + longest + this.options.maxNewTokens;
        return needed > perSequence
            ? `context full: the path so far (${this.prefixLength(node)} tokens), a passage (${longest}) and maxNewTokens ` +
              `(${this.options.maxNewTokens}) need ${needed} of ${perSequence} tokens per sequence`
            : undefined;
    }

    public async expand(requests: readonly ExpandRequest[]): Promise<GeneratedSegment[][]> {
        const ctx = this.model.context;
        const stop = {
            stopTokens: Int32Array.of(this.model.reflection.id("[Retrieval]")),
            gate: {noRetrievalIndex: R.noRetrieval, retrievalIndex: R.retrieval, continueIndex: R.continueEvidence, threshold: this.options.threshold}
        };
        const work: Promise<unknown>[] = [];
        return Promise.all(requests.map(async (request) => {
            const {node, passages} = request;
            const held = this.held.get(node.id)!;
            // 1. The node's prefix. The reference policy: drop the node's passage and re-append its segment
            //    (trim back to the context the passage was added to); "interleaved": the slot already
            //    holds context + passage + segment.
            if (!held.prefixReady) {
                const prefixLength = this.prefixLength(node);
                if (this.options.policy !== "interleaved") {
                    work.push(ctx.trim(held.seq, held.baseLength));
                    if (node.tokens.length > 0) work.push(ctx.prefill(held.seq, node.tokens));
                }
                held.prefixLength = prefixLength;
                held.prefixReady = true;
            }
            // 2. One slot per child: forks of the node, the last child takes the node's slot over.
            //    The passages' common leading tokens are decoded once, into every child's slot
            //    together (unified KV: after the forks) or into the node's before it is forked.
            const seqs = [...this.lease.take(passages.length - 1), held.seq];
            const forks = seqs.slice(0, -1);
            const base = held.prefixLength;
            const passageTokens = this.passageTokens(node, passages) as Int32Array[];
            const common = sharedPrefixLength(passageTokens);
            const together = common > 0 && ctx.info.unifiedKv;
            if (common > 0 && !together) work.push(ctx.prefill(held.seq, passageTokens[0].subarray(0, common)));
            for (const seq of forks) work.push(ctx.fork(held.seq, seq));
            if (together) work.push(ctx.prefill(held.seq, passageTokens[0].subarray(0, common), {shareWith: forks}));
            this.held.delete(node.id);
            for (let i = 0; i < passages.length; i++) this.fitted.delete(`${node.id}:${i}`);
            // 3. Each child: the rest of its passage, then its segment; scored when its own generation stops.
            return Promise.all(seqs.map(async (seq, i): Promise<GeneratedSegment> => {
                const prefilled = ctx.prefill(seq, passageTokens[i].subarray(common));
                const segment = await ctx.generateOne(seq, this.options.maxNewTokens, stop);
                await prefilled;
                await Promise.all(work);
                const [critique] = this.scorer.score([segment], this.options.weights);
                const asksRetrieval = segment.stopReason === "stop" || segment.stopReason === "retrieve";
                // The retrieval request is not part of the segment: the next passage starts with [Retrieval].
                const tokens = asksRetrieval ? segment.tokens.slice(0, segment.tokens.length - 1) : segment.tokens;
                const text = this.model.detokenize(tokens);
                this.held.set(request.childIds[i], {seq, prefixLength: 0, baseLength: base, prefixReady: false});
                this.options.onSegment?.({type: "segment", node: request.childIds[i], parent: node.id, depth: node.depth + 1,
                    passage: passages[i], text, critique, score: node.score * critique.score, asksRetrieval, stopReason: segment.stopReason});
                return {tokens, text, passageTokens: passageTokens[i], critique, asksRetrieval, stopReason: segment.stopReason};
            }));
        }));
    }

    public async discard(nodes: readonly TreeNode[]): Promise<void> {
        const seqs: number[] = [];
        for (const node of nodes) {
            const held = this.held.get(node.id);
            if (held == null) continue;
            this.held.delete(node.id);
            seqs.push(held.seq);
        }
        // Not awaited: a later fork into these slots is ordered after the clear anyway.
        void this.lease.put(...seqs).catch(() => undefined);
    }
}
