// Long form under the reference profile: the script's search (ReferenceBeamSearch) on the engine,
// and its output (ALCE-style citations for ASQA / ELI5, FactScore's plain text otherwise).
import type {EngineModel} from "../engine/EngineModel.js";
import type {SlotLease} from "../engine/SlotLease.js";
import {SelfRagError} from "../errors.js";
import type {RunControl} from "./events.js";
import type {LongFormResult, LongFormSegment} from "./LongForm.js";
import type {Passage, Task} from "./prompts.js";
import {ReferenceBeamSearch, type ReferenceGeneration, type ReferenceGenerator, type ReferenceSearchOptions} from "./ReferenceBeamSearch.js";
import {referenceAlceOutput, referenceFactScoreOutput, referencePostprocess} from "./referenceText.js";
import {sharedPrefixLength} from "./sharedPrefix.js";

/**
 * Generations on the engine for the reference search. Every context string is tokenized whole (as
 * vLLM does with the script's concatenated strings); the contexts of one expansion share their
 * longest common token prefix, which is decoded once into all of their slots, so only each
 * passage and its generation are per child.
 */
export class EngineReferenceGenerator implements ReferenceGenerator {
    /** Tokens through llama_decode, and what the script's schedule encodes (every context whole). */
    public evaluatedTokens = 0;
    public referenceTokens = 0;
    public readonly warnings: string[] = [];

    public constructor(private readonly model: EngineModel, private readonly lease: SlotLease) {}

    public async generate(contexts: readonly string[], maxNewTokens: number): Promise<(ReferenceGeneration | undefined)[]> {
        if (contexts.length === 0) return [];
        const ctx = this.model.context;
        const room = ctx.info.contextPerSequence;
        const tokens = contexts.map((c) => this.model.tokenize(c));
        const fits = tokens.map((t) => t.length < room);
        if (fits.some((f) => !f)) {
            const longest = Math.max(...tokens.map((t) => t.length));
            this.warnings.push(`a context of ${longest} tokens does not fit the ${room} tokens per sequence: that node was not expanded`);
            return contexts.map(() => undefined);
        }
        const common = sharedPrefixLength(tokens);
        const seqs = this.lease.take(contexts.length);
        try {
            const [first, ...others] = seqs;
            const work: Promise<unknown>[] = [];
            if (common > 0) {
                const shared = others.length > 0 && ctx.info.unifiedKv;
                work.push(ctx.prefill(first, tokens[0].subarray(0, common), shared ? {shareWith: others} : {}));
                if (!shared) for (const seq of others) work.push(ctx.fork(first, seq));
            }
            const generations = await Promise.all(seqs.map(async (seq, i) => {
                const prefilled = ctx.prefill(seq, tokens[i].subarray(common));
                // vLLM stops at the end of the context too: the budget is what is left of it.
                const budget = Math.min(maxNewTokens, room - tokens[i].length);
                const segment = await ctx.generateOne(seq, budget);
                await prefilled;
                return segment;
            }));
            await Promise.all(work);
            this.evaluatedTokens += common;
            return generations.map((segment, i) => {
                this.evaluatedTokens += tokens[i].length - common + Math.max(0, segment.tokens.length - 1);
                this.referenceTokens += tokens[i].length + segment.tokens.length;
                return {...segment, text: this.model.detokenize(segment.tokens)};
            });
        } finally {
            await this.lease.put(...seqs);
        }
    }
}

export interface ReferenceLongFormSettings extends Omit<ReferenceSearchOptions, "reflectionIds" | "score" | "onNode"> {
    task: Task;
}

/** Runs the reference search for one question on leased slots and shapes the answer. */
export async function answerLongReference(model: EngineModel, lease: SlotLease, prompt: string, passages: readonly Passage[],
    settings: ReferenceLongFormSettings, score: ReferenceSearchOptions["score"], control: RunControl): Promise<LongFormResult> {
    const generator = new EngineReferenceGenerator(model, lease);
    const result = await ReferenceBeamSearch.run(prompt, passages, generator, {
        ...settings, reflectionIds: model.reflection.ids, score,
        onNode: (node) => control.onEvent?.({
            type: "segment", node: node.id, parent: node.parent!, depth: node.depth, passage: node.ctx ?? undefined, text: node.pred,
            critique: node.critique!, score: node.score!, asksRetrieval: node.pred.includes("[Retrieval]"), stopReason: node.stopReason ?? ""
        })
    });
    const stats = {evaluatedTokens: generator.evaluatedTokens, referenceTokens: generator.referenceTokens};
    const warnings = [...generator.warnings];
    if (result.noRetrievalText != null || result.paths.length === 0) {
        // Without retrieval, or a search that produced no segment (the script crashes there):
        // the [No Retrieval] answer, post-processed.
        let text = result.noRetrievalText;
        if (text == null) {
            warnings.push(passages.length === 0 ? "retrieval was decided but no passages were given: answered without retrieval"
                : `the search generated no segment (stop: ${result.stop}): answered without retrieval`);
            const [generation] = await generator.generate([prompt + "[No Retrieval]"], settings.maxNewTokens);
            if (generation == null) throw new SelfRagError("the prompt does not fit the context", "CONTEXT_OVERFLOW");
            text = generation.text.split("\n\n")[0];
        }
        const clean = referencePostprocess(text);
        return {
            answer: clean, retrieve: result.retrieve, segments: [{text, clean, score: 1, stopReason: "no-retrieval", tokens: generatedTokens(model, text)}], docs: [], tree: [],
            ...(warnings.length > 0 ? {warnings} : {}),
            stats: {...stats, nodes: 0, depth: 0, stop: result.stop === "no-retrieval" ? "no-retrieval" : result.stop}
        };
    }
    const alce = settings.task === "asqa" || settings.task === "eli5";
    const {output, docs} = alce ? referenceAlceOutput<Passage>(result.paths) : {output: referenceFactScoreOutput(result.paths), docs: [] as Passage[]};
    const best = result.paths[0];
    const segments: LongFormSegment[] = best.kept.slice(1).map((id, k) => {
        const node = result.tree[id];
        return {text: node.pred, clean: referencePostprocess(node.processedPred), ...(node.ctx != null ? {passage: node.ctx} : {}),
            ...(alce ? {citation: k + 1} : {}), score: node.score!, critique: node.critique, stopReason: node.stopReason ?? "",
            tokens: generatedTokens(model, node.pred)};
    });
    return {
        answer: output, retrieve: result.retrieve, segments, docs,
        tree: result.tree.map((n) => ({
            id: n.id, parent: n.parent, depth: n.depth, ...(n.ctx != null ? {passage: n.ctx} : {}), text: n.pred, score: n.score ?? 1,
            ...(n.critique != null ? {critique: n.critique} : {}), asksRetrieval: n.pred.includes("[Retrieval]"), stopReason: n.stopReason ?? "",
            inBeam: n.inBeam, ...(n.notExpanded != null ? {notExpanded: n.notExpanded} : {})
        })),
        intermediate: best.originals,
        ...(warnings.length > 0 ? {warnings} : {}),
        stats: {...stats, nodes: result.tree.length - 1, depth: best.nodes.length - 1, stop: result.stop}
    };
}

/** A segment's tokens as the script counts them: its text re-tokenized (the script re-tokenizes generated text). */
function generatedTokens(model: EngineModel, text: string): number {
    return model.tokenize(text, {bos: false}).length;
}
