import assert from "node:assert/strict";
import {SelfRagError} from "../lib/errors.js";

/** For assert.throws / assert.rejects: a SelfRagError with this code (and message pattern). */
export function rejectsWith(code: string, pattern?: RegExp) {
    return (error: unknown) => {
        assert.ok(error instanceof SelfRagError, `expected a SelfRagError, got ${String(error)}`);
        assert.equal(error.code, code, error.message);
        if (pattern != null) assert.match(error.message, pattern);
        return true;
    };
}

/**
 * A result (or anything holding results) with every `stats.cachedPromptTokens` set to 0, after
 * checking it is a count below the prompt's length: how much of a prompt a kept slot held depends
 * on what the process asked before, the one field two equal answers may differ in.
 */
export function withoutPromptCache<T>(value: T): T {
    return JSON.parse(JSON.stringify(value), (key, v: unknown) => {
        if (key !== "stats" || v == null || typeof v !== "object" || !("cachedPromptTokens" in v)) return v;
        const stats = v as {cachedPromptTokens: unknown, promptTokens?: unknown};
        if (typeof stats.cachedPromptTokens !== "number" || stats.cachedPromptTokens < 0 ||
            (typeof stats.promptTokens === "number" && stats.cachedPromptTokens >= stats.promptTokens)) {
            throw new Error(`stats.cachedPromptTokens is not a count below promptTokens: ${JSON.stringify(v)}`);
        }
        return {...stats, cachedPromptTokens: 0};
    }) as T;
}
