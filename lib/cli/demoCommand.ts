import fs from "node:fs";
import path from "node:path";
import {writeFixtureModel} from "../fixtures/FixtureModel.js";
import type {Passage} from "../selfrag/prompts.js";
import {PassageIndex} from "../retrieval/PassageIndex.js";
import {SelfRagModel} from "../SelfRagModel.js";
import {printAnswer} from "./askCommand.js";
import {cacheDir, findDefaultModel} from "./options.js";
import {CACHE_FLAGS_HELP, cacheFlags, cacheOptions, parseCommand} from "./contract.js";

const help = `Usage: selfrag demo [--model FILE] [--cpu]

Runs full short-form Self-RAG rounds end to end on a small built-in corpus: builds a passage index
(USearch + SQLite, lexical embedder, in ~/.cache/selfrag/demo-index), retrieves the top passages,
decides retrieval, decodes one candidate per passage in one batch, scores them, answers. Uses --model, or a
pulled model ($SELFRAG_MODEL, else what \`selfrag pull\` recorded, else a Self-RAG GGUF in ~/.cache/selfrag/models); without one it writes and
uses the generated FIXTURE model, which is not a language model: its answers are scripted.
  ${CACHE_FLAGS_HELP}`;

/** A few passages in the DPR style (title + text) the demo answers from. */
export const DEMO_CORPUS: Passage[] = [
    {id: "wiki-1", title: "Berlin", text: "Berlin is the capital and largest city of Germany, on the Spree."},
    {id: "wiki-2", title: "Paris", text: "Paris is the capital and most populous city of France. Paris has been a centre of finance and art."},
    {id: "wiki-3", title: "Rome", text: "Rome is the capital city of Italy and of the Lazio region."},
    {id: "wiki-4", title: "Madrid", text: "Madrid is the capital and most populous city of Spain."},
    {id: "wiki-5", title: "Lyon", text: "Lyon is the third-largest city of France, at the confluence of the Rhone and the Saone."},
    {id: "wiki-6", title: "Greeting", text: "Hello is a salutation or greeting in the English language."},
    {id: "wiki-7", title: "Vienna", text: "Vienna is the capital, largest city and one of nine states of Austria."},
    {id: "wiki-8", title: "Marseille", text: "Marseille is a port city in southern France on the Mediterranean coast."}
];
const NDOCS = 3;

/** The demo corpus as a passage index, built once (offline, lexical embedder). */
async function demoIndex(): Promise<PassageIndex> {
    const dir = path.join(cacheDir(), "demo-index");
    if (!fs.existsSync(path.join(dir, "manifest.json"))) {
        const corpus = path.join(cacheDir(), "demo-corpus.jsonl");
        fs.mkdirSync(cacheDir(), {recursive: true});
        fs.writeFileSync(corpus, DEMO_CORPUS.map((p) => JSON.stringify(p)).join("\n") + "\n");
        await PassageIndex.build({corpus, out: dir, overwrite: true});
    }
    return PassageIndex.open(dir);
}

export const DEMO_QUESTIONS = ["What is the capital of France?", "Say hello to a new user."];

export async function demoCommand(args: string[]): Promise<void> {
    const parsed = parseCommand("selfrag demo", help, {args, options: {model: {type: "string"}, cpu: {type: "boolean"}, ...cacheFlags}});
    if (parsed == null) return;
    const {values} = parsed;
    let modelPath = values.model ?? findDefaultModel();
    let fixture = false;
    if (modelPath == null) {
        fixture = true;
        modelPath = path.join(cacheDir(), "fixtures", "tiny.gguf");
        if (!fs.existsSync(modelPath)) await writeFixtureModel(modelPath, "tiny");
        console.log("NOTE: no Self-RAG model found, so this demo runs the generated FIXTURE model (designed weights,\n" +
            "not a language model: its answers are scripted to exercise every step). See README, \"Getting a real model\".\n");
    }
    const index = await demoIndex();
    const model = await SelfRagModel.load({modelPath, contextSize: 1024, sequences: NDOCS * DEMO_QUESTIONS.length, gpu: values.cpu ? false : "auto", nodeLlamaCpp: false,
        ...cacheOptions(values)});
    try {
        console.log(`model: ${modelPath}${fixture ? " (fixture)" : ""}   backend: ${model.backend}   ` +
            `index: ${index.dir} (${DEMO_CORPUS.length} passages, top ${NDOCS} per question)\n`);
        const started = performance.now();
        const answers = await model.answerBatch(DEMO_QUESTIONS, {retriever: index.asRetriever(), ndocs: NDOCS, maxNewTokens: 64});
        const elapsed = performance.now() - started;
        answers.forEach((result, i) => {
            console.log(`Q: ${DEMO_QUESTIONS[i]}`);
            printAnswer(result);
            console.log("");
        });
        const stats = model.context.stats;
        console.log(`${answers.length} questions in ${elapsed.toFixed(0)} ms: ${stats.tokensEvaluated} tokens evaluated in ${stats.decodeCalls} decode calls`);
    } finally {
        await model.dispose();
        await index.close();
    }
}
