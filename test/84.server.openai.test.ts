// The OpenAI face driven by the real `openai` client against a real server on loopback: every
// request parameter is honoured or refused with 400 naming it, `stop` cuts the answer (through the
// plan, so the library, the CLI and /v1/answer have it too), `usage` counts the answer's tokens
// with every candidate's in `selfrag.usage`, and /v1/completions completes a raw Self-RAG prompt,
// streamed and not.
import {tinyModel} from "../test-support/fixtures.js";
import assert from "node:assert/strict";
import http from "node:http";
import type {AddressInfo} from "node:net";
import {SelfRagError} from "../lib/errors.js";
import {CLI_SURFACE, optionsFromFlags, planLongForm, planShortForm} from "../lib/selfrag/plan.js";
import type {Passage} from "../lib/selfrag/prompts.js";
import {cutAtStop, stopPrefix} from "../lib/selfrag/stops.js";
import {createHandler} from "../lib/serving/handler.js";
import {SelfRagModel} from "../lib/SelfRagModel.js";

const CORPUS: Passage[] = [
    {id: "b", title: "Berlin", text: "Berlin is the capital of Germany."},
    {id: "p", title: "Paris", text: "Paris is the capital and largest city of France. Paris"},
    {id: "r", title: "Rome", text: "Rome is the capital of Italy."}
];
const QUESTION = "What is the capital of France?";
const RAW_PROMPT = `### Instruction:\n${QUESTION}\n\n### Response:\n[Retrieval]<paragraph>Paris\n${CORPUS[1].text}</paragraph>`;

type OpenAiFailure = {status: number, error: {type: string, param: string | null, message: string, code: string}};

describe("OpenAI endpoints with the openai client", () => {
    let model: SelfRagModel;
    let server: http.Server;
    let url: string;
    let client: import("openai").default;
    const extra = {selfrag: {passages: CORPUS, ndocs: 3}} as object;
    const ask = (params: Record<string, unknown> = {}) => client.chat.completions.create({
        model: "selfrag", messages: [{role: "user", content: QUESTION}], max_tokens: 24, ...extra, ...params
    } as never) as unknown as Promise<import("openai").default.Chat.ChatCompletion & {selfrag: Record<string, any>}>;
    const failure = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => e) as Promise<OpenAiFailure | undefined>;

    before(async () => {
        model = await SelfRagModel.load({modelPath: await tinyModel(), contextSize: 512, sequences: 6, gpu: false});
        const handler = createHandler(model);
        server = http.createServer(handler);
        await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
        url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
        const {default: OpenAI} = await import("openai");
        client = new OpenAI({baseURL: url + "/v1", apiKey: "unused", maxRetries: 0});
    });
    after(async () => {
        server?.closeAllConnections();
        await new Promise((resolve) => server?.close(resolve));
        await model?.dispose();
    });

    it("refuses every chat parameter it cannot honour with 400 naming it", async () => {
        const cases: [Record<string, unknown>, string][] = [
            [{tools: [{type: "function", function: {name: "f", parameters: {}}}]}, "tools"],
            [{tool_choice: "auto"}, "tool_choice"],
            [{response_format: {type: "json_object"}}, "response_format"],
            [{response_format: {type: "json_schema", json_schema: {name: "x", schema: {}}}}, "response_format"],
            [{logprobs: true}, "logprobs"],
            [{top_logprobs: 2}, "top_logprobs"],
            [{logit_bias: {"50256": -100}}, "logit_bias"],
            [{n: 2}, "n"],
            [{presence_penalty: 0.5}, "presence_penalty"],
            [{frequency_penalty: 1}, "frequency_penalty"],
            [{temperature: 0.7}, "temperature"],
            [{top_p: 0.5}, "top_p"],
            [{functions: [{name: "f"}]}, "functions"],
            [{audio: {voice: "alloy", format: "mp3"}}, "audio"],
            [{modalities: ["text", "audio"]}, "modalities"],
            [{prediction: {type: "content", content: "x"}}, "prediction"],
            [{reasoning_effort: "low"}, "reasoning_effort"],
            [{web_search_options: {}}, "web_search_options"],
            [{stop: ["a", "b", "c", "d", "e"]}, "stop"],
            [{stop: [""]}, "stop"],
            [{stop: "."}, "stop"], // given twice below: as a parameter and as selfrag.stop
            [{max_completion_tokens: 0}, "max_completion_tokens"],
            [{seed: 1.5}, "seed"],
            [{stream_options: {include_usage: true, frobnicate: 1}}, "stream_options.frobnicate"],
            [{frobnicate: 1}, "frobnicate"]
        ];
        for (const [params, param] of cases) {
            const body = param === "stop" && params.stop === "." ? {...params, selfrag: {passages: CORPUS, stop: "!"}} : params;
            for (const stream of [false, true]) {
                const error = await failure(ask({...body, ...(stream ? {stream: true} : {})}));
                assert.ok(error != null, `${JSON.stringify(body)} was accepted`);
                assert.equal(error.status, 400, JSON.stringify(body));
                assert.equal(error.error.type, "invalid_request_error");
                assert.equal(error.error.param, param, JSON.stringify(body));
                assert.match(error.error.message, new RegExp(param.split(".").at(-1)!), JSON.stringify(body));
            }
        }
    });

    it("accepts what changes nothing for greedy decoding and answers the same", async () => {
        const plain = await ask();
        const same = await ask({temperature: 0, top_p: 1, seed: 42, user: "u1", metadata: {k: "v"}, store: false, presence_penalty: 0,
            frequency_penalty: 0, n: 1, logprobs: false, response_format: {type: "text"}, tool_choice: "none", parallel_tool_calls: false,
            logit_bias: {}, modalities: ["text"], service_tier: "auto", max_completion_tokens: 24});
        assert.equal(same.choices[0].message.content, plain.choices[0].message.content);
        assert.deepEqual(same.usage, plain.usage);
        // Under temperature 0 any top_p is greedy too.
        assert.equal((await ask({temperature: 0, top_p: 0.1})).choices[0].message.content, plain.choices[0].message.content);
    });

    it("usage counts the answer's tokens; every candidate's are in selfrag.usage", async () => {
        const library = await model.answer({question: QUESTION, passages: CORPUS}, {ndocs: 3, maxNewTokens: 24});
        const best = library.candidates[library.best];
        assert.ok(library.stats.generatedTokens > best.tokens, "the other candidates generated tokens too");
        const completion = await ask();
        const prompt = library.stats.promptTokens + library.stats.passageTokens;
        assert.deepEqual(completion.usage, {prompt_tokens: prompt, completion_tokens: best.tokens, total_tokens: prompt + best.tokens});
        assert.deepEqual(completion.selfrag.usage, {prompt_tokens: library.stats.promptTokens, passage_tokens: library.stats.passageTokens,
            generated_tokens: library.stats.generatedTokens});

        const stream = await client.chat.completions.create({model: "selfrag", messages: [{role: "user", content: QUESTION}], max_tokens: 24,
            stream: true, stream_options: {include_usage: true}, ...extra} as never) as unknown as AsyncIterable<import("openai").default.Chat.ChatCompletionChunk>;
        let usage: unknown;
        let content = "";
        for await (const chunk of stream) {
            content += chunk.choices[0]?.delta?.content ?? "";
            if (chunk.usage != null) usage = chunk.usage;
        }
        assert.equal(content, library.answer);
        assert.deepEqual(usage, completion.usage);

        // Long form: the best path's segments' tokens.
        const long = {passages: CORPUS.slice(0, 2), long: true, ndocs: 2, maxDepth: 3};
        const longAnswer = await model.answerLong({question: QUESTION, passages: CORPUS.slice(0, 2)}, {ndocs: 2, maxDepth: 3, maxNewTokens: 16});
        const longCompletion = await ask({max_tokens: 16, selfrag: long});
        assert.equal(longCompletion.choices[0].message.content, longAnswer.answer);
        const segmentTokens = longAnswer.segments.reduce((n, s) => n + s.tokens, 0);
        assert.ok(segmentTokens > 0 && longAnswer.segments.every((s) => s.tokens > 0));
        assert.equal(longCompletion.usage!.completion_tokens, segmentTokens);
        assert.ok(longCompletion.usage!.completion_tokens < longCompletion.selfrag.usage.evaluated_tokens);
    });

    it("stop ends every candidate's generation before the stop string, streamed and not", async () => {
        const library = await model.answer({question: QUESTION, passages: CORPUS}, {ndocs: 3, maxNewTokens: 24, stop: "."});
        assert.equal(library.answer, "Paris");
        for (const c of library.candidates) {
            assert.ok(!c.text.includes("."), c.text);
            assert.equal(c.stopReason, "stop");
        }
        const unstopped = await model.answer({question: QUESTION, passages: CORPUS}, {ndocs: 3, maxNewTokens: 24});
        assert.ok(library.stats.generatedTokens < unstopped.stats.generatedTokens);
        for (const params of [{stop: "."}, {stop: [".", "zzz"]}, {selfrag: {passages: CORPUS, ndocs: 3, stop: "."}}]) {
            const completion = await ask(params);
            assert.equal(completion.choices[0].message.content, "Paris", JSON.stringify(params));
            assert.equal(completion.choices[0].finish_reason, "stop");
            assert.equal(completion.usage!.completion_tokens, library.candidates[library.best].tokens);
            assert.deepEqual(completion.selfrag.candidates.map((c: {text: string}) => c.text), library.candidates.map((c) => c.text));
        }
        const stream = await client.chat.completions.create({model: "selfrag", messages: [{role: "user", content: QUESTION}], max_tokens: 24,
            stop: ".", stream: true, ...extra} as never) as unknown as AsyncIterable<import("openai").default.Chat.ChatCompletionChunk>;
        let content = "";
        let finish: string | null = null;
        for await (const chunk of stream) {
            content += chunk.choices[0]?.delta?.content ?? "";
            finish = chunk.choices[0]?.finish_reason ?? finish;
        }
        assert.equal(content, "Paris");
        assert.equal(finish, "stop");
        // Long form: the answer is cut before the first stop string.
        const long = await ask({stop: " [", max_tokens: 16, selfrag: {passages: CORPUS.slice(0, 2), long: true, ndocs: 2, maxDepth: 3}});
        const longUncut = await ask({max_tokens: 16, selfrag: {passages: CORPUS.slice(0, 2), long: true, ndocs: 2, maxDepth: 3}});
        const whole = longUncut.choices[0].message.content!;
        assert.ok(whole.includes(" ["), whole);
        assert.equal(long.choices[0].message.content, whole.slice(0, whole.indexOf(" [")));
        // /v1/answer takes the same option.
        const answered = await (await fetch(url + "/v1/answer", {method: "POST",
            body: JSON.stringify({question: QUESTION, passages: CORPUS, ndocs: 3, maxNewTokens: 24, stop: "."})})).json() as {answer: string};
        assert.equal(answered.answer, "Paris");
    });

    it("stop is a plan option: checked once, by name, on every surface", () => {
        assert.deepEqual(planShortForm({stop: "."}).stop, ["."]);
        assert.deepEqual(planLongForm({stop: [".", "\n"]}).stop, [".", "\n"]);
        assert.deepEqual(planShortForm({}).stop, []);
        const refused = (f: () => unknown, name: string) => assert.throws(f, (e: unknown) =>
            e instanceof SelfRagError && e.code === "INVALID_ARGUMENT" && e.option === name && e.message.includes(name));
        refused(() => planShortForm({stop: ["a", "b", "c", "d", "e"]}), "stop");
        refused(() => planShortForm({stop: 3}), "stop");
        refused(() => planShortForm({stop: [""]}, CLI_SURFACE), "--stop");
        assert.deepEqual(planShortForm(optionsFromFlags({stop: "\n"}), CLI_SURFACE).stop, ["\n"]);
    });

    it("cutAtStop keeps the tokens up to the one completing the stop string", () => {
        const pieces = ["[Relevant]", " Par", "is", ".", "[Fully supported]"];
        const detokenize = (t: Int32Array) => Array.from(t, (i) => pieces[i]).join("");
        const tokens = Int32Array.of(0, 1, 2, 3, 4);
        assert.equal(stopPrefix(tokens, ["is."], detokenize), 4);
        assert.equal(stopPrefix(tokens, ["Paris"], detokenize), 3);
        assert.equal(stopPrefix(tokens, ["zzz"], detokenize), undefined);
        const segment = {tokens, logprobs: Float32Array.of(-1, -2, -3, -4, -5), reflection: new Float32Array(5 * 15).map((_, i) => i)};
        const cut = cutAtStop(segment, ["s.", "Par"], detokenize)!;
        assert.equal(cut.text, "[Relevant] ");
        assert.deepEqual(Array.from(cut.segment.tokens), [0, 1]);
        assert.deepEqual(Array.from(cut.segment.logprobs), [-1, -2]);
        assert.equal(cut.segment.reflection.length, 2 * 15);
    });

    describe("/v1/completions", () => {
        /** The engine's own greedy continuation of the prompt, as the oracle. */
        async function oracle(prompt: string, maxTokens: number) {
            const tokens = model.tokenize(prompt);
            const [seq] = await model.context.lease(1);
            try {
                await model.context.prefill(seq, tokens);
                const segment = await model.context.generateOne(seq, maxTokens);
                const visible = segment.stopReason === "eos" ? segment.tokens.subarray(0, segment.tokens.length - 1) : segment.tokens;
                return {text: model.detokenize(visible), tokens: segment.tokens.length, promptTokens: tokens.length, stopReason: segment.stopReason};
            } finally {
                await model.context.release(seq);
            }
        }

        it("completes a raw Self-RAG prompt greedily, reflection tokens kept, streamed and not", async () => {
            const expected = await oracle(RAW_PROMPT, 40);
            assert.match(expected.text, /\[Relevant\]/);
            const completion = await client.completions.create({model: "selfrag", prompt: RAW_PROMPT, max_tokens: 40});
            assert.equal(completion.object, "text_completion");
            assert.match(completion.id, /^cmpl-/);
            assert.equal(completion.choices[0].text, expected.text);
            assert.equal(completion.choices[0].finish_reason, expected.stopReason === "eos" ? "stop" : "length");
            assert.deepEqual(completion.usage, {prompt_tokens: expected.promptTokens, completion_tokens: expected.tokens,
                total_tokens: expected.promptTokens + expected.tokens});

            const stream = await client.completions.create({model: "selfrag", prompt: RAW_PROMPT, max_tokens: 40, stream: true,
                stream_options: {include_usage: true}});
            let text = "";
            let finish: string | null = null;
            let usage: unknown;
            for await (const chunk of stream) {
                text += chunk.choices[0]?.text ?? "";
                finish = chunk.choices[0]?.finish_reason ?? finish;
                if (chunk.usage != null) usage = chunk.usage;
            }
            assert.equal(text, expected.text);
            assert.equal(finish, completion.choices[0].finish_reason);
            assert.deepEqual(usage, completion.usage);

            // Generation goes in chunks: across chunks it is the same as one generation, to the end of sequence or the budget.
            const berlin = `### Instruction:\n${QUESTION}\n\n### Response:\n[Retrieval]<paragraph>Berlin\n${CORPUS[0].text}</paragraph>`;
            for (const budget of [40, 24]) {
                const whole = await oracle(berlin, budget);
                assert.ok(whole.tokens > 16, "longer than one chunk");
                assert.equal(whole.stopReason, budget === 40 ? "eos" : "length");
                const chunked = await client.completions.create({model: "selfrag", max_tokens: budget, prompt: berlin});
                assert.equal(chunked.choices[0].text, whole.text);
                assert.equal(chunked.choices[0].finish_reason, budget === 40 ? "stop" : "length");
                assert.equal(chunked.usage!.completion_tokens, whole.tokens);
            }
        });

        it("stop ends the completion before the stop string, streamed and not", async () => {
            const expected = await oracle(RAW_PROMPT, 40);
            const at = expected.text.indexOf("[Fully supported]");
            assert.ok(at > 0, expected.text);
            const completion = await client.completions.create({model: "selfrag", prompt: RAW_PROMPT, max_tokens: 40, stop: ["[Fully supported]", "zzz"]});
            assert.equal(completion.choices[0].text, expected.text.slice(0, at));
            assert.equal(completion.choices[0].finish_reason, "stop");
            assert.ok(completion.usage!.completion_tokens < expected.tokens);
            const stream = await client.completions.create({model: "selfrag", prompt: RAW_PROMPT, max_tokens: 40, stop: "[Fully supported]", stream: true});
            let text = "";
            for await (const chunk of stream) text += chunk.choices[0]?.text ?? "";
            assert.equal(text, expected.text.slice(0, at));
        });

        it("refuses what it cannot honour with 400 naming the parameter, in OpenAI's shape", async () => {
            const cases: [Record<string, unknown>, string][] = [
                [{echo: true}, "echo"], [{suffix: "x"}, "suffix"], [{logprobs: 2}, "logprobs"], [{n: 2}, "n"], [{best_of: 3}, "best_of"],
                [{temperature: 0.5}, "temperature"], [{top_p: 0.9}, "top_p"], [{presence_penalty: 1}, "presence_penalty"],
                [{logit_bias: {"1": 5}}, "logit_bias"], [{stop: ["a", "b", "c", "d", "e"]}, "stop"], [{prompt: ["a", "b"]}, "prompt"],
                [{prompt: [1, 2, 3]}, "prompt"], [{prompt: 7}, "prompt"], [{max_tokens: -1}, "max_tokens"], [{tools: []}, "tools"]
            ];
            for (const [params, param] of cases) {
                const error = await failure(client.completions.create({model: "selfrag", prompt: RAW_PROMPT, ...params} as never));
                assert.ok(error != null, `${JSON.stringify(params)} was accepted`);
                assert.equal(error.status, 400, JSON.stringify(params));
                assert.equal(error.error.type, "invalid_request_error");
                assert.equal(error.error.param, param, JSON.stringify(params));
            }
            const overflow = await failure(client.completions.create({model: "selfrag", prompt: RAW_PROMPT, max_tokens: 5000}));
            assert.equal(overflow?.status, 422);
            assert.equal(overflow?.error.param, "max_tokens");
            assert.match(overflow!.error.message, /max_tokens/);
            // Accepted and harmless: greedy settings, a seed, the user.
            const ok = await client.completions.create({model: "selfrag", prompt: RAW_PROMPT, max_tokens: 8, temperature: 0, seed: 7, user: "u", echo: false});
            assert.equal(ok.choices[0].text, (await oracle(RAW_PROMPT, 8)).text);
        });
    });
});
