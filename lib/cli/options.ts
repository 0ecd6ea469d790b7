import path from "node:path";
import {SelfRagError} from "../errors.js";
import {cacheDir} from "../paths.js";
import {findModelIn} from "../models/ModelStore.js";

// Parsed in contract.ts (loaded by every command), so a command needing only them skips this
// module's model lookup and the GGUF vocabulary reader it imports.
export {integerOption, numberOption} from "./contract.js";

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
