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
