// The README and the docs/ pages, executed: every shell block and TypeScript example runs here, so
// documentation cannot drift from behaviour. The README runs first, top to bottom, in an empty
// folder with no model anywhere (an empty $SELFRAG_HOME, no $SELFRAG_MODEL), as a newcomer's would:
// its quick start must create every file it uses. The docs/ pages then run in DOCS_ORDER, in
// one scratch folder where every file they name exists: `selfrag_llama2_7b.Q4_K_M.gguf` is the
// tiny fixture model, the corpus and evaluation files are generated in the released formats. In
// both, `selfrag` (or `npx selfrag`) is this checkout's CLI and `import ... from "selfrag"` this
// checkout's package. A block is steered by an HTML comment on the line before it (invisible on
// GitHub):
//   <!-- readme-test: skip (reason) -->   not run (the reason is required)
//   <!-- readme-test: synopsis -->        usage lines: every command and --flag must be in that command's --help
//   <!-- readme-test: server -->          shell: the first line starts a server, the rest run against it
//                                         (it runs until the next server block or the end of the page)
//   <!-- readme-test: with-server -->     TypeScript run while a `selfrag serve` answers on the port it names
// TypeScript blocks of every page are also type-checked together against the package's
// declarations, with `strict`.
import assert from "node:assert/strict";
import {execFile, spawn, type ChildProcess} from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import {fileURLToPath} from "node:url";
import {promisify} from "node:util";
import ts from "typescript";
import {generatedPassages} from "../test-support/corpora.js";
import {tinyModel} from "../test-support/fixtures.js";
import {freePort} from "../test-support/net.js";

const run = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const cli = path.join(root, "dist", "lib", "cli", "main.js");

export interface ReadmeBlock {
    line: number;
    lang: string;
    directive?: string;
    code: string;
}

/** The fenced blocks of a Markdown file with the readme-test directive before each. */
export function readmeBlocks(markdown: string): ReadmeBlock[] {
    const lines = markdown.split("\n");
    const blocks: ReadmeBlock[] = [];
    for (let i = 0; i < lines.length; i++) {
        const open = /^```(\w*)\s*$/.exec(lines[i]);
        if (open == null) continue;
        const start = i;
        const body: string[] = [];
        for (i++; i < lines.length && !/^```\s*$/.test(lines[i]); i++) body.push(lines[i]);
        const before = lines.slice(Math.max(0, start - 2), start).join("\n");
        const directive = /<!-- readme-test: ([^>]*?) -->/.exec(before)?.[1];
        blocks.push({line: start + 1, lang: open[1], directive, code: body.join("\n")});
    }
    return blocks;
}

/** Shell commands of a block: continuation lines joined, comments and blank lines dropped. */
function commands(code: string): string[] {
    return code.replace(/\\\n\s*/g, " ").split("\n").map((l) => l.replace(/\s+#.*$/, "").trim()).filter((l) => l !== "" && !l.startsWith("#"));
}

/** A shell line with `selfrag` (or `npx selfrag`) pointing at this checkout's CLI. */
function localCommand(line: string): string {
    return line.replace(/^(npx\s+)?selfrag\b/, `node ${JSON.stringify(cli)}`);
}


async function waitForHealth(port: number, child: ChildProcess): Promise<void> {
    for (let i = 0; i < 300; i++) {
        if (child.exitCode != null) throw new Error(`the server exited with ${child.exitCode}`);
        try {
            if ((await fetch(`http://127.0.0.1:${port}/health`)).ok) return;
        } catch {
            // not listening yet
        }
        await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error("the server did not answer /health");
}

/** The files the docs/ pages' commands and examples name, in the formats of their releases. */
async function populate(dir: string): Promise<void> {
    fs.symlinkSync(await tinyModel(), path.join(dir, "selfrag_llama2_7b.Q4_K_M.gguf"));
    const eiffel = {id: "e1", title: "Eiffel Tower", text: "The Eiffel Tower in Paris was designed by the engineering company of Gustave Eiffel."};
    const passages = [eiffel, {id: "h1", title: "Hamlet", text: "Hamlet is a tragedy written by William Shakespeare."},
        {id: "p1", title: "Paris", text: "Paris is the capital and largest city of France."}, ...generatedPassages(300, 11)];
    // DPR's psgs_w100.tsv: id, text, title with a header line.
    fs.writeFileSync(path.join(dir, "psgs_w100.tsv"), "id\ttext\ttitle\n" + passages.map((p) => `${p.id}\t${p.text}\t${p.title}`).join("\n") + "\n");
    fs.writeFileSync(path.join(dir, "passages.jsonl"), passages.slice(0, 5).map((p) => JSON.stringify(p)).join("\n") + "\n");
    const ctxs = passages.slice(0, 3);
    fs.writeFileSync(path.join(dir, "popqa_longtail_w_gs.jsonl"), [
        {id: "1", question: "What is the capital of France?", possible_answers: "[\"Paris\"]", ctxs},
        {id: "2", question: "Who designed the Eiffel Tower?", possible_answers: "[\"Gustave Eiffel\"]", ctxs}
    ].map((r) => JSON.stringify(r)).join("\n") + "\n");
    fs.writeFileSync(path.join(dir, "arc_challenge_processed.jsonl"), JSON.stringify({id: "a1", question: "Which city is the capital of France?",
        choices: {text: ["Paris", "Rome", "Berlin", "Madrid"], label: ["A", "B", "C", "D"]}, answerKey: "A", ctxs}) + "\n");
    fs.writeFileSync(path.join(dir, "asqa_eval_gtr_top100.json"), JSON.stringify([{sample_id: "s1", question: "Tell me a bio of Gustave Eiffel.",
        qa_pairs: [{short_answers: ["engineer"]}], answer: "", docs: ctxs}]));
    linkPackage(dir);
}

/** node_modules as `npm install /path/to/selfrag` leaves it: this checkout as "selfrag", and its dependencies. */
function linkPackage(dir: string): void {
    fs.mkdirSync(path.join(dir, "node_modules"));
    for (const entry of fs.readdirSync(path.join(root, "node_modules"))) {
        fs.symlinkSync(path.join(root, "node_modules", entry), path.join(dir, "node_modules", entry));
    }
    fs.symlinkSync(root, path.join(dir, "node_modules", "selfrag"));
}

/** The docs/ pages in the order they run (a page may use what an earlier one built, e.g. wiki-index). */
export const DOCS_ORDER = ["self-rag.md", "install.md", "api.md", "cli.md", "html-view.md", "retrieval.md", "evaluation.md",
    "tune.md", "server.md", "distributed.md", "errors.md", "models.md", "benchmarks.md", "gpu.md", "limits.md"];

/** Every Markdown file under docs/, relative to it. */
function docsFiles(): string[] {
    const walk = (d: string): string[] => fs.readdirSync(d, {withFileTypes: true})
        .flatMap((e) => e.isDirectory() ? walk(path.join(d, e.name)) : [path.join(d, e.name)]);
    return walk(path.join(root, "docs")).filter((f) => f.endsWith(".md")).map((f) => path.relative(path.join(root, "docs"), f)).sort();
}

interface Page {
    name: string;
    blocks: ReadmeBlock[];
}

const page = (name: string): Page => ({name, blocks: readmeBlocks(fs.readFileSync(path.join(root, name), "utf8"))});

describe("README and docs/, executed", function () {
    this.timeout(900_000);
    const readme = page("README.md");
    const docs = DOCS_ORDER.map((f) => page(path.join("docs", f)));
    const pages = [readme, ...docs];
    let readmeDir: string;
    let docsDir: string;
    // The README's reader has nothing: no model pulled, no $SELFRAG_MODEL.
    const readmeEnv = () => {
        const env: NodeJS.ProcessEnv = {...process.env, SELFRAG_HOME: path.join(readmeDir, ".selfrag")};
        delete env.SELFRAG_MODEL;
        return env;
    };
    const docsEnv = () => ({...process.env, SELFRAG_HOME: path.join(docsDir, ".selfrag"), SELFRAG_MODEL: path.join(docsDir, "selfrag_llama2_7b.Q4_K_M.gguf")});

    before(async () => {
        const tmp = fs.realpathSync(process.env.TMPDIR ?? "/tmp");
        readmeDir = fs.mkdtempSync(path.join(tmp, "selfrag-readme-"));
        linkPackage(readmeDir);
        docsDir = fs.mkdtempSync(path.join(tmp, "selfrag-docs-"));
        await populate(docsDir);
    });
    after(() => {
        for (const dir of [readmeDir, docsDir]) if (dir != null) fs.rmSync(dir, {recursive: true, force: true});
    });

    it("every page under docs/ is in DOCS_ORDER", () => {
        assert.deepEqual(docsFiles(), [...DOCS_ORDER].sort());
    });

    it("every block is runnable, a synopsis, or skipped with a reason", () => {
        assert.ok(readme.blocks.length >= 8, `README: ${readme.blocks.length} blocks`);
        for (const {name, blocks} of pages) {
            for (const b of blocks) {
                const where = `${name}:${b.line}`;
                if (b.directive?.startsWith("skip")) assert.match(b.directive, /^skip \(.+\)$/, `${where}: a skip needs its reason`);
                else if (b.directive != null) assert.ok(["synopsis", "server", "with-server"].includes(b.directive), `${where}: unknown directive ${b.directive}`);
                if (!b.directive?.startsWith("skip")) assert.ok(["", "ts", "bash", "sh"].includes(b.lang), `${where}: language ${b.lang}`);
            }
        }
    });

    it("the TypeScript examples type-check against the package (strict)", () => {
        const files = pages.flatMap(({name, blocks}) => blocks.filter((b) => b.lang === "ts" && !b.directive?.startsWith("skip")).map((b) => {
            const file = path.join(docsDir, `typecheck-${name.replaceAll(/[/.]/g, "_")}-line${b.line}.mts`);
            fs.writeFileSync(file, `${b.code}\nexport {};\n`);
            return file;
        }));
        assert.ok(files.length >= 5, `${files.length} examples`);
        const program = ts.createProgram(files, {
            strict: true, module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext,
            target: ts.ScriptTarget.ES2022, noEmit: true, skipLibCheck: true, types: ["node"], typeRoots: [path.join(root, "node_modules", "@types")]
        });
        const diagnostics = ts.getPreEmitDiagnostics(program).map((d) => {
            const where = d.file != null && d.start != null ? `${path.basename(d.file.fileName)}:${d.file.getLineAndCharacterOfPosition(d.start).line + 1}` : "";
            return `${where} ${ts.flattenDiagnosticMessageText(d.messageText, "\n")}`;
        });
        assert.deepEqual(diagnostics, []);
    });

    it("the README runs top to bottom in an empty folder, with no model anywhere", async () => {
        const ran = await runPage(readme, readmeDir, readmeEnv());
        assert.ok(ran.length >= 8, `ran ${ran.join(", ")}`);
        assert.ok(!fs.existsSync(path.join(readmeDir, ".selfrag", "models")), "the README pulled nothing");
    });

    it("the docs/ pages run in order", async () => {
        const ran: string[] = [];
        for (const p of docs) ran.push(...await runPage(p, docsDir, docsEnv()));
        assert.ok(ran.length >= 12, `ran ${ran.join(", ")}`);
    });
});

/** Runs the blocks of one page in `dir`; returns where each block that ran starts. */
async function runPage({name, blocks}: Page, dir: string, env: NodeJS.ProcessEnv): Promise<string[]> {
    let port: number | undefined;
    let server: ChildProcess | undefined;
    const stopServer = async () => {
        if (server == null) return;
        const exited = new Promise((resolve) => server!.once("exit", resolve));
        if (server.exitCode == null) server.kill("SIGINT");
        await exited;
        server = undefined;
    };
    const sh = async (line: string) => {
        try {
            return await run("bash", ["-c", localCommand(line)], {cwd: dir, env, maxBuffer: 64 << 20});
        } catch (error) {
            const e = error as Error & {stderr?: string, stdout?: string};
            throw new Error(`${name}: command failed: ${line}\n${e.stderr ?? ""}${e.stdout ?? ""}`);
        }
    };
    const ran: string[] = [];
    try {
        for (const b of blocks) {
            const where = `${name}:${b.line}`;
            if (b.directive?.startsWith("skip")) continue;
            if (b.directive === "synopsis") {
                // A usage line continues on the indented lines below it.
                const usage = b.code.split("\n").reduce<string[]>((all, l) => {
                    if (/^\s/.test(l) && all.length > 0) all[all.length - 1] += ` ${l.trim()}`;
                    else if (l.trim() !== "") all.push(l.trim());
                    return all;
                }, []);
                for (const line of usage) {
                    const [, command, sub] = /^selfrag ([\w-]+)(?: (build|info|verify))?/.exec(line) ?? [];
                    assert.ok(command != null, `${where}: not a selfrag usage line: ${line}`);
                    const {stdout} = await run("node", [cli, command, ...(sub != null ? [sub] : []), "--help"], {env});
                    for (const flag of line.match(/--[a-z][a-z-]*/g) ?? []) {
                        if (flag === "--help") continue;
                        assert.ok(stdout.includes(flag), `${where}: ${command}${sub != null ? ` ${sub}` : ""} --help does not list ${flag}`);
                    }
                }
                ran.push(where);
                continue;
            }
            if (b.lang === "ts") {
                const js = ts.transpileModule(b.code, {compilerOptions: {module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022}}).outputText;
                const file = path.join(dir, `example-${path.basename(name, ".md")}-line${b.line}.mjs`);
                fs.writeFileSync(file, b.directive === "with-server" && port != null ? js.replaceAll("8080", String(port)) : js);
                try {
                    await run("node", [file], {cwd: dir, env, maxBuffer: 64 << 20});
                } catch (error) {
                    const e = error as Error & {stderr?: string};
                    assert.fail(`${where}: the example failed:\n${e.stderr ?? e.message}`);
                }
                ran.push(where);
                continue;
            }
            const lines = commands(b.code);
            for (const [i, original] of lines.entries()) {
                if (/^npm (install|test)\b/.test(original)) continue; // what CI itself runs
                if (b.directive === "server" && i === 0) {
                    await stopServer();
                    port = await freePort();
                    const line = localCommand(original.replaceAll("8080", String(port)));
                    server = spawn("bash", ["-c", `exec ${line}`], {cwd: dir, env, stdio: ["ignore", "ignore", "pipe"]});
                    await waitForHealth(port, server);
                    continue;
                }
                const line = port != null ? original.replaceAll("8080", String(port)) : original;
                const {stdout} = await sh(line);
                if (line.startsWith("curl")) assert.doesNotMatch(stdout, /"error"/, `${where}: ${line}\n${stdout}`);
            }
            ran.push(where);
        }
    } finally {
        await stopServer();
    }
    return ran;
}
