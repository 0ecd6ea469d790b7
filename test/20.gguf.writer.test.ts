import assert from "node:assert/strict";
import path from "node:path";
import {readGgufFileInfo} from "node-llama-cpp";
import {GgmlType, GgufType, GgufWriter, toF16} from "../lib/gguf/GgufWriter.js";
import {SELF_RAG_ADDED_TOKENS, readSelfRagVocab} from "../lib/fixtures/FixtureModel.js";
import {tempDir, tinyModel} from "../test-support/fixtures.js";

describe("GGUF writer and fixture vocabulary", () => {
    it("writes metadata and tensors that node-llama-cpp's GGUF reader reads back", async () => {
        const file = path.join(tempDir, "roundtrip.gguf");
        await new GgufWriter()
            .str("general.architecture", "llama")
            .u32("llama.block_count", 3)
            .f32("some.float", 0.5)
            .bool("some.flag", true)
            .set("some.strings", {type: GgufType.ARRAY, itemType: GgufType.STRING, value: ["a", "bé", "[Retrieval]"]})
            .tensor("t.f32", [3, 2], () => Float32Array.of(1, 2, 3, 4, 5, 6))
            .tensor("t.f16", [5], () => Float32Array.of(0, 1, -2, 0.5, 65504), GgmlType.F16)
            .write(file);
        const info = await readGgufFileInfo(file, {sourceType: "filesystem", logWarnings: false});
        const meta = info.metadata as unknown as Record<string, Record<string, unknown>>;
        assert.equal(meta.general.architecture, "llama");
        assert.equal(meta.llama.block_count, 3);
        assert.deepEqual(meta.some.strings, ["a", "bé", "[Retrieval]"]);
        assert.equal(meta.some.flag, true);
        assert.deepEqual(info.tensorInfo!.map((t) => [t.name, t.dimensions.map(Number)]), [["t.f32", [3, 2]], ["t.f16", [5]]]);
    });

    it("converts to IEEE half precision exactly on representable values and rounds to nearest even", () => {
        assert.deepEqual(Array.from(toF16(Float32Array.of(0, 1, -2, 0.5, 65504, Infinity, 1e-8, 1 + 2 ** -11))),
            [0x0000, 0x3c00, 0xc000, 0x3800, 0x7bff, 0x7c00, 0x0000, 0x3c00]);
        assert.equal(toF16(Float32Array.of(2 ** -24))[0], 0x0001, "smallest subnormal");
    });

    it("puts the 16 Self-RAG tokens at ids 32000..32015 on top of the real Llama-2 vocabulary", async () => {
        const vocab = await readSelfRagVocab();
        assert.equal(vocab.tokens.length, 32016);
        assert.deepEqual(vocab.tokens.slice(32000), SELF_RAG_ADDED_TOKENS);
        assert.equal(vocab.tokens[32001], "[Retrieval]");
        assert.equal(vocab.tokens[32015], "<pad>");
        assert.equal(vocab.tokens[1], "<s>");
        const info = await readGgufFileInfo(await tinyModel(), {sourceType: "filesystem", logWarnings: false});
        assert.equal(info.tensorInfo!.length, 12);
    });
});
