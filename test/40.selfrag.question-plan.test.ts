// One contract for a question's options on every surface: the same bad input sent through the
// library, the CLI and HTTP is refused with the same code, and each message names the option as
// that surface spells it (`maxNewTokens` in the API and JSON, `--max-new-tokens` on the command
// line). Inputs a surface cannot express (a passage object on the command line, whose passages
// come from a JSONL file) are listed as such, never silently skipped.
import assert from "node:assert/strict";
import fs from "node:fs";
import http from "node:http";
import type {AddressInfo} from "node:net";
import path from "node:path";
import {createHandler, SelfRagError, SelfRagModel} from "../lib/index.js";
import {planLongForm, planShortForm, planOptions, CLI_SURFACE, optionsFromFlags, questionFlagOptions} from "../lib/selfrag/plan.js";
import {runCli} from "../test-support/cli.js";
import {tempDir, tinyModel} from "../test-support/fixtures.js";

const QUESTION = "What is the capital of France?";
const PASSAGES = [
    {id: "p", title: "Paris", text: "Paris is the capital and largest city of France."},
    {id: "r", title: "Rome", text: "Rome is the capital of Italy."}
];

interface Case {
    what: string;
    long?: boolean;
    /** The question as the library and the body carry it (default QUESTION). */
    question?: unknown;
    /** Options as the library takes them and a body carries them (passages: the body's question field). */
    options: Record<string, unknown>;
    /** The same input on the command line (after `ask --model M --passages F`), or why it cannot be said there. */
    cli: string[] | {cannot: string};
    /** The option as each surface names it. */
    api: string;
    http?: string;
    flag?: string;
    code?: string;
}

const CASES: Case[] = [
    {what: "empty question", question: "", options: {passages: PASSAGES}, cli: [""], api: "question", flag: "the question"},
    {what: "blank question", question: "   ", options: {passages: PASSAGES}, cli: ["   "], api: "question", flag: "the question"},
    {what: "question not a string", question: 42, options: {passages: PASSAGES}, cli: {cannot: "a command-line argument is always a string"}, api: "question"},
    {what: "a string where the passages belong", options: {passages: "abc"}, cli: {cannot: "--passages is a JSONL file"}, api: "passages"},
    {what: "an empty passage object", options: {passages: [{}]}, cli: {cannot: "--passages is a JSONL file"}, api: "passages[0].text"},
    {what: "a passage text not a string", options: {passages: [{title: "t", text: 5}]}, cli: {cannot: "--passages is a JSONL file"}, api: "passages[0].text"},
    {what: "an unknown passage field", options: {passages: [{title: "t", text: "x", url: "u"}]}, cli: {cannot: "--passages is a JSONL file"},
        api: "passages[0].url"},
    {what: "a null passage", options: {passages: [null]}, cli: {cannot: "--passages is a JSONL file"}, api: "passages[0]"},
    {what: "a misspelt option (nDocs)", options: {passages: PASSAGES, nDocs: 2}, cli: ["--n-docs", "2"], api: "nDocs", flag: "--n-docs"},
    {what: "a misspelt option (maxNewToken)", options: {passages: PASSAGES, maxNewToken: 8}, cli: ["--max-new-token", "8"], api: "maxNewToken",
        flag: "--max-new-token"},
    {what: "an unknown option", options: {passages: PASSAGES, bogus: true}, cli: ["--bogus"], api: "bogus", flag: "--bogus"},
    {what: "ndocs 0", options: {passages: PASSAGES, ndocs: 0}, cli: ["--ndocs", "0"], api: "ndocs", flag: "--ndocs"},
    {what: "ndocs not an integer", options: {passages: PASSAGES, ndocs: 1.5}, cli: ["--ndocs", "1.5"], api: "ndocs", flag: "--ndocs"},
    {what: "ndocs a word", options: {passages: PASSAGES, ndocs: "five"}, cli: ["--ndocs", "five"], api: "ndocs", flag: "--ndocs"},
    {what: "ndocs too large", options: {passages: PASSAGES, ndocs: 5000}, cli: ["--ndocs", "5000"], api: "ndocs", flag: "--ndocs"},
    {what: "maxNewTokens far too large", options: {passages: PASSAGES, maxNewTokens: 99999999}, cli: ["--max-new-tokens", "99999999"],
        api: "maxNewTokens", flag: "--max-new-tokens"},
    {what: "maxNewTokens negative", options: {passages: PASSAGES, maxNewTokens: -1}, cli: ["--max-new-tokens", "-1"], api: "maxNewTokens",
        flag: "--max-new-tokens"},
    {what: "threshold above 1", options: {passages: PASSAGES, threshold: 1.5}, cli: ["--threshold", "1.5"], api: "threshold", flag: "--threshold"},
    {what: "threshold a word", options: {passages: PASSAGES, threshold: "high"}, cli: ["--threshold", "high"], api: "threshold", flag: "--threshold"},
    {what: "an unknown mode", options: {passages: PASSAGES, mode: "sometimes"}, cli: ["--mode", "sometimes"], api: "mode", flag: "--mode"},
    {what: "an unknown profile", options: {passages: PASSAGES, profile: "paper"}, cli: ["--profile", "paper"], api: "profile", flag: "--profile"},
    {what: "an unknown task", options: {passages: PASSAGES, task: "quiz"}, cli: ["--task", "quiz"], api: "task", flag: "--task"},
    {what: "an unknown retrieval ratio", options: {passages: PASSAGES, retrieveRatio: "log"}, cli: ["--retrieve-ratio", "log"], api: "retrieveRatio",
        flag: "--retrieve-ratio"},
    {what: "a weight not a number", options: {passages: PASSAGES, weights: {relevance: "x"}}, cli: ["--w-rel", "x"], api: "weights.relevance", flag: "--w-rel"},
    {what: "a weight out of range", options: {passages: PASSAGES, weights: {utility: 1e9}}, cli: ["--w-use", "1e9"], api: "weights.utility", flag: "--w-use"},
    {what: "a misspelt weight", options: {passages: PASSAGES, weights: {relevence: 1}}, cli: ["--w-rell", "1"], api: "weights.relevence", flag: "--w-rell"},
    {what: "weights not an object", options: {passages: PASSAGES, weights: "heavy"}, cli: {cannot: "weights are separate flags"}, api: "weights"},
    {what: "a use flag not a boolean", options: {passages: PASSAGES, weights: {useSequenceScore: "yes"}}, cli: {cannot: "a switch is on or off"},
        api: "weights.useSequenceScore"},
    {what: "contradicting switches", options: {passages: PASSAGES, weights: {useSequenceScore: "on"}}, cli: ["--use-seqscore", "--no-seqscore"],
        api: "weights.useSequenceScore", flag: "--no-seqscore"},
    {what: "a long-form option in short form (beamWidth)", options: {passages: PASSAGES, beamWidth: 2}, cli: ["--beam-width", "2"], api: "beamWidth",
        flag: "--beam-width"},
    {what: "a long-form option in short form (ignoreCont)", options: {passages: PASSAGES, ignoreCont: true}, cli: ["--ignore-cont"], api: "ignoreCont",
        flag: "--ignore-cont"},
    {what: "a short-form option in long form (choices)", long: true, options: {passages: PASSAGES, choices: ["a", "b"]}, cli: ["--choices", "a|b"],
        api: "choices", flag: "--choices"},
    {what: "choices without a task that lists them", options: {passages: PASSAGES, choices: ["a", "b"]}, cli: ["--choices", "a|b"], api: "choices",
        flag: "--choices"},
    {what: "choices not an array", options: {passages: PASSAGES, task: "arc_c", choices: "A|B"}, cli: {cannot: "--choices is split at |"}, api: "choices"},
    {what: "closedSet not a boolean", options: {passages: PASSAGES, closedSet: "yes"}, cli: {cannot: "a switch is on or off"}, api: "closedSet"},
    {what: "beamWidth 0", long: true, options: {passages: PASSAGES, beamWidth: 0}, cli: ["--beam-width", "0"], api: "beamWidth", flag: "--beam-width"},
    {what: "maxDepth too deep", long: true, options: {passages: PASSAGES, maxDepth: 100}, cli: ["--max-depth", "100"], api: "maxDepth", flag: "--max-depth"},
    {what: "an unknown context policy", long: true, options: {passages: PASSAGES, contextPolicy: "both"}, cli: ["--context", "both"], api: "contextPolicy",
        flag: "--context"},
    {what: "an unknown root decision", long: true, options: {passages: PASSAGES, rootDecision: "sometimes"}, cli: ["--root-decision", "sometimes"],
        api: "rootDecision", flag: "--root-decision"}
];

function expectRefusal(error: unknown, c: Case, name: string, surface: string): void {
    const e = error as SelfRagError;
    assert.equal(e.code, c.code ?? "INVALID_ARGUMENT", `${surface}, ${c.what}: code (${e.message})`);
    assert.ok(e.message.includes(name), `${surface}, ${c.what}: the message names ${name}: ${e.message}`);
    if (surface !== "CLI" && c.flag != null && c.flag.startsWith("--")) assert.ok(!e.message.includes(c.flag), `${surface}, ${c.what}: no flag name: ${e.message}`);
}

describe("question plan: one contract on every surface", function () {
    this.timeout(600_000);
    let model: SelfRagModel;
    let server: http.Server;
    let url: string;
    let passagesFile: string;

    before(async () => {
        model = await SelfRagModel.load({modelPath: await tinyModel(), sequences: 4, contextSize: 512, gpu: false});
        server = http.createServer(createHandler(model));
        await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
        url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
        passagesFile = path.join(tempDir, "plan-passages.jsonl");
        fs.writeFileSync(passagesFile, PASSAGES.map((p) => JSON.stringify(p)).join("\n") + "\n");
    });
    after(async () => {
        await new Promise((resolve) => server?.close(resolve));
        await model?.dispose();
    });

    it(`has at least 30 bad inputs, each refused by at least two surfaces`, () => {
        assert.ok(CASES.length >= 30, `${CASES.length} cases`);
        assert.ok(CASES.filter((c) => Array.isArray(c.cli)).length >= 25);
    });

    it("the library refuses every input, naming the option as the API spells it", async () => {
        for (const c of CASES) {
            const question = "question" in c ? c.question : QUESTION;
            const call = c.long ? model.answerLong(question as string, c.options) : model.answer(question as string, c.options);
            await assert.rejects(call, (error) => {
                expectRefusal(error, c, c.api, "API");
                return true;
            }, `API: ${c.what} was accepted`);
        }
    });

    it("HTTP refuses every input with the same code and status 400, naming the field", async () => {
        for (const c of CASES) {
            const question = "question" in c ? c.question : QUESTION;
            const res = await fetch(`${url}/v1/answer`, {method: "POST", headers: {"content-type": "application/json"},
                body: JSON.stringify({question, ...c.options, ...(c.long ? {long: true} : {})})});
            const body = await res.json() as {error: {code: string, message: string}};
            assert.equal(res.status, 400, `HTTP, ${c.what}: ${JSON.stringify(body)}`);
            expectRefusal(Object.assign(new Error(body.error.message), {code: body.error.code}), c, c.http ?? c.api, "HTTP");
        }
        // The server is still answering.
        const ok = await fetch(`${url}/v1/answer`, {method: "POST", body: JSON.stringify({question: QUESTION, passages: PASSAGES, maxNewTokens: 8})});
        assert.equal(ok.status, 200);
    });

    it("the CLI refuses every input it can express with the same code, naming the flag", async () => {
        const modelPath = await tinyModel();
        const one = async (c: Case & {cli: string[]}) => {
            const questionArg = c.cli.length === 1 && !c.cli[0].startsWith("--") ? c.cli : [...c.cli, QUESTION];
            const args = ["ask", "--model", modelPath, "--passages", passagesFile, ...(c.long ? ["--long"] : []), ...questionArg];
            const r = await runCli(args);
            assert.equal(r.code, 1, `CLI, ${c.what}: exit code (stdout ${r.stdout})`);
            const m = /^selfrag: (.*) \[([A-Z_]+)\]$/m.exec(r.stderr);
            assert.ok(m != null, `CLI, ${c.what}: one coded line: ${r.stderr}`);
            expectRefusal(Object.assign(new Error(m[1]), {code: m[2]}), c, c.flag!, "CLI");
        };
        // Four processes at a time.
        const expressible = CASES.filter((c): c is Case & {cli: string[]} => Array.isArray(c.cli));
        for (let i = 0; i < expressible.length; i += 4) await Promise.all(expressible.slice(i, i + 4).map(one));
    });

    it("suggests the nearest known name on each surface", async () => {
        await assert.rejects(model.answer(QUESTION, {passages: PASSAGES, nDocs: 2} as never), /did you mean "ndocs"/);
        const res = await fetch(`${url}/v1/answer`, {method: "POST", body: JSON.stringify({question: QUESTION, passages: PASSAGES, maxNewToken: 2})});
        assert.match((await res.json() as {error: {message: string}}).error.message, /did you mean "maxNewTokens"/);
        const r = await runCli(["ask", "--model", await tinyModel(), "--passages", passagesFile, "--max-new-token", "2", QUESTION]);
        assert.match(r.stderr, /did you mean --max-new-tokens/);
    });

    it("load options: an unknown one is refused by name", async () => {
        await assert.rejects(SelfRagModel.load({modelPath: await tinyModel(), sequencez: 4} as never),
            (e: SelfRagError) => e.code === "INVALID_ARGUMENT" && /"sequencez" \(did you mean "sequences"\?\)/.test(e.message));
    });

    it("a plan is complete and frozen, and plans again to itself through JSON (what a job carries)", () => {
        const plan = planShortForm({passages: PASSAGES, profile: "reference", threshold: 0.3});
        assert.ok(Object.isFrozen(plan));
        assert.equal(plan.ndocs, 10, "the reference profile's default");
        assert.equal(plan.maxNewTokens, 15);
        assert.equal(plan.retrieveRatio, "reference-logprob");
        assert.equal(plan.weights.useSequenceScore, false);
        const again = planShortForm(JSON.parse(JSON.stringify(planOptions(plan))));
        assert.deepEqual(planOptions(again), planOptions(plan));
        const long = planLongForm({passages: PASSAGES});
        assert.equal(long.beamWidth, 2);
        assert.equal(long.maxDepth, 7);
        assert.equal(long.contextPolicy, "reference");
    });

    it("every question option has a flag that plans to the same value as the API's", () => {
        const flags = questionFlagOptions();
        assert.ok("max-new-tokens" in flags && "w-rel" in flags && "beam-width" in flags && "no-seqscore" in flags);
        const fromFlags = planShortForm(optionsFromFlags({"max-new-tokens": "12", "w-rel": "2", "no-seqscore": true, mode: "always_retrieve",
            "reference-retrieve-ratio": true}), CLI_SURFACE);
        const fromApi = planShortForm({maxNewTokens: 12, weights: {relevance: 2, useSequenceScore: false}, mode: "always", retrieveRatio: "reference-logprob"});
        assert.deepEqual(planOptions(fromFlags), planOptions(fromApi));
    });
});

// An option added through the plan alone (maxPassageTokens: lib/selfrag/plan.ts and ShortForm.ts)
// reaches every surface: the API, the CLI flag, an HTTP body, the OpenAI `selfrag` field, eval and a job.
describe("question plan: a new option reaches every surface", function () {
    this.timeout(600_000);
    let model: SelfRagModel;
    let server: http.Server;
    let url: string;
    const dir = () => tempDir;
    const LONG = [{id: "l", title: "Paris", text: "Paris is the capital and largest city of France. ".repeat(8)}, PASSAGES[1]];
    const cut = (warnings: readonly string[]) => warnings.filter((w) => /cut from \d+ to \d+ tokens/.test(w));

    before(async () => {
        model = await SelfRagModel.load({modelPath: await tinyModel(), sequences: 4, contextSize: 512, gpu: false});
        server = http.createServer(createHandler(model));
        await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
        url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });
    after(async () => {
        await new Promise((resolve) => server?.close(resolve));
        await model?.dispose();
    });

    it("API: passages over the cap are cut, each with a warning; the others are untouched", async () => {
        const plain = await model.answer(QUESTION, {passages: LONG, mode: "always", maxNewTokens: 8});
        const capped = await model.answer(QUESTION, {passages: LONG, mode: "always", maxNewTokens: 8, maxPassageTokens: 20});
        assert.equal(cut(plain.warnings).length, 0);
        assert.equal(cut(capped.warnings).length, 1, capped.warnings.join("; "));
        assert.match(cut(capped.warnings)[0], /\(maxPassageTokens 20\)/);
        assert.ok(capped.stats.passageTokens < plain.stats.passageTokens);
        const rome = model.tokenize(`[Retrieval]<paragraph>Rome\n${PASSAGES[1].text}</paragraph>`, {bos: false}).length;
        assert.ok(capped.stats.passageTokens <= 20 + rome, `${capped.stats.passageTokens} passage tokens`);
    });

    it("HTTP body and the OpenAI selfrag field carry it", async () => {
        const res = await fetch(`${url}/v1/answer`, {method: "POST",
            body: JSON.stringify({question: QUESTION, passages: LONG, mode: "always", maxNewTokens: 8, maxPassageTokens: 20})});
        assert.equal(res.status, 200);
        assert.equal(cut((await res.json() as {warnings: string[]}).warnings).length, 1);
        const chat = await fetch(`${url}/v1/chat/completions`, {method: "POST", body: JSON.stringify({messages: [{role: "user", content: QUESTION}],
            selfrag: {passages: LONG, mode: "always", maxNewTokens: 8, maxPassageTokens: 20}})});
        assert.equal(chat.status, 200);
        assert.equal(cut((await chat.json() as {selfrag: {warnings: string[]}}).selfrag.warnings).length, 1);
        const bad = await fetch(`${url}/v1/answer`, {method: "POST", body: JSON.stringify({question: QUESTION, passages: LONG, maxPassageTokens: 0})});
        assert.equal(bad.status, 400);
        assert.match((await bad.json() as {error: {message: string}}).error.message, /for maxPassageTokens/);
    });

    it("the CLI has --max-passage-tokens on ask and eval; a job carries it", async () => {
        const passagesFile = path.join(dir(), "long-passages.jsonl");
        fs.writeFileSync(passagesFile, LONG.map((p) => JSON.stringify(p)).join("\n") + "\n");
        const r = await runCli(["ask", "--model", await tinyModel(), "--passages", passagesFile, "--mode", "always", "--max-new-tokens", "8",
            "--max-passage-tokens", "20", "--json", QUESTION]);
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stderr, /cut from \d+ to \d+ tokens \(--max-passage-tokens 20\)/);
        const evalFile = path.join(dir(), "plan-eval.jsonl");
        fs.writeFileSync(evalFile, JSON.stringify({question: QUESTION, answers: ["Paris"], ctxs: LONG}) + "\n");
        const out = path.join(dir(), `plan-eval-${process.pid}.jsonl`);
        fs.rmSync(out, {force: true});
        const e = await runCli(["eval", "--model", await tinyModel(), "--input", evalFile, "--output", out, "--mode", "always",
            "--max-new-tokens", "8", "--max-passage-tokens", "20", "--json"]);
        assert.equal(e.code, 0, e.stderr);
        const refused = await runCli(["eval", "--model", await tinyModel(), "--input", evalFile, "--output", out + ".x", "--max-passage-tokens", "0"]);
        assert.match(refused.stderr, /for --max-passage-tokens/);
        const {jobPlan} = await import("../lib/distributed/jobs.js");
        const plan = planShortForm({maxPassageTokens: 20});
        const job = JSON.parse(JSON.stringify({task: "none", profile: "default", long: false, shortForm: planOptions(plan), longForm: {}}));
        assert.equal(jobPlan(job).form === "short" && (jobPlan(job) as {maxPassageTokens?: number}).maxPassageTokens, 20);
    });
});
