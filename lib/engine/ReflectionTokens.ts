import {SelfRagError} from "../errors.js";

/** The reflection token groups of Self-RAG (docs/self-rag.md, "The model and its reflection tokens"). */
export type ReflectionGroup = "retrieve" | "isRel" | "markup" | "isUse" | "isSup";

/**
 * The 15 reflection tokens in the order of the table in docs/self-rag.md. Every array of reflection
 * log-probs the engine produces (a row per position) uses this order.
 */
export const REFLECTION_TOKENS = [
    {text: "[No Retrieval]", group: "retrieve"},
    {text: "[Retrieval]", group: "retrieve"},
    {text: "[Continue to Use Evidence]", group: "retrieve"},
    {text: "[Irrelevant]", group: "isRel"},
    {text: "[Relevant]", group: "isRel"},
    {text: "<paragraph>", group: "markup"},
    {text: "</paragraph>", group: "markup"},
    {text: "[Utility:1]", group: "isUse"},
    {text: "[Utility:2]", group: "isUse"},
    {text: "[Utility:3]", group: "isUse"},
    {text: "[Utility:4]", group: "isUse"},
    {text: "[Utility:5]", group: "isUse"},
    {text: "[Fully supported]", group: "isSup"},
    {text: "[Partially supported]", group: "isSup"},
    {text: "[No support / Contradictory]", group: "isSup"}
] as const satisfies readonly {text: string, group: ReflectionGroup}[];

export type ReflectionTokenText = (typeof REFLECTION_TOKENS)[number]["text"];
export const REFLECTION_COUNT = REFLECTION_TOKENS.length;

/** Index of each token in a reflection row. */
export const R = {
    noRetrieval: 0,
    retrieval: 1,
    continueEvidence: 2,
    irrelevant: 3,
    relevant: 4,
    paragraphOpen: 5,
    paragraphClose: 6,
    utility: [7, 8, 9, 10, 11],
    fullySupported: 12,
    partiallySupported: 13,
    noSupport: 14
} as const;

/** The padding token the released models add as id 32015; not a reflection token. */
export const PAD_TOKEN = "<pad>";

/**
 * The reflection tokens resolved against one model's vocabulary (by text, never by fixed id).
 *
 * ```ts
 * const tokens = ReflectionTokens.resolve((texts) => model.findTokens(texts));
 * tokens.id("[Relevant]"); // 32004 on the released models
 * ```
 */
export class ReflectionTokens {
    /** Token ids in REFLECTION_TOKENS order. */
    public readonly ids: Int32Array;
    private readonly byText: Map<string, number>;
    private readonly byId: Map<number, number>;

    private constructor(ids: Int32Array) {
        this.ids = ids;
        this.byText = new Map(REFLECTION_TOKENS.map((t, i) => [t.text, ids[i]]));
        this.byId = new Map(Array.from(ids, (id, i) => [id, i]));
    }

    /** Resolves all 15 tokens; throws MISSING_REFLECTION_TOKENS naming every one that is absent. */
    public static resolve(findTokens: (texts: readonly string[]) => Int32Array, modelName = "the model"): ReflectionTokens {
        const texts = REFLECTION_TOKENS.map((t) => t.text);
        const ids = findTokens(texts);
        const missing = texts.filter((_, i) => ids[i] < 0);
        if (missing.length > 0) {
            throw new SelfRagError(
                `${modelName} is not a Self-RAG model: its vocabulary lacks ${missing.length} of the 15 reflection ` +
                `tokens (${missing.join(", ")}). Use a Self-RAG checkpoint such as selfrag/selfrag_llama2_7b converted to GGUF.`,
                "MISSING_REFLECTION_TOKENS");
        }
        return new ReflectionTokens(Int32Array.from(ids));
    }

    public id(text: ReflectionTokenText): number {
        return this.byText.get(text)!;
    }

    /** Index in a reflection row of a token id, or -1 when the id is not a reflection token. */
    public indexOf(id: number): number {
        return this.byId.get(id) ?? -1;
    }

    public isReflection(id: number): boolean {
        return this.byId.has(id);
    }

    public groupOf(id: number): ReflectionGroup | undefined {
        const index = this.byId.get(id);
        return index == null ? undefined : REFLECTION_TOKENS[index].group;
    }

    /** {"[No Retrieval]": id, ...} in table order. */
    public toJSON(): Record<ReflectionTokenText, number> {
        return Object.fromEntries(REFLECTION_TOKENS.map((t, i) => [t.text, this.ids[i]])) as Record<ReflectionTokenText, number>;
    }
}
