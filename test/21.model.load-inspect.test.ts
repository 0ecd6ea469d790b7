import assert from "node:assert/strict";
import type {LlamaContext, LlamaModel} from "node-llama-cpp";
import {REFLECTION_TOKENS, R} from "../lib/engine/ReflectionTokens.js";
import {SelfRagModel} from "../lib/SelfRagModel.js";
import {passage, prompt, tinyModel} from "../test-support/fixtures.js";
import {nodeLlamaCppLogprobs} from "../test-support/oracles.js";

describe("SelfRagModel on the designed tiny model", () => {
    let model: SelfRagModel;
    let nlcModel: LlamaModel;
    let nlcContext: LlamaContext;

    before(async () => {
        model = await SelfRagModel.load({modelPath: await tinyModel(), contextSize: 512, sequences: 4, gpu: false});
        nlcModel = await model.llama.loadModel({modelPath: model.path, gpuLayers: 0});
        nlcContext = await nlcModel.createContext({contextSize: 512, sequences: 1});
    });

    after(async () => {
        await nlcContext?.dispose();
        await nlcModel?.dispose();
        await model?.dispose();
    });

    it("resolves the 15 reflection tokens by text to the released models' ids", () => {
        assert.deepEqual(Array.from(model.reflection.ids), REFLECTION_TOKENS.map((_, i) => 32000 + i));
        assert.equal(model.reflection.id("[Fully supported]"), 32012);
        assert.equal(model.reflection.groupOf(32008), "isUse");
        assert.equal(model.info.vocabSize, 32016);
    });

    it("tokenizes reflection tokens as single ids and detokenizes them back as text", () => {
        const text = "[Retrieval]<paragraph>Paris\nParis is in France.</paragraph>[Relevant]";
        const tokens = model.tokenize(text, {bos: false});
        assert.equal(tokens[0], 32001);
        assert.equal(tokens[1], 32005);
        assert.equal(tokens[tokens.length - 1], 32004);
        assert.ok(tokens.includes(32006));
        // SentencePiece puts a word-start marker after special tokens (as Hugging Face's legacy
        // Llama tokenizer does), so the text comes back with " Paris".
        assert.equal(model.detokenize(tokens), text.replace("<paragraph>Paris", "<paragraph> Paris"));
        assert.equal(model.detokenize(tokens, {special: false}), " Paris\nParis is in France.");
        const withBos = model.tokenize("hello");
        assert.equal(withBos[0], model.info.bos);
    });

    it("agrees with node-llama-cpp's own filtered logits within 2e-3 at every reflection id", async () => {
        const inputs = [
            prompt("What is the capital of France?"),
            prompt("Say hello."),
            prompt("What is the capital of France?") + passage("Paris", "Paris is the capital of France."),
            prompt("What is the capital of France?") + passage("Berlin", "Berlin is in Germany.") + "[Irrelevant]London."
        ];
        const sequence = nlcContext.getSequence();
        try {
            for (const input of inputs) {
                const tokens = model.tokenize(input);
                const expected = await nodeLlamaCppLogprobs(sequence, tokens, model.reflection.ids);
                const [seq] = model.context.acquire(1);
                const block = await model.context.evaluate([{seq, tokens}]);
                await model.context.release(seq);
                for (let k = 0; k < expected.length; k++) {
                    assert.ok(Math.abs(block.reflection[k] - expected[k]) <= 2e-3,
                        `${REFLECTION_TOKENS[k].text} after ${JSON.stringify(input.slice(-30))}: ${block.reflection[k]} vs node-llama-cpp ${expected[k]}`);
                }
            }
        } finally {
            sequence.dispose();
        }
    });

    it("inspect(): the designed retrieval behaviour and p_retrieve from the two log-probs", async () => {
        const asks = await model.inspect(prompt("What is the capital of France?"));
        const chats = await model.inspect(prompt("Say hello to me."));
        for (const r of [asks, chats]) {
            const pRet = Math.exp(r.reflection["[Retrieval]"]);
            const pNo = Math.exp(r.reflection["[No Retrieval]"]);
            assert.ok(Math.abs(r.p_retrieve - pRet / (pRet + pNo)) < 1e-9);
            assert.equal(Object.keys(r.reflection).length, 15);
        }
        assert.ok(asks.p_retrieve > 0.5, `"capital" asks for retrieval (p=${asks.p_retrieve})`);
        assert.ok(chats.p_retrieve < 0.2, `no marker, no retrieval (p=${chats.p_retrieve})`);
        assert.equal(asks.next.text, "[Retrieval]");
        assert.equal(chats.next.text, "[No Retrieval]");
        assert.equal(model.context.freeSlots, 4, "inspect gives its slot back");
    });

    it("generates the designed Self-RAG continuation after a relevant and an irrelevant passage", async () => {
        const question = prompt("What is the capital of France?");
        const [a, b] = model.context.acquire(2);
        try {
            await model.context.evaluate([
                {seq: a, tokens: model.tokenize(question + passage("Paris", "Paris is the capital and largest city of France. Paris"))},
                {seq: b, tokens: model.tokenize(question + passage("Berlin", "Berlin is the capital of Germany. Berlin"))}
            ]);
            const [sa, sb] = await model.context.generate([{seq: a, maxTokens: 16}, {seq: b, maxTokens: 16}]);
            assert.equal(model.detokenize(sa.tokens), "[Relevant] Paris.[Fully supported][Utility:5]</s>");
            assert.equal(model.detokenize(sb.tokens), "[Irrelevant] London.[No support / Contradictory][Utility:2]</s>");
            assert.equal(sa.stopReason, "eos");
            assert.equal(sa.reflection.length, sa.tokens.length * 15);
            // The first position's row is where [Relevant] vs [Irrelevant] is read.
            assert.ok(sa.reflection[R.relevant] > sa.reflection[R.irrelevant]);
            assert.ok(sb.reflection[R.relevant] < sb.reflection[R.irrelevant]);
            // The log-prob of each chosen token is the reflection row entry for reflection tokens.
            for (let i = 0; i < sa.tokens.length; i++) {
                const index = model.reflection.indexOf(sa.tokens[i]);
                if (index >= 0) assert.ok(Math.abs(sa.logprobs[i] - sa.reflection[i * 15 + index]) < 1e-6);
            }
        } finally {
            await model.context.release(a, b);
        }
    });
});
