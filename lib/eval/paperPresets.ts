// `selfrag eval --paper NAME`: the exact command of the Self-RAG README for each dataset of the
// paper, run under the reference profile. Each preset quotes the command it reproduces.
import type {MetricName} from "./metrics.js";
import {PROFILE_STRATEGIES} from "../selfrag/profiles.js";
import type {Task} from "../selfrag/prompts.js";
import type {RetrievalMode} from "../selfrag/RetrievalDecision.js";
import type {CritiqueWeights} from "../selfrag/SegmentScorer.js";

export interface PaperPreset {
    name: string;
    dataset: string;
    /** The command of the Self-RAG README this preset reproduces (model and file arguments elided). */
    command: string;
    task: Task;
    long: boolean;
    mode: RetrievalMode;
    threshold: number;
    ndocs: number;
    maxNewTokens: number;
    metric: MetricName;
    weights: CritiqueWeights;
    beamWidth?: number;
    maxDepth?: number;
}

// The use flags of the commands: --use_groundness / --use_grounding counts the support term,
// --use_utility the utility term, --use_seqscore the sequence score. The long-form script passes
// neither use_seqscore to its scorer nor the utility ids (row 13 and 14 of the differences table),
// which the reference profile's long-form weights already encode.
const SHORT_FLAGS: CritiqueWeights = {useSupport: true, useUtility: true, useSequenceScore: true};
const LONG_FLAGS: CritiqueWeights = {useSupport: true, useUtility: true};

/** A preset's settings as question options (under the reference profile); flags given go over them. */
export function presetOptions(preset: PaperPreset): Record<string, unknown> {
    return {profile: PROFILE_STRATEGIES.reference.name, task: preset.task, mode: preset.mode, threshold: preset.threshold, ndocs: preset.ndocs,
        maxNewTokens: preset.maxNewTokens, weights: preset.weights,
        ...(preset.long ? {beamWidth: preset.beamWidth, maxDepth: preset.maxDepth} : {})};
}

export const PAPER_PRESETS: Readonly<Record<string, PaperPreset>> = {
    popqa: {
        name: "popqa", dataset: "PopQA long tail (eval_data/popqa_longtail_w_gs.jsonl)",
        command: "python run_short_form.py --input_file eval_data/popqa_longtail_w_gs.jsonl --mode MODE --max_new_tokens 100 " +
            "--threshold 0.2 --metric match --ndocs 10 --use_groundness --use_utility --use_seqscore --dtype half",
        // The README leaves MODE to the reader; adaptive is the one the threshold applies to (override with --mode).
        task: "none", long: false, mode: "adaptive", threshold: 0.2, ndocs: 10, maxNewTokens: 100, metric: "match", weights: SHORT_FLAGS
    },
    arc_c: {
        name: "arc_c", dataset: "ARC-Challenge (eval_data/arc_challenge_processed.jsonl)",
        command: "python run_short_form.py --input_file eval_data/arc_challenge_processed.jsonl --max_new_tokens 50 --threshold 0.2 " +
            "--metric match --ndocs 5 --use_groundness --use_utility --use_seqscore --task arc_c",
        task: "arc_c", long: false, mode: "adaptive", threshold: 0.2, ndocs: 5, maxNewTokens: 50, metric: "match", weights: SHORT_FLAGS
    },
    pubhealth: {
        name: "pubhealth", dataset: "PubHealth (eval_data/health_claims_processed.jsonl)",
        command: "python run_short_form.py --input_file eval_data/health_claims_processed.jsonl --max_new_tokens 50 --threshold 0.2 " +
            "--metric match --ndocs 5 --use_groundness --use_utility --use_seqscore --task fever",
        task: "fever", long: false, mode: "adaptive", threshold: 0.2, ndocs: 5, maxNewTokens: 50, metric: "match", weights: SHORT_FLAGS
    },
    asqa: {
        name: "asqa", dataset: "ASQA (eval_data/asqa_eval_gtr_top100.json)",
        command: "python run_long_form_static.py --ndocs 5 --max_new_tokens 300 --threshold 0.2 --use_grounding --use_utility " +
            "--use_seqscore --task asqa --input_file eval_data/asqa_eval_gtr_top100.json --max_depth 7 --mode always_retrieve",
        task: "asqa", long: true, mode: "always", threshold: 0.2, ndocs: 5, maxNewTokens: 300, metric: "str_em", weights: LONG_FLAGS,
        beamWidth: 2, maxDepth: 7
    },
    factscore: {
        name: "factscore", dataset: "FactScore (eval_data/factscore_unlabeled_alpaca_13b_retrieval.jsonl)",
        command: "python run_long_form_static.py --ndocs 5 --max_new_tokens 300 --threshold 0.2 --use_grounding --use_utility " +
            "--use_seqscore --task factscore --input_file eval_data/factscore_unlabeled_alpaca_13b_retrieval.jsonl --max_depth 7",
        // FactScore is scored by its own tool on the output file; str_em applies only to records with qa_pairs.
        task: "factscore", long: true, mode: "adaptive", threshold: 0.2, ndocs: 5, maxNewTokens: 300, metric: "str_em", weights: LONG_FLAGS,
        beamWidth: 2, maxDepth: 7
    }
};

/** `selfrag eval --paper list`. */
export function describePresets(): string {
    const lines = ["Paper presets (selfrag eval --paper NAME --model FILE --input FILE --output FILE; any flag overrides):", ""];
    for (const p of Object.values(PAPER_PRESETS)) {
        const use = [p.weights.useSupport ? "support" : "", p.weights.useUtility ? "utility" : "", p.weights.useSequenceScore ? "seqscore" : ""]
            .filter((x) => x !== "").join("+");
        lines.push(`  ${p.name.padEnd(10)} ${p.dataset}`);
        lines.push(`             ${p.long ? "long form" : "short form"}, task ${p.task}, mode ${p.mode}, threshold ${p.threshold}, ndocs ${p.ndocs}, ` +
            `max-new-tokens ${p.maxNewTokens}${p.long ? `, beam ${p.beamWidth}, max-depth ${p.maxDepth}` : ""}, terms ${use}, metric ${p.metric}, profile reference`);
        lines.push(`             reproduces: ${p.command}`);
    }
    return lines.join("\n");
}
