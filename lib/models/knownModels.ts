// Short names `selfrag pull` accepts for public GGUF conversions of the released Self-RAG
// checkpoints (selfrag/selfrag_llama2_7b). These are community conversions on Hugging Face, not
// files this project publishes: `pull` verifies each download (all 15 reflection tokens) before
// keeping it, so a repository that changes or disappears fails loudly instead of silently.

export interface KnownModel {
    /** A node-llama-cpp model URI (hf:user/repo/file.gguf). */
    uri: string;
    description: string;
    /** Approximate download size, for the help text. */
    size: string;
}

export const KNOWN_MODELS: Readonly<Record<string, KnownModel>> = {
    "selfrag-7b": {
        uri: "hf:m4r1/selfrag_llama2_7b-GGUF/selfrag_llama2_7b.q4_k_m.gguf",
        description: "selfrag_llama2_7b, Q4_K_M (the conversion LlamaIndex's SelfRAGPack uses)",
        size: "4.1 GB"
    },
    "selfrag-7b-q2": {
        uri: "hf:QuantFactory/selfrag_llama2_7b-GGUF/selfrag_llama2_7b.Q2_K.gguf",
        description: "selfrag_llama2_7b, Q2_K (smallest, lowest quality)",
        size: "2.5 GB"
    },
    "selfrag-7b-q8": {
        uri: "hf:devilteo911/selfrag_llama2_7b-q8_0/selfrag_llama2_7b-q8_0.gguf",
        description: "selfrag_llama2_7b, Q8_0 (closest to the released weights)",
        size: "7.2 GB"
    }
};

/** The URI of a known name, or undefined. */
export function knownModelUri(name: string): string | undefined {
    return Object.hasOwn(KNOWN_MODELS, name) ? KNOWN_MODELS[name].uri : undefined;
}
