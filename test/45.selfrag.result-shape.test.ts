// A new user's first hour (issue 17), the engine side: one result shape for the API, `ask --json`
// and the server; `choices` as an option; the status and code of too few slots.
import assert from "node:assert/strict";
import {execFile} from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import {fileURLToPath} from "node:url";
import {promisify} from "node:util";
import {rejectsWith, withoutPromptCache} from "../test-support/assertions.js";
import {tempDir, tinyModel} from "../test-support/fixtures.js";
import {SelfRagModel} from "../lib/SelfRagModel.js";
import {SelfRagServer} from "../lib/serving/SelfRagServer.js";

const run = promisify(execFile);
const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "lib", "cli", "main.js");
const PASSAGES = [
    {id: "p", title: "Paris", text: "Paris is the capital and largest city of France. Paris"},
    {id: "b", title: "Berlin", text: "Berlin is the capital of Germany."}
];

describe("one result shape: API, CLI --json and server", function () {
    this.timeout(180_000);
    let model: SelfRagModel;
    let server: SelfRagServer;
    let passagesFile: string;
    before(async () => {
        // The CLI's defaults: 2048 tokens per sequence, as many slots as the question needs.
        model = await SelfRagModel.load({modelPath: await tinyModel(), contextSize: 2048, sequences: 4, gpu: false});
        server = await SelfRagServer.listen({model, port: 0});
        passagesFile = path.join(fs.mkdtempSync(path.join(tempDir, "shape-")), "passages.jsonl");
        fs.writeFileSync(passagesFile, PASSAGES.map((p) => JSON.stringify(p)).join("\n") + "\n");
    });
    after(async () => {
        await server?.close();
        await model?.dispose();
    });
    const post = async (body: unknown) => {
        const res = await fetch(server.url + "/v1/answer", {method: "POST", body: JSON.stringify(body)});
        return {status: res.status, json: await res.json() as Record<string, unknown>};
    };
    const roundTrip = (value: unknown) => JSON.parse(JSON.stringify(value)) as unknown;

    it("short form, with and without retrieval: the same object from all three (a no-retrieval candidate's passage is null everywhere)", async () => {
        for (const [question, mode] of [["What is the capital of France?", "always"], ["Tell me about London.", "never"]] as const) {
            const api = await model.answer({id: "q7", question, passages: PASSAGES}, {ndocs: 2, maxNewTokens: 24, mode});
            const {stdout} = await run("node", [cli, "ask", "--model", await tinyModel(), "--passages", passagesFile, "--ndocs", "2",
                "--max-new-tokens", "24", "--mode", mode, "--json", question]);
            const fromCli = JSON.parse(stdout) as Record<string, unknown>;
            const fromServer = await post({id: "q7", question, passages: PASSAGES, ndocs: 2, maxNewTokens: 24, mode});
            assert.equal(fromServer.status, 200);
            const expected = withoutPromptCache(roundTrip(api)) as Record<string, unknown>;
            assert.deepEqual(withoutPromptCache(fromServer.json), expected, `server, ${mode}`);
            assert.deepEqual(withoutPromptCache({...fromCli, id: expected.id}), expected, `CLI, ${mode}`); // the CLI's question has no id of its own
            if (mode === "never") assert.equal((expected.candidates as {passage: unknown}[])[0].passage, null);
            assert.ok("passage" in api.candidates[0], "the API's candidate has the key too");
        }
    });

    it("long form: the same object from all three, id echoed by the server", async () => {
        const question = "Tell me a bio of Marie Curie.";
        const api = await model.answerLong({id: "l1", question, passages: PASSAGES}, {ndocs: 2, beamWidth: 1, maxDepth: 3, maxNewTokens: 20, mode: "always"});
        const {stdout} = await run("node", [cli, "ask", "--long", "--model", await tinyModel(), "--passages", passagesFile, "--ndocs", "2",
            "--beam-width", "1", "--max-depth", "3", "--max-new-tokens", "20", "--mode", "always", "--json", question]);
        const fromServer = await post({id: "l1", long: true, question, passages: PASSAGES, ndocs: 2, beamWidth: 1, maxDepth: 3, maxNewTokens: 20, mode: "always"});
        assert.equal(fromServer.status, 200);
        const expected = roundTrip(api) as Record<string, unknown>;
        assert.equal(fromServer.json.id, "l1");
        assert.deepEqual(fromServer.json, expected);
        assert.deepEqual({...JSON.parse(stdout) as Record<string, unknown>, id: "l1"}, expected);
        assert.ok(Array.isArray(api.warnings), "warnings is always a list");
    });

    it("choices as an answer() option are used (ARC tasks) and refused where no prompt lists them", async () => {
        const choices = ["Paris in France", "Berlin in Germany", "Rome in Italy", "Madrid in Spain"];
        const asOption = await model.answer("Which city is the capital of France?", {task: "arc_c", choices, passages: PASSAGES, ndocs: 2, maxNewTokens: 8});
        const onQuestion = await model.answer({question: "Which city is the capital of France?", task: "arc_c", choices},
            {passages: PASSAGES, ndocs: 2, maxNewTokens: 8});
        const without = await model.answer("Which city is the capital of France?", {task: "arc_c", passages: PASSAGES, ndocs: 2, maxNewTokens: 8});
        assert.equal(asOption.stats.promptTokens, onQuestion.stats.promptTokens);
        assert.deepEqual(asOption.candidates.map((c) => c.text), onQuestion.candidates.map((c) => c.text));
        assert.ok(asOption.stats.promptTokens > without.stats.promptTokens, "the choices are in the prompt");
        await assert.rejects(model.answer("Q?", {choices, passages: PASSAGES}), rejectsWith("INVALID_ARGUMENT", /choices were given but task "none"/));
        await assert.rejects(model.answer("Q?", {choices, task: "arc_easy", profile: "reference", passages: PASSAGES}),
            rejectsWith("INVALID_ARGUMENT", /reference profile lists them for arc_c only/));
    });

    it("too few slots for ndocs: TOO_FEW_SLOTS, HTTP 422 (as the README says), for both forms", async () => {
        const many = [...PASSAGES, ...PASSAGES, ...PASSAGES];
        await assert.rejects(model.answer("Q?", {passages: many, ndocs: 6}), rejectsWith("TOO_FEW_SLOTS", /needs 6 sequence slots/));
        const short = await post({question: "Q?", passages: many, ndocs: 6});
        assert.deepEqual([short.status, (short.json.error as {code: string}).code], [422, "TOO_FEW_SLOTS"]);
        const long = await post({question: "Q?", long: true, passages: many, ndocs: 3, beamWidth: 2});
        assert.deepEqual([long.status, (long.json.error as {code: string}).code], [422, "TOO_FEW_SLOTS"]);
    });
});
