// The long-form search of the released `run_long_form_static.py` (`call_model_beam_batch` and
// `run_step_generation_batch`), ported decision for decision for the reference profile. It works
// on strings as the script does: a child's context is the string `prompt + prev_generation`,
// re-tokenized whole; every child generates its full token budget (not stopped at [Retrieval]) and
// is scored over all of it; the retrieval request is found in the text. Its known bugs are kept,
// because the profile exists to reproduce the published numbers:
//   - inside the child loop `prev_generation` is overwritten by each child's own text, so child
//     i >= 1 is stored with `prompt + (child i-1)'s text` as its context, which its own children
//     then inherit;
//   - the sequence score is never passed to the scorer, and the utility term is read with the
//     support token ids (always 0): the caller's weights say so (`referenceLongFormUtility`);
//   - a [No Retrieval] in a child's text is re-decided with (P(ret) + P(continue)) / (P(ret) +
//     P(no ret)) > threshold and the text rebuilt, which also appends one more marker at its end.
// Generation and scoring are injected, so tests can script a generator and check the contexts.
import {R} from "../engine/ReflectionTokens.js";
import {formatPassage, type Passage} from "./prompts.js";
import type {RetrievalMode} from "./RetrievalDecision.js";
import {retrievalProbability} from "./scoring.js";
import type {CritiqueScore, CritiqueWeights, ScoredSegment} from "./SegmentScorer.js";
import type {ReferencePath} from "./referenceText.js";

/** One greedy generation, with the text as vLLM returns it when special tokens are kept. */
export interface ReferenceGeneration extends ScoredSegment {
    text: string;
    stopReason: string;
}

/**
 * Where generations come from: greedy, up to `maxNewTokens`, stopped only by EOS (or the end of the
 * context), from each context string tokenized whole. A context that cannot be encoded at all (it
 * fills the context window) gives `undefined`.
 */
export interface ReferenceGenerator {
    generate(contexts: readonly string[], maxNewTokens: number): Promise<(ReferenceGeneration | undefined)[]>;
}

export interface ReferenceSearchOptions {
    mode: RetrievalMode;
    threshold: number;
    beamWidth: number;
    maxDepth: number;
    maxNewTokens: number;
    weights: CritiqueWeights;
    ignoreCont: boolean;
    /** The token ids of the 15 reflection tokens (R order), to find [No Retrieval] in a generation. */
    reflectionIds: Int32Array;
    score: (segments: readonly ScoredSegment[], weights: CritiqueWeights) => CritiqueScore[];
    onNode?: (node: ReferenceNode) => void;
}

/** A node of `prediction_tree`. */
export interface ReferenceNode {
    id: number;
    /** The context this node's children are generated from, minus this node's own text (the script's "prompt"). */
    prompt: string;
    /** The generated text after the [No Retrieval] re-decision (the script's "pred"). */
    pred: string;
    /** `pred` up to its first [Retrieval] (the script's "processed_pred"). */
    processedPred: string;
    /** Product of the scores along the path; null at the root. */
    score: number | null;
    ctx: Passage | null;
    parent: number | null;
    depth: number;
    critique?: CritiqueScore;
    stopReason?: string;
    inBeam: boolean;
    /** Why the node wanted children but has none. */
    notExpanded?: string;
}

export interface ReferenceSearchResult {
    retrieve: {decision: boolean, p: number};
    /** Without retrieval: the `[No Retrieval]` generation up to its first blank line. */
    noRetrievalText?: string;
    tree: ReferenceNode[];
    /** Node ids per depth after the beam cut (depth 0: the root). */
    levels: number[][];
    /**
     * The deepest level's paths, in beam order (empty without retrieval or without any child):
     * `nodes` root to leaf (the script's best_selections), `kept` those left by ignoreCont, to
     * which `sentences`, `originals` and `ctxs` correspond.
     */
    paths: (ReferencePath & {nodes: number[], kept: number[]})[];
    stop: "no-retrieval" | "max-depth" | "no-retrieval-requested" | "no-passages" | "context";
}

const PROBE_TOKENS = 25;

export class ReferenceBeamSearch {
    public static async run(prompt: string, passages: readonly Passage[], generator: ReferenceGenerator,
        options: ReferenceSearchOptions): Promise<ReferenceSearchResult> {
        const ids = options.reflectionIds;
        const retrieve = await ReferenceBeamSearch.decide(prompt, generator, options);
        if (!retrieve.decision) {
            const [generation] = await generator.generate([prompt + "[No Retrieval]"], options.maxNewTokens);
            return {retrieve, noRetrievalText: (generation?.text ?? "").split("\n\n")[0], tree: [], levels: [], paths: [], stop: "no-retrieval"};
        }
        const tree: ReferenceNode[] = [{id: 0, prompt, pred: "[Retrieval]", processedPred: "", score: null, ctx: null, parent: null, depth: 0, inBeam: true}];
        const levels: number[][] = [[0]];
        let terminated = false;
        let skippedForContext = false;
        for (let depth = 1; depth < options.maxDepth && !terminated; depth++) {
            const expanding: ReferenceNode[] = [];
            for (const id of levels[depth - 1]) {
                const node = tree[id];
                if (node.pred === "</s>") {
                    terminated = true; // the script stops after this level, but still expands the level's other nodes
                    continue;
                }
                if (node.pred.includes("[Retrieval]")) expanding.push(node);
            }
            // The script expands the nodes one after another; their generations are independent, so
            // they run together and are numbered in the script's order afterwards.
            const generated = await Promise.all(expanding.map((node) => generator.generate(
                passages.map((p) => node.prompt + node.processedPred + formatPassage(p)), options.maxNewTokens)));
            const level: number[] = [];
            expanding.forEach((node, n) => {
                const outputs = generated[n];
                if (outputs.length === 0) {
                    node.notExpanded = "no passages";
                    return;
                }
                if (outputs.some((o) => o == null)) {
                    node.notExpanded = "context";
                    skippedForContext = true;
                    return;
                }
                const critiques = options.score(outputs as ReferenceGeneration[], options.weights);
                let prevGeneration = node.processedPred;
                outputs.forEach((output, i) => {
                    const pred = redecideNoRetrieval(output!, ids, options.threshold);
                    const child: ReferenceNode = {
                        id: tree.length, prompt: node.prompt + prevGeneration, pred, processedPred: "",
                        score: node.score == null ? critiques[i].score : critiques[i].score * node.score,
                        ctx: passages[i], parent: node.id, depth, critique: critiques[i], stopReason: output!.stopReason, inBeam: false
                    };
                    const at = pred.indexOf("[Retrieval]");
                    prevGeneration = at >= 0 ? pred.slice(0, at) : pred;
                    child.processedPred = prevGeneration;
                    tree.push(child);
                    level.push(child.id);
                    options.onNode?.(child);
                });
            });
            // sorted(..., reverse=True)[:beam_width]: stable, so ties keep generation order.
            const kept = [...level].sort((a, b) => tree[b].score! - tree[a].score!).slice(0, options.beamWidth);
            for (const id of kept) tree[id].inBeam = true;
            levels.push(kept);
            if (kept.length === 0) break; // every later level would be empty too
        }
        let deepest = levels.length - 1;
        while (deepest > 0 && levels[deepest].length === 0) deepest--;
        const paths = deepest === 0 ? [] : levels[deepest].map((leaf) => {
            const nodes: number[] = [];
            for (let id: number | null = leaf; id != null; id = tree[id].parent) nodes.unshift(id);
            const kept = nodes.filter((id) => !options.ignoreCont || !tree[id].processedPred.includes("[No support / Contradictory]"));
            return {
                nodes, kept, sentences: kept.map((id) => tree[id].processedPred), originals: kept.map((id) => tree[id].pred),
                ctxs: kept.map((id) => tree[id].ctx)
            };
        });
        const stop = deepest === options.maxDepth - 1 && deepest > 0 ? "max-depth"
            : passages.length === 0 ? "no-passages" : skippedForContext ? "context" : "no-retrieval-requested";
        return {retrieve, tree, levels, paths, stop};
    }

    /**
     * The root decision. "always" retrieves without looking (the probability at the first position
     * is still reported); "adaptive" generates 25 tokens without passages and retrieves only if
     * [Retrieval] appears before the first blank line and P(ret) / (P(ret) + P(no ret)) at the
     * first position exceeds the threshold; "never" does not retrieve.
     */
    private static async decide(prompt: string, generator: ReferenceGenerator, options: ReferenceSearchOptions): Promise<{decision: boolean, p: number}> {
        if (options.mode === "never") return {decision: false, p: NaN};
        const [probe] = await generator.generate([prompt], options.mode === "always" ? 1 : PROBE_TOKENS);
        const p = probe != null && probe.tokens.length > 0 ? retrievalProbability(probe.reflection[R.retrieval], probe.reflection[R.noRetrieval]) : NaN;
        if (options.mode === "always") return {decision: true, p};
        const asked = probe != null && probe.text.split("\n\n")[0].includes("[Retrieval]");
        return {decision: asked && p > options.threshold, p};
    }
}

/**
 * `run_step_generation_batch`'s rewrite of a generation that contains [No Retrieval]: the k-th
 * [No Retrieval] token is re-decided from that position's probabilities, and the text, split on the
 * marker, is rebuilt with [Retrieval] or [No Retrieval] after every piece (the last one included).
 */
export function redecideNoRetrieval(generation: {text: string, tokens: Int32Array, reflection: Float32Array}, reflectionIds: Int32Array,
    threshold: number): string {
    const {text, tokens, reflection} = generation;
    if (!text.includes("[No Retrieval]")) return text;
    const noRetrievalId = reflectionIds[R.noRetrieval];
    const remap: boolean[] = [];
    for (let i = 0; i < tokens.length; i++) {
        if (tokens[i] !== noRetrievalId) continue;
        const row = reflection.subarray(i * 15, i * 15 + 15);
        const ret = Math.exp(row[R.retrieval]);
        const no = Math.exp(row[R.noRetrieval]);
        const cont = Math.exp(row[R.continueEvidence]);
        remap.push(ret + no !== 0 ? (ret + cont) / (ret + no) > threshold : false);
    }
    return text.split("[No Retrieval]").map((piece, i) => piece + (remap[i] === true ? "[Retrieval]" : "[No Retrieval]")).join("");
}
