import {requirePositiveInteger} from "../errors.js";
import type {Passage} from "./prompts.js";
import type {CritiqueScore} from "./SegmentScorer.js";

/** One segment of a long-form answer in the search tree (the root holds the question). */
export interface TreeNode {
    id: number;
    parent: number | null;
    depth: number;
    /** The passage the segment was generated from, and its index in that node's passage list. */
    passage?: Passage;
    passageIndex?: number;
    /** Token ids of the passage as appended (`[Retrieval]<paragraph>...</paragraph>`). */
    passageTokens?: Int32Array;
    /** Segment text with its reflection tokens, up to the retrieval request. */
    text: string;
    /** Segment token ids carried into the children's context (the retrieval request removed). */
    tokens: Int32Array;
    critique?: CritiqueScore;
    /** Product of the candidate scores along the path (the root's is 1). */
    score: number;
    /** The segment ended asking for more evidence ([Retrieval], or [No Retrieval] overruled by the threshold). */
    asksRetrieval: boolean;
    stopReason: string;
    /** Kept in the beam at its depth. */
    inBeam: boolean;
    /** Why the node asked for retrieval but was not expanded (e.g. its context is full). */
    notExpanded?: string;
}

export interface GeneratedSegment {
    tokens: Int32Array;
    text: string;
    passageTokens: Int32Array;
    critique: CritiqueScore;
    asksRetrieval: boolean;
    stopReason: string;
}

export interface ExpandRequest {
    node: TreeNode;
    passages: readonly Passage[];
    /** Ids the children will get, one per passage (sources key their state by them). */
    childIds: readonly number[];
}

/**
 * Where segments come from. The engine's source forks KV state; tests plug in scripted sources
 * and a re-encoding oracle. `expand` generates one child segment per passage for every request,
 * all in one go; `discard` frees whatever holds a node's state once it can no longer be expanded.
 */
export interface SegmentSource {
    expand(requests: readonly ExpandRequest[]): Promise<GeneratedSegment[][]>;
    discard(nodes: readonly TreeNode[]): Promise<void>;
    /** A reason the node's children would not fit (context), or undefined. */
    cannotExpand?(node: TreeNode, passages: readonly Passage[]): string | undefined;
}

export interface TreeSearchOptions {
    /** Children kept per depth (default 2). */
    beamWidth?: number;
    /** Depths 1..maxDepth-1 are generated (default 7, as the reference). */
    maxDepth?: number;
    /** Passages for a node's children: static lists, or a retriever queried with the text so far. */
    passagesFor: (node: TreeNode, path: readonly TreeNode[]) => Promise<readonly Passage[]> | readonly Passage[];
}

export type SearchStop = "no-retrieval-requested" | "max-depth" | "context" | "no-passages";

export interface TreeSearchResult {
    nodes: TreeNode[];
    /** Node ids kept at each depth, best first (depth 0: the root). */
    levels: number[][];
    /** The best node of the deepest non-empty level and its ancestors, root excluded (empty when no segment was generated). */
    bestPath: TreeNode[];
    stop: SearchStop;
}

/**
 * Segment-level beam search (docs/self-rag.md, "Long form"): every kept node that asks for retrieval
 * gets one child per passage; a child's score is its parent's times its own critique score; the
 * best `beamWidth` children of each depth stay. The answer is the best path of the deepest level
 * that has nodes, as in the reference script.
 */
export class TreeSearch {
    public static async run(root: TreeNode, source: SegmentSource, options: TreeSearchOptions): Promise<TreeSearchResult> {
        const beamWidth = requirePositiveInteger("beamWidth", options.beamWidth ?? 2, 64);
        const maxDepth = requirePositiveInteger("maxDepth", options.maxDepth ?? 7, 64);
        const nodes: TreeNode[] = [root];
        const levels: number[][] = [[root.id]];
        const pathOf = (node: TreeNode) => {
            const path: TreeNode[] = [];
            for (let n: TreeNode | undefined = node; n != null && n.parent != null; n = nodes[n.parent]) path.unshift(n);
            return path;
        };
        let stop: SearchStop = "max-depth";
        try {
            for (let depth = 1; depth < maxDepth; depth++) {
                const frontier = levels[depth - 1].map((id) => nodes[id]).filter((n) => n.asksRetrieval);
                if (frontier.length === 0) {
                    stop = "no-retrieval-requested";
                    break;
                }
                const requests: ExpandRequest[] = [];
                let nextId = nodes.length;
                for (const node of frontier) {
                    const passages = await options.passagesFor(node, pathOf(node));
                    if (passages.length === 0) {
                        node.notExpanded = "no passages";
                        continue;
                    }
                    const reason = source.cannotExpand?.(node, passages);
                    if (reason != null) {
                        node.notExpanded = reason;
                        continue;
                    }
                    requests.push({node, passages, childIds: passages.map(() => nextId++)});
                }
                if (requests.length === 0) {
                    stop = frontier.some((n) => n.notExpanded === "no passages") ? "no-passages" : "context";
                    break;
                }
                const generated = await source.expand(requests);
                const children: TreeNode[] = [];
                requests.forEach((request, r) => {
                    generated[r].forEach((segment, i) => {
                        const child: TreeNode = {
                            id: request.childIds[i], parent: request.node.id, depth, passage: request.passages[i], passageIndex: i,
                            passageTokens: segment.passageTokens, text: segment.text, tokens: segment.tokens,
                            critique: segment.critique, score: request.node.score * segment.critique.score,
                            asksRetrieval: segment.asksRetrieval, stopReason: segment.stopReason, inBeam: false
                        };
                        nodes.push(child);
                        children.push(child);
                    });
                });
                // Stable sort: equal scores keep generation order, so ties go to the earlier candidate.
                const ranked = [...children].sort((a, b) => b.score - a.score);
                const kept = ranked.slice(0, beamWidth);
                for (const node of kept) node.inBeam = true;
                levels.push(kept.map((n) => n.id));
                // Expanded parents, children out of the beam and kept leaves will never expand again.
                await source.discard([...levels[depth - 1].map((id) => nodes[id]), ...ranked.slice(beamWidth),
                    ...kept.filter((n) => !n.asksRetrieval)]);
            }
        } finally {
            await source.discard(levels[levels.length - 1].map((id) => nodes[id]));
        }
        let deepest = levels.length - 1;
        while (deepest > 0 && levels[deepest].length === 0) deepest--;
        // No segment at all (no passages for the root, its passages cannot fit, or maxDepth 1): an
        // empty path, `stop` and the root's `notExpanded` say why; the caller decides.
        return {nodes, levels, bestPath: deepest === 0 ? [] : pathOf(nodes[levels[deepest][0]]), stop};
    }
}
