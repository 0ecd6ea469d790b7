// The HTML view of an answer (issue 12, "Search-tree view"), opened in a real headless browser:
// Debian's chromium (installed by .ci/run when missing; CHROMIUM_PATH overrides the path), driven
// by playwright-core. The pages come from the CLI as a user makes them (`ask --long --json`, then
// `view --html`; `ask --html`), with the tiny fixture model. Checked on the rendered page: every
// node of the search present, the chosen path marked and equal to the answer's segments, pruned
// nodes greyed, the edges drawn, no console or page error, no request beyond the file itself.
// SELFRAG_UPDATE_SCREENSHOTS=1 also writes the README's screenshot, docs/images/long-form-view.png.
import assert from "node:assert/strict";
import {spawn} from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import {fileURLToPath, pathToFileURL} from "node:url";
import {chromium, type Browser, type Page} from "playwright-core";
import type {LongFormAnswer} from "../lib/selfrag/LongForm.js";
import type {ShortFormAnswer} from "../lib/selfrag/ShortForm.js";
import {chosenPath, renderLongFormHtml, segmentHtml} from "../lib/view/AnswerView.js";
import {tempDir, tinyModel} from "../test-support/fixtures.js";
import {runCli} from "../test-support/cli.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const cli = path.join(root, "dist", "lib", "cli", "main.js");
const dir = path.join(tempDir, "html-view");
const chromiumPath = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

interface Result {stdout: string, stderr: string, code: number}

const selfrag = (args: string[]): Promise<Result> => runCli(args, {env: {SELFRAG_DEBUG: ""}});

function withStdin(args: string[], input: string): Promise<Result> {
    return new Promise((resolve, reject) => {
        const child = spawn(process.execPath, [cli, ...args]);
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (d: Buffer) => stdout += d.toString());
        child.stderr.on("data", (d: Buffer) => stderr += d.toString());
        child.on("error", reject);
        child.on("close", (code) => resolve({stdout, stderr, code: code ?? -1}));
        child.stdin.end(input);
    });
}

function assertOneLineFailure(result: Result, code: string, message: RegExp): void {
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, /^selfrag: [^\n]+ \[[A-Z_]+\]\n$/);
    assert.ok(result.stderr.endsWith(` [${code}]\n`), result.stderr);
    assert.match(result.stderr, message);
}

// "Paris" and "bio" make the tiny model ask for evidence again, so the tree has several depths.
const PASSAGES = [
    {id: "p", title: "Paris", text: "Paris is the capital and largest city of France. Paris"},
    {id: "c", title: "Marie Curie", text: "Marie Curie was a physicist and chemist who lived in Paris; a short bio."},
    {id: "b", title: "Berlin", text: "Berlin is the capital of Germany."},
    {id: "w", title: "Warsaw", text: "Warsaw is the capital of Poland, where Curie was born. Her bio starts in Paris."},
    {id: "l", title: "Lyon", text: "Lyon is a city of France."}
];
const LONG_QUESTION = "Tell me a bio of Marie Curie.";
const SHORT_QUESTION = "What is the capital of France?";

/** What the page reports while it is open: console messages, page errors and every request. */
interface Watch {problems: string[], requests: string[]}

async function open(browser: Browser, file: string): Promise<{page: Page, watch: Watch}> {
    const page = await browser.newPage({viewport: {width: 1000, height: 700}});
    const watch: Watch = {problems: [], requests: []};
    page.on("console", (m) => {
        if (m.type() === "error" || m.type() === "warning") watch.problems.push(`console ${m.type()}: ${m.text()}`);
    });
    page.on("pageerror", (e) => watch.problems.push(`page error: ${e.message}`));
    page.on("request", (r) => watch.requests.push(r.url()));
    // Anything but the file itself is refused (and counted above).
    await page.route("**/*", (route) => route.request().url().startsWith("file:") ? route.continue() : route.abort());
    await page.goto(pathToFileURL(file).href, {waitUntil: "load"});
    return {page, watch};
}

function assertQuiet(watch: Watch, file: string): void {
    assert.deepEqual(watch.problems, [], "no console errors or warnings, no page errors");
    const external = watch.requests.filter((url) => !url.startsWith("file:"));
    assert.deepEqual(external, [], "no request beyond the file");
    assert.deepEqual(watch.requests, [pathToFileURL(file).href], "one request: the page itself");
}

/** The best path as the search picks it, computed here apart from the view: best node of the deepest depth, then its parents. */
function expectedPath(answer: LongFormAnswer): number[] {
    const deepest = Math.max(...answer.tree.map((n) => n.depth));
    const last = answer.tree.filter((n) => n.depth === deepest).reduce((a, b) => b.score > a.score ? b : a);
    const ids: number[] = [];
    for (let n = last; n.parent != null; n = answer.tree.find((m) => m.id === n.parent)!) ids.unshift(n.id);
    return ids;
}

describe("HTML view of an answer, in headless chromium", function () {
    let browser: Browser | undefined;
    let passagesFile: string;
    let model: string;

    before(async function () {
        if (!fs.existsSync(chromiumPath)) {
            // CI installs chromium (.ci/run); elsewhere say what is missing rather than fail.
            if (process.env.CI) throw new Error(`chromium not found at ${chromiumPath} (.ci/run installs it: apt-get install chromium)`);
            console.warn(`    skipped: no chromium at ${chromiumPath} (apt-get install chromium, or set CHROMIUM_PATH)`);
            this.skip();
        }
        fs.mkdirSync(dir, {recursive: true});
        passagesFile = path.join(dir, "passages.jsonl");
        fs.writeFileSync(passagesFile, PASSAGES.map((p) => JSON.stringify(p)).join("\n") + "\n");
        model = await tinyModel();
        browser = await chromium.launch({executablePath: chromiumPath, args: ["--no-sandbox"]});
    });
    after(async () => browser?.close());

    it("long form: ask --long --html and view of its --json give one page; every node, the chosen path, pruned nodes greyed", async () => {
        const direct = path.join(dir, "long-direct.html");
        const asked = await selfrag(["ask", "--model", model, "--passages", passagesFile, "--long", "--mode", "always", "--max-depth", "4",
            "--max-new-tokens", "30", "--cpu", "--json", "--html", direct, LONG_QUESTION]);
        assert.equal(asked.code, 0, asked.stderr);
        const answer = JSON.parse(asked.stdout) as LongFormAnswer;
        assert.ok(answer.tree.length >= 10 && answer.segments.length >= 2, `a tree of several depths: ${answer.tree.length} nodes, ${answer.segments.length} segments`);
        assert.ok(answer.tree.some((n) => !n.inBeam), "the fixture search prunes nodes");

        const saved = path.join(dir, "long.json");
        fs.writeFileSync(saved, asked.stdout);
        const file = path.join(dir, "long.html");
        const viewed = await selfrag(["view", saved, "--html", file, "--question", LONG_QUESTION]);
        assert.equal(viewed.code, 0, viewed.stderr);
        assert.equal(viewed.stdout, "");
        assert.equal(fs.readFileSync(file, "utf8"), fs.readFileSync(direct, "utf8"), "the same page from a run and from its saved --json");

        const {page, watch} = await open(browser!, file);
        try {
            assert.equal(await page.title(), LONG_QUESTION);
            assert.equal(await page.locator("[data-answer]").textContent(), answer.answer);
            // every node of the search, once
            const ids = await page.locator(".tree .node").evaluateAll((els) => els.map((e) => Number(e.getAttribute("data-node-id"))));
            assert.deepEqual([...ids].sort((a, b) => a - b), answer.tree.map((n) => n.id).sort((a, b) => a - b));
            for (const node of answer.tree) {
                const card = page.locator(`.tree .node[data-node-id="${node.id}"]`);
                assert.equal(await card.getAttribute("data-depth"), String(node.depth));
                if (node.parent != null) assert.equal(await card.getAttribute("data-parent-id"), String(node.parent));
                assert.equal(Number(await card.getAttribute("data-score")), node.score);
                // the segment text as written, its reflection tokens as tags
                if (node.text !== "") assert.equal((await card.locator(".text").textContent())!.replace(/\s+/g, ""), node.text.replace(/[[\]\s]/g, ""));
                if (node.passage != null) assert.equal((await card.locator(".ptitle").textContent())!.trim(), `${node.passage.title} ${node.passage.id}`);
            }
            assert.ok(await page.locator(".tree .tag[data-token='[Fully supported]']").count() > 0);

            // the chosen path: the search's best path, carrying the answer's segments in order
            const chosen = await page.locator('.tree .node[data-chosen="true"]').evaluateAll((els) => els.map((e) => Number(e.getAttribute("data-node-id"))));
            const expected = expectedPath(answer);
            assert.deepEqual(chosen, expected);
            assert.deepEqual(chosen.map((id) => answer.tree.find((n) => n.id === id)!.text), answer.segments.map((s) => s.text));
            assert.deepEqual(chosenPath(answer), {ids: expected, source: "search"});
            const rows = await page.locator("table.segments tbody tr").evaluateAll((els) => els.map((e) => Number(e.getAttribute("data-node-id"))));
            assert.deepEqual(rows, expected, "each segment row names its node");

            // pruned nodes greyed, kept ones not
            for (const node of answer.tree.filter((n) => n.parent != null)) {
                const card = page.locator(`.tree .node[data-node-id="${node.id}"]`);
                const style = await card.evaluate((e) => ({opacity: Number(getComputedStyle(e).opacity), filter: getComputedStyle(e).filter}));
                assert.equal(await card.getAttribute("data-pruned"), node.inBeam ? null : "true");
                if (node.inBeam) assert.equal(style.opacity, 1, `node ${node.id} kept`);
                else assert.ok(style.opacity < 1 && /grayscale/.test(style.filter), `node ${node.id} pruned: ${JSON.stringify(style)}`);
            }
            // the retrieval decision with its probability
            const retrieval = page.locator(".retrieval");
            assert.equal(await retrieval.getAttribute("data-retrieve"), "true");
            assert.match((await retrieval.textContent())!, new RegExp(`p = ${answer.retrieve.p.toFixed(4)}`));

            // the script drew one edge per parent -> child, the chosen ones marked; hiding pruned nodes redraws
            assert.equal(await page.locator("html[data-edges-drawn]").count(), 1);
            assert.equal(await page.locator("svg.edges path").count(), answer.tree.length - 1);
            assert.equal(await page.locator("svg.edges path.chosen").count(), expected.length);
            if (process.env.SELFRAG_UPDATE_SCREENSHOTS === "1") {
                const out = path.join(root, "docs", "images", "long-form-view.png");
                fs.mkdirSync(path.dirname(out), {recursive: true});
                await page.screenshot({path: out});
            }
            const shot = await page.screenshot();
            assert.equal(shot.readUInt32BE(16), 1000, "screenshot width");
            assert.equal(shot.readUInt32BE(20), 700, "screenshot height");
            await page.locator("#show-pruned").uncheck();
            const pruned = answer.tree.filter((n) => !n.inBeam).length;
            assert.equal(await page.locator('.tree .node[data-pruned="true"]:visible').count(), 0);
            assert.equal(await page.locator("svg.edges path").count(), answer.tree.length - 1 - pruned);
            await page.locator(`.tree .node[data-node-id="${expected[expected.length - 1]}"]`).hover();
            assert.equal(await page.locator(".tree .node.hl").count(), expected.length + 1, "hover marks the node's path up to the root");
            assertQuiet(watch, file);
        } finally {
            await page.close();
        }
    });

    it("text is text: markup in titles, passages and segments shows as written", async () => {
        const answer = JSON.parse(fs.readFileSync(path.join(dir, "long.json"), "utf8")) as LongFormAnswer;
        const hostile = `Curie <i>&</i> "bio" <script>document.title = "x"</script>`;
        const node = answer.tree.find((n) => n.passage != null)!;
        node.passage = {id: "<b>id</b>", title: hostile, text: hostile};
        node.text = `${hostile}[Relevant]`;
        const file = path.join(dir, "hostile.html");
        fs.writeFileSync(file, renderLongFormHtml(answer, {question: hostile}));
        const {page, watch} = await open(browser!, file);
        try {
            assert.equal(await page.title(), hostile);
            assert.equal(await page.locator("h1").textContent(), hostile);
            const card = page.locator(`.tree .node[data-node-id="${node.id}"]`);
            assert.equal(await card.locator(".ptitle").textContent(), `${hostile} <b>id</b>`);
            assert.equal(await card.locator(".ptitle").getAttribute("title"), hostile);
            assert.equal(await card.locator(".text").textContent(), `${hostile}Relevant`);
            assert.equal(await page.locator("body i, .node b, .text b").count(), 0, "no element from the text");
            assert.equal(await page.locator("script").count(), 1, "only the page's own script");
            assertQuiet(watch, file);
        } finally {
            await page.close();
        }
    });

    it("short form: the candidates side by side with their critique, the chosen one marked", async () => {
        const direct = path.join(dir, "short-direct.html");
        const asked = await selfrag(["ask", "--model", model, "--passages", passagesFile, "--mode", "always", "--max-new-tokens", "30",
            "--cpu", "--json", "--html", direct, SHORT_QUESTION]);
        assert.equal(asked.code, 0, asked.stderr);
        const answer = JSON.parse(asked.stdout) as ShortFormAnswer;
        assert.equal(answer.candidates.length, PASSAGES.length);
        // view from standard input, the page on standard output
        const viewed = await withStdin(["view", "-", "--question", SHORT_QUESTION], asked.stdout);
        assert.equal(viewed.code, 0, viewed.stderr);
        assert.equal(viewed.stdout, fs.readFileSync(direct, "utf8"));

        const {page, watch} = await open(browser!, direct);
        try {
            assert.equal(await page.locator("[data-answer]").textContent(), answer.answer);
            const cards = page.locator(".candidate");
            assert.equal(await cards.count(), answer.candidates.length);
            const boxes: {x: number, y: number}[] = [];
            for (const [i, c] of answer.candidates.entries()) {
                const card = page.locator(`.candidate[data-candidate-index="${i}"]`);
                assert.equal(Number(await card.getAttribute("data-score")), c.score);
                assert.equal(await card.getAttribute("data-chosen"), i === answer.best ? "true" : null);
                for (const [metric, value] of [["relevance", c.relevance], ["support", c.support], ["utility", c.utility], ["seq", c.seq]] as const) {
                    assert.equal((await card.locator(`[data-metric="${metric}"] .mval`).textContent()), value.toFixed(2), `candidate ${i} ${metric}`);
                }
                assert.equal(await card.locator('[data-metric="segment-score"] .mval').textContent(), c.score.toFixed(3));
                boxes.push((await card.boundingBox())!);
            }
            assert.equal(await page.locator('.candidate[data-chosen="true"] .badge.chosen').count(), 1);
            assert.ok(boxes.slice(1).every((b) => b.y === boxes[0].y && b.x > boxes[0].x), `side by side: ${JSON.stringify(boxes)}`);
            assertQuiet(watch, direct);
        } finally {
            await page.close();
        }
    });
});

describe("selfrag view: inputs and errors (no browser)", () => {
    const viewDir = path.join(tempDir, "html-view-errors");
    before(() => fs.mkdirSync(viewDir, {recursive: true}));
    const write = (name: string, text: string) => {
        const file = path.join(viewDir, name);
        fs.writeFileSync(file, text);
        return file;
    };
    const candidate = {passage: {id: "p", title: "Paris", text: "Paris is in France."}, text: "[Relevant] Paris.[Fully supported]",
        answer: "Paris.", score: 2.5, relevance: 0.9, support: 1, utility: 0.5, seq: -0.1, tokens: 4, stopReason: "eos"};

    it("--help; one line naming the problem for a missing file, not JSON, JSONL, a wrong field, an unwritable --html", async () => {
        const helped = await selfrag(["view", "--help"]);
        assert.equal(helped.code, 0);
        assert.match(helped.stdout, /^Usage: selfrag view RESULT\.json/);
        assertOneLineFailure(await selfrag(["view"]), "INVALID_ARGUMENT", /takes one saved answer/);
        assertOneLineFailure(await selfrag(["view", path.join(viewDir, "nope.json")]), "INVALID_ARGUMENT", /answer file not found: .*nope\.json/);
        assertOneLineFailure(await selfrag(["view", write("bad.json", "{not json")]), "INVALID_ARGUMENT", /bad\.json is not one JSON object/);
        assertOneLineFailure(await selfrag(["view", write("two.jsonl", "{}\n{}\n")]), "INVALID_ARGUMENT", /2 lines: view takes one answer, not a JSONL file/);
        assertOneLineFailure(await selfrag(["view", write("other.json", JSON.stringify({answer: "x", retrieve: {decision: true, p: 0.5}}))]),
            "INVALID_ARGUMENT", /field "candidates" must be a list \(short form\), or "segments"/);
        const badScore = {answer: "Paris.", retrieve: {decision: true, p: 0.9}, best: 0, candidates: [{...candidate, score: "high"}]};
        assertOneLineFailure(await selfrag(["view", write("score.json", JSON.stringify(badScore))]), "INVALID_ARGUMENT", /field "candidates\[0\]\.score" must be a number, got "high"/);
        const good = write("good.json", JSON.stringify({...badScore, candidates: [candidate]}));
        assertOneLineFailure(await selfrag(["view", good, "--html", path.join(viewDir, "no", "such", "dir", "x.html")]), "INVALID_ARGUMENT", /the folder .* does not exist/);
        if (fs.existsSync("/dev/full")) {
            assertOneLineFailure(await selfrag(["view", good, "--html", "/dev/full"]), "OUTPUT_WRITE_FAILED", /cannot write --html \/dev\/full: .*ENOSPC/);
        }
        assertOneLineFailure(await selfrag(["view", good, "--frobnicate"]), "INVALID_ARGUMENT", /unknown option --frobnicate for `selfrag view`/);
        assertOneLineFailure(await selfrag(["ask", "--passages", good, "--html", path.join(viewDir, "no", "x.html"), "Q?"]), "INVALID_ARGUMENT",
            /cannot write --html .* does not exist/);
    });

    it("reads a chat completion's selfrag field (short form), and a long form without its tree", async () => {
        const completion = {id: "chatcmpl-1", object: "chat.completion", choices: [{index: 0, message: {role: "assistant", content: "Paris."}}],
            selfrag: {retrieve: {decision: true, p: 0.9}, best: 0, candidates: [candidate], warnings: []}};
        const short = await selfrag(["view", write("completion.json", JSON.stringify(completion))]);
        assert.equal(short.code, 0, short.stderr);
        assert.match(short.stdout, /<article class="candidate node" data-candidate-index="0" data-score="2.5" data-chosen="true">/);
        const long = {id: "chatcmpl-2", choices: [{message: {content: "Paris [1]."}}], selfrag: {retrieve: {decision: true, p: 0.9},
            docs: [candidate.passage], segments: [{text: candidate.text, clean: "Paris.", passage: candidate.passage, citation: 1, score: 2.5}],
            stats: {evaluatedTokens: 10, referenceTokens: 20, nodes: 5, depth: 1, stop: "max-depth"}}};
        const page = await selfrag(["view", write("completion-long.json", JSON.stringify(long))]);
        assert.equal(page.code, 0, page.stderr);
        assert.match(page.stdout, /data-empty-tree="true">No search tree: this answer does not carry its tree/);
        assert.match(page.stdout, /<p class="answer" data-answer="true">Paris \[1\]\.<\/p>/);
    });

    it("chosenPath: the search's rule, segments dropped by ignoreCont, another ranking found by the segments", () => {
        const node = (id: number, parent: number | null, depth: number, text: string, score: number, inBeam = true) =>
            ({id, parent, depth, text, score, inBeam, asksRetrieval: true, stopReason: "eos"});
        const tree = [node(0, null, 0, "", 1), node(1, 0, 1, "A", 2), node(2, 0, 1, "B", 3), node(3, 2, 2, "C", 6), node(4, 1, 2, "D", 7),
            node(5, 2, 2, "E", 6.5, false)];
        const segment = (text: string) => ({text, clean: text, score: 1, stopReason: "eos", tokens: 1});
        assert.deepEqual(chosenPath({tree, segments: [segment("A"), segment("D")]}), {ids: [1, 4], source: "search"});
        assert.deepEqual(chosenPath({tree, segments: [segment("D")]}), {ids: [1, 4], source: "search"}, "A dropped (ignoreCont)");
        assert.deepEqual(chosenPath({tree, segments: [segment("B"), segment("C")]}), {ids: [2, 3], source: "segments"});
        assert.deepEqual(chosenPath({tree, segments: [segment("Z")]}), {ids: [], source: "none"});
        assert.deepEqual(chosenPath({tree: [], segments: [segment("Z")]}), {ids: [], source: "none"});
        // ties go to the earlier node, as the search's stable sort does
        const tied = [node(0, null, 0, "", 1), node(1, 0, 1, "A", 2), node(2, 0, 1, "A", 2)];
        assert.deepEqual(chosenPath({tree: tied, segments: [segment("A")]}).ids, [1]);
        const html = renderLongFormHtml({answer: "D", retrieve: {decision: true, p: 0.5}, segments: [segment("B"), segment("C")], docs: [], tree,
            stats: {evaluatedTokens: 1, referenceTokens: 2, nodes: 5, depth: 2, stop: "max-depth"}});
        assert.match(html, /data-path-source="segments"/);
    });

    it("segment text is escaped; reflection tokens become tags", () => {
        assert.equal(segmentHtml(`<script>alert("x")</script>[Relevant] a & b[Utility:5]</s>`),
            `&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;<span class="tag good" data-token="[Relevant]">Relevant</span> a &amp; b` +
            `<span class="tag good" data-token="[Utility:5]">Utility:5</span><span class="tag markup" data-token="&lt;/s&gt;">&lt;/s&gt;</span>`);
    });
});
