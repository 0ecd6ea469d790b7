// The identity of a model file, cheap enough to compute on every start: a distributed run names
// the model it was started with, and a worker holding another model refuses its questions rather
// than answering them with the wrong weights. Hashing a 4-14 GB GGUF would take longer than
// loading it, so the fingerprint hashes the size, the first MiB (the GGUF header: architecture,
// hyper-parameters, tokenizer, tensor table) and the last MiB (the last tensors' weights): two
// different models, or two quantizations of one, differ in these.
import {createHash} from "node:crypto";
import fs from "node:fs/promises";
import {SelfRagError} from "../errors.js";

const MIB = 1 << 20;

/**
 * `sha256:<hex>` of a model file's size, first MiB and last MiB, e.g.
 * `await modelFingerprint("selfrag_llama2_7b.Q4_K_M.gguf")`. The same file gives the same
 * fingerprint on every machine, wherever it is stored.
 */
export async function modelFingerprint(file: string): Promise<string> {
    let handle: fs.FileHandle;
    try {
        handle = await fs.open(file, "r");
    } catch (error) {
        throw new SelfRagError(`no model file at ${file}: ${(error as Error).message}`, "MODEL_NOT_FOUND", {cause: error});
    }
    try {
        const {size} = await handle.stat();
        const hash = createHash("sha256").update(`selfrag-model-fingerprint-v1\n${size}\n`);
        const head = Buffer.alloc(Math.min(MIB, size));
        await handle.read(head, 0, head.length, 0);
        hash.update(head);
        if (size > MIB) {
            const tail = Buffer.alloc(Math.min(MIB, size - MIB));
            await handle.read(tail, 0, tail.length, size - tail.length);
            hash.update(tail);
        }
        return `sha256:${hash.digest("hex")}`;
    } finally {
        await handle.close();
    }
}
