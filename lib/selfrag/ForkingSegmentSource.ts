import {formatPassage, type Passage} from "./prompts.js";
import {R} from "../engine/ReflectionTokens.js";
import type {NativeSegment} from "../engine/types.js";
import type {CritiqueScore, CritiqueWeights, SegmentScorer} from "./SegmentScorer.js";
import type {SelfRagModel} from "../SelfRagModel.js";
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
        const plan = this.plan(requests);
        const [result] = await runExpansionPlans(this.model, this.scorer, [plan], this.options);
        return plan.finish(result);
    }

    /**
     * The engine work one depth of this search needs, as data, so the plans of several searches
     * can run in the same decode calls (runExpansionPlans). Slots are taken here; nothing is
     * decoded until the plan runs.
     */
    public plan(requests: readonly ExpandRequest[]): ExpansionPlan {
        const plan: ExpansionPlan = {trims: [], rebuild: [], forks: [], appends: [], items: [], finish: () => []};
        // 1. Each parent's prefix. "reference": drop the parent's passage and re-append its segment
        //    (trim back to the context the passage was added to); "interleaved": the parent's slot
        //    already holds context + passage + segment.
        for (const {node} of requests) {
            const held = this.held.get(node.id)!;
            if (held.prefixReady) continue;
            if (this.options.policy === "reference") {
                plan.trims.push({seq: held.seq, nPast: held.baseLength});
                if (node.tokens.length > 0) plan.rebuild.push({seq: held.seq, tokens: node.tokens});
            }
            held.prefixLength = this.prefixLength(node);
            held.prefixReady = true;
        }
        // 2. One slot per child: forks of the parent, the last child takes the parent's slot over.
        const childSeqs: number[][] = [];
        const passageTokens: Int32Array[][] = [];
        const bases: number[] = [];
        for (const {node, passages} of requests) {
            const held = this.held.get(node.id)!;
            const fresh = this.model.context.acquire(passages.length - 1);
            for (const seq of fresh) plan.forks.push({src: held.seq, dst: seq});
            const seqs = [...fresh, held.seq];
            bases.push(held.prefixLength);
            this.held.delete(node.id);
            childSeqs.push(seqs);
            const tokens = passages.map((p) => this.model.tokenize(formatPassage(p), {bos: false}));
            passageTokens.push(tokens);
            seqs.forEach((seq, i) => plan.appends.push({seq, tokens: tokens[i]}));
        }
        plan.items = childSeqs.flat().map((seq) => ({seq, maxTokens: this.options.maxNewTokens}));
        plan.finish = ({segments, critiques}) => {
            let k = 0;
            return requests.map((request, r) => childSeqs[r].map((seq, i) => {
                const segment = segments[k];
                const critique = critiques[k++];
                const asksRetrieval = segment.stopReason === "stop" || segment.stopReason === "retrieve";
                // The retrieval request is not part of the segment: the next passage starts with [Retrieval].
                const tokens = asksRetrieval ? segment.tokens.slice(0, segment.tokens.length - 1) : segment.tokens;
                this.held.set(request.childIds[i], {seq, prefixLength: 0, baseLength: bases[r], prefixReady: false});
                return {tokens, text: this.model.detokenize(tokens), passageTokens: passageTokens[r][i], critique,
                    asksRetrieval, stopReason: segment.stopReason};
            }));
        };
        return plan;
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

/** One depth of one search: the engine operations it needs, and how to read their results back. */
export interface ExpansionPlan {
    trims: {seq: number, nPast: number}[];
    rebuild: {seq: number, tokens: Int32Array}[];
    forks: {src: number, dst: number}[];
    appends: {seq: number, tokens: Int32Array}[];
    items: {seq: number, maxTokens: number}[];
    finish(result: {segments: NativeSegment[], critiques: CritiqueScore[]}): GeneratedSegment[][];
}

/**
 * Runs the plans of several searches together: all trims, one evaluate for the rebuilt
 * segments, the forks, one evaluate for every child's passage, one generate for every child (one
 * llama_decode per step for all of them) and one scoring call. Returns each plan's share.
 */
export async function runExpansionPlans(model: SelfRagModel, scorer: SegmentScorer, plans: readonly ExpansionPlan[],
    options: {threshold: number, weights?: CritiqueWeights}): Promise<{segments: NativeSegment[], critiques: CritiqueScore[]}[]> {
    const ctx = model.context;
    for (const plan of plans) for (const t of plan.trims) await ctx.trim(t.seq, t.nPast);
    const rebuild = plans.flatMap((p) => p.rebuild);
    if (rebuild.length > 0) await ctx.evaluate(rebuild);
    for (const plan of plans) for (const f of plan.forks) await ctx.fork(f.src, f.dst);
    await ctx.evaluate(plans.flatMap((p) => p.appends));
    const segments = await ctx.generate(plans.flatMap((p) => p.items), {
        stopTokens: Int32Array.of(model.reflection.id("[Retrieval]")),
        gate: {noRetrievalIndex: R.noRetrieval, retrievalIndex: R.retrieval, continueIndex: R.continueEvidence, threshold: options.threshold}
    });
    const critiques = scorer.score(segments, options.weights);
    let offset = 0;
    return plans.map((plan) => {
        const share = {segments: segments.slice(offset, offset + plan.items.length), critiques: critiques.slice(offset, offset + plan.items.length)};
        offset += plan.items.length;
        return share;
    });
}
