// The error contract's table: the table of docs/errors.md ("Error codes") is the catalogue in lib/errors.ts (code,
// status, meaning), every code thrown anywhere in lib/ or native/ is in it, every row is thrown
// somewhere, and the server answers each code with its status.
import assert from "node:assert/strict";
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import {fileURLToPath} from "node:url";
import {ERROR_CODES, SelfRagError, httpStatusOf} from "../lib/errors.js";
import {createHandler} from "../lib/serving/handler.js";
import type {SelfRagModel} from "../lib/SelfRagModel.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");

function docsTable(): Map<string, {status: number, meaning: string}> {
    const page = fs.readFileSync(path.join(root, "docs", "errors.md"), "utf8");
    const start = page.indexOf("\n## Error codes");
    assert.ok(start >= 0, "docs/errors.md has an \"Error codes\" section");
    const end = page.indexOf("\n## ", start + 5);
    const section = page.slice(start, end < 0 ? undefined : end);
    const rows = new Map<string, {status: number, meaning: string}>();
    for (const m of section.matchAll(/^\| `([A-Z_]+)` \| (\d+) \| (.+) \|$/gm)) rows.set(m[1], {status: Number(m[2]), meaning: m[3].replaceAll("\\|", "|")});
    return rows;
}

/** Codes passed to SelfRagError / ThrowJs / Fail (or set as `code`) in the sources. */
function thrownCodes(): Map<string, string[]> {
    const walk = (d: string): string[] => fs.readdirSync(d, {withFileTypes: true})
        .flatMap((e) => e.isDirectory() ? walk(path.join(d, e.name)) : [path.join(d, e.name)]);
    const found = new Map<string, string[]>();
    for (const file of [...walk(path.join(root, "lib")), ...walk(path.join(root, "native"))].filter((f) => /\.(ts|cpp|h|cu|cuh)$/.test(f))) {
        if (file.endsWith(path.join("lib", "errors.ts"))) continue; // the catalogue itself
        const text = fs.readFileSync(file, "utf8");
        for (const re of [/,\s*"([A-Z][A-Z0-9_]{2,})"\s*[,)]/g, /code:\s*"([A-Z][A-Z0-9_]{2,})"/g, /(?:ThrowJs|Fail|EngineError)\([^"]*?"([A-Z][A-Z0-9_]{2,})"/g]) {
            for (const m of text.matchAll(re)) found.set(m[1], [...(found.get(m[1]) ?? []), path.relative(root, file)]);
        }
    }
    return found;
}

describe("the error table", () => {
    it("the table of docs/errors.md is the catalogue, row for row", () => {
        const table = docsTable();
        assert.deepEqual([...table.keys()], Object.keys(ERROR_CODES), "same codes, same order");
        for (const [code, [status, meaning]] of Object.entries(ERROR_CODES)) {
            assert.deepEqual(table.get(code), {status, meaning}, code);
            assert.equal(httpStatusOf(code), status);
        }
    });

    it("every code thrown in lib/ and native/ is in the table, and every row is thrown somewhere", () => {
        const thrown = thrownCodes();
        // Upper-case string arguments that are not error codes.
        const notCodes = new Set(["EPERM", "ENOENT", "EPIPE", "SUPPORTS", "REFUTES", "Q4_0", "Q8_0"]); // (and ggml block types)
        const missing = [...thrown.keys()].filter((c) => !(c in ERROR_CODES) && !notCodes.has(c));
        assert.deepEqual(missing.map((c) => `${c} (${thrown.get(c)!.join(", ")})`), [], "thrown but not in the table");
        const unused = Object.keys(ERROR_CODES).filter((c) => !thrown.has(c));
        assert.deepEqual(unused, [], "in the table but never thrown");
    });

    it("the server answers each code with its status (and JSON naming the code)", async () => {
        // A stand-in model whose answer() throws the code asked for in the question: the handler's
        // mapping is what is under test, for every row.
        const fake = {
            answer: async (q: {question: string}) => {
                throw new SelfRagError(`thrown for the test: ${q.question}`, q.question);
            },
            path: "stand-in.gguf", context: {stats: {}, slots: {inUse: 0}, info: {contextPerSequence: 512}}
        } as unknown as SelfRagModel;
        const handler = createHandler(fake, {});
        const server = http.createServer((req, res) => handler(req, res));
        await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
        const {port} = server.address() as {port: number};
        try {
            for (const [code, [status]] of Object.entries(ERROR_CODES)) {
                if (code === "ABORTED") continue; // the client is gone: nobody reads an answer
                const res = await fetch(`http://127.0.0.1:${port}/v1/answer`, {method: "POST",
                    body: JSON.stringify({question: code, passages: [{title: "t", text: "x"}]})});
                assert.equal(res.status, status, code);
                assert.equal(((await res.json()) as {error: {code: string}}).error.code, code);
            }
        } finally {
            await handler.close();
            await new Promise((resolve) => server.close(resolve));
        }
    });
});
