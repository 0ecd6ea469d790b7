"use strict";
// The CommonJS entries' one job: hand a require() caller the ES module itself. selfrag is an ES
// module (import.meta.url, dynamic imports of node-llama-cpp, which is ESM only); Node loads an ES
// module through require() since 20.19 and 22.12 (require(esm)), so require("selfrag") returns the
// very module `import("selfrag")` does: one copy of the code, one SelfRagError class, one llama.cpp
// per process (a second, CommonJS build would load a second copy next to the first). On a Node
// without require(esm) the failure says what to use instead.

/** The ES module `file` (relative to this folder) for `require(entry)`. */
function requireEsm(file, entry) {
    try {
        return require(file);
    } catch (error) {
        if (error == null || (error.code !== "ERR_REQUIRE_ESM" && error.code !== "ERR_REQUIRE_ASYNC_MODULE")) throw error;
        const hint = error.code === "ERR_REQUIRE_ESM"
            ? `this Node (${process.version}) cannot require() an ES module: use Node >= 20.19 or >= 22.12, or \`await import("${entry}")\``
            : `it cannot be loaded synchronously here: use \`await import("${entry}")\``;
        throw Object.assign(new Error(`require("${entry}"): selfrag is an ES module and ${hint}`, {cause: error}), {code: error.code});
    }
}

module.exports = {requireEsm};
