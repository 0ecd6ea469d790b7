// The CUDA kernels' shared device functions built by the host compiler (build/cmake/cuda-host/
// selfrag_cuda_host.node, see native/cuda/host_replay_addon.cpp), and facts about the CUDA build.
import fs from "node:fs";
import {createRequire} from "node:module";
import path from "node:path";
import {packageRoot} from "../lib/paths.js";

export interface HostReplay {
    extract(logits: Float32Array, rows: number, vocab: number, ids: Int32Array): {
        argmax: Int32Array, argmaxLogprob: Float32Array, logSumExp: Float32Array, reflection: Float32Array,
        status: Int32Array, badIndex: Int32Array
    };
    score(offsets: Int32Array, tokens: Int32Array, logprobs: Float32Array, reflection: Float32Array, reflectionIds: Int32Array,
        weights: {relevance: number, support: number, utility: number, useSequenceScore: boolean, referenceLongFormUtility: boolean}): Float64Array;
    threadsPerRow: number;
}

export interface BuildManifest {
    builds: {variant: string, addon: string, cudaKernels?: {built: boolean, nvcc?: string, reason?: string}}[];
    cudaHost?: string;
}

export function readBuildManifest(buildDir = path.join(packageRoot, "build")): BuildManifest {
    return JSON.parse(fs.readFileSync(path.join(buildDir, "variants.json"), "utf8")) as BuildManifest;
}

export function loadHostReplay(): HostReplay {
    const manifest = readBuildManifest();
    if (manifest.cudaHost == null) throw new Error("build/variants.json names no cudaHost addon: run `npm run build:addon` (cmake-js build)");
    return createRequire(import.meta.url)(path.join(packageRoot, manifest.cudaHost)) as HostReplay;
}
