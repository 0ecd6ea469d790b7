import path from "node:path";
import {SelfRagError, invalidParameterError} from "../errors.js";
import {cacheDir} from "../paths.js";
import type {CritiqueWeights} from "../selfrag/SegmentScorer.js";
import {findModelIn} from "../models/ModelStore.js";
import {numberOption} from "./contract.js";

// Parsed in contract.ts (loaded by every command), so a command needing only them skips this
// module's model lookup and the GGUF vocabulary reader it imports.
export {integerOption, numberOption} from "./contract.js";

export const weightOptions = {
    "w-rel": {type: "string"}, "w-sup": {type: "string"}, "w-use": {type: "string"}, "no-seqscore": {type: "boolean"},
    // The scripts' use flags (what the reference profile counts only when flagged).
    "use-groundness": {type: "boolean"}, "use-grounding": {type: "boolean"}, "use-utility": {type: "boolean"}, "use-seqscore": {type: "boolean"}
} as const;

export interface WeightValues {
    "w-rel"?: string; "w-sup"?: string; "w-use"?: string; "no-seqscore"?: boolean;
    "use-groundness"?: boolean; "use-grounding"?: boolean; "use-utility"?: boolean; "use-seqscore"?: boolean;
}

/** The critique weights given on the command line; flags not given stay undefined (the profile's defaults apply). */
export function weightsFrom(values: WeightValues): CritiqueWeights {
    if (values["no-seqscore"] && values["use-seqscore"]) throw invalidParameterError("--no-seqscore / --use-seqscore", "one of them", "both");
    return {
        relevance: numberOption("--w-rel", values["w-rel"]),
        support: numberOption("--w-sup", values["w-sup"]),
        utility: numberOption("--w-use", values["w-use"]),
        useSequenceScore: values["no-seqscore"] ? false : values["use-seqscore"] ? true : undefined,
        useSupport: values["use-groundness"] || values["use-grounding"] ? true : undefined,
        useUtility: values["use-utility"] ? true : undefined
    };
}

export {cacheDir};

/**
 * The model to use when none is given: $SELFRAG_MODEL, else in the cache's models/ folder the
 * default `selfrag pull` recorded (if the file is still there), else a selfrag*.gguf, else any other
 * GGUF whose vocabulary has the 15 reflection tokens (metadata only).
 */
export function findDefaultModel(): string | undefined {
    const fromEnv = process.env.SELFRAG_MODEL;
    if (fromEnv != null && fromEnv !== "") return fromEnv;
    return findModelIn(path.join(cacheDir(), "models"))?.path;
}

export function requireModel(flagValue: string | undefined): string {
    const model = flagValue ?? findDefaultModel();
    if (model == null) {
        throw new SelfRagError(`no model given and no pulled Self-RAG model found in ${path.join(cacheDir(), "models")}: ` +
            "run `selfrag pull selfrag-7b` (or `selfrag pull <hf:user/repo:quant | URL | file.gguf>`), pass --model FILE.gguf or set SELFRAG_MODEL",
        "MODEL_NOT_FOUND");
    }
    return model;
}
