// The README, executed: every shell block and TypeScript example runs here, so documentation
// cannot drift from behaviour. Blocks run in order in one scratch folder where every file the
// README names exists: `selfrag_llama2_7b.Q4_K_M.gguf` is the tiny fixture model, the corpus and
// evaluation files are generated in the released formats, `selfrag` is this checkout's CLI and
// `import ... from "selfrag"` this checkout's package. A block is steered by an HTML comment on the
// line before it (invisible on GitHub):
//   <!-- readme-test: skip (reason) -->   not run (the reason is required)
//   <!-- readme-test: synopsis -->        usage lines: every command and --flag must be in that command's --help
//   <!-- readme-test: server -->          shell: the first line starts a server, the rest run against it
//   <!-- readme-test: with-server -->     TypeScript run while a `selfrag serve` answers on the port it names
// TypeScript blocks are also type-checked together against the package's declarations.
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

/** The files the README's commands and examples name, in the formats of their releases. */
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
    // node_modules: this checkout as "selfrag", and its dependencies (openai for the client example).
    fs.mkdirSync(path.join(dir, "node_modules"));
    for (const entry of fs.readdirSync(path.join(root, "node_modules"))) {
        fs.symlinkSync(path.join(root, "node_modules", entry), path.join(dir, "node_modules", entry));
    }
    fs.symlinkSync(root, path.join(dir, "node_modules", "selfrag"));
}

describe("README, executed", function () {
    this.timeout(600_000);
    const readme = fs.readFileSync(path.join(root, "README.md"), "utf8");
    const blocks = readmeBlocks(readme);
    let dir: string;
    const env = () => ({...process.env, SELFRAG_HOME: path.join(dir, ".selfrag"), SELFRAG_MODEL: path.join(dir, "selfrag_llama2_7b.Q4_K_M.gguf")});
    const sh = async (line: string) => {
        try {
            return await run("bash", ["-c", localCommand(line)], {cwd: dir, env: env(), maxBuffer: 64 << 20});
        } catch (error) {
            const e = error as Error & {stderr?: string, stdout?: string};
            throw new Error(`README command failed: ${line}\n${e.stderr ?? ""}${e.stdout ?? ""}`);
        }
    };

    before(async () => {
        dir = fs.mkdtempSync(path.join(fs.realpathSync(process.env.TMPDIR ?? "/tmp"), "selfrag-readme-"));
        await populate(dir);
    });
    after(() => {
        if (dir != null) fs.rmSync(dir, {recursive: true, force: true});
    });

    it("every block is runnable, a synopsis, or skipped with a reason", () => {
        assert.ok(blocks.length >= 10, `${blocks.length} blocks`);
        for (const b of blocks) {
            if (b.directive?.startsWith("skip")) assert.match(b.directive, /^skip \(.+\)$/, `README.md:${b.line}: a skip needs its reason`);
            else if (b.directive != null) assert.ok(["synopsis", "server", "with-server"].includes(b.directive), `README.md:${b.line}: unknown directive ${b.directive}`);
            if (!b.directive?.startsWith("skip")) assert.ok(["", "ts", "bash", "sh"].includes(b.lang), `README.md:${b.line}: language ${b.lang}`);
        }
    });

    it("the TypeScript examples type-check against the package", () => {
        const files = blocks.filter((b) => b.lang === "ts" && !b.directive?.startsWith("skip")).map((b, i) => {
            const file = path.join(dir, `typecheck-${i}-line${b.line}.mts`);
            fs.writeFileSync(file, `${b.code}\nexport {};\n`);
            return file;
        });
        const program = ts.createProgram(files, {
            strict: true, noImplicitAny: false, module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext,
            target: ts.ScriptTarget.ES2022, noEmit: true, skipLibCheck: true, types: ["node"], typeRoots: [path.join(root, "node_modules", "@types")]
        });
        const diagnostics = ts.getPreEmitDiagnostics(program).map((d) => {
            const where = d.file != null && d.start != null ? `${path.basename(d.file.fileName)}:${d.file.getLineAndCharacterOfPosition(d.start).line + 1}` : "";
            return `${where} ${ts.flattenDiagnosticMessageText(d.messageText, "\n")}`;
        });
        assert.deepEqual(diagnostics, []);
    });

    it("runs every block in order", async () => {
        let port: number | undefined;
        let server: ChildProcess | undefined;
        const ran: string[] = [];
        try {
            for (const b of blocks) {
                const where = `README.md:${b.line}`;
                if (b.directive?.startsWith("skip")) continue;
                if (b.directive === "synopsis") {
                    // A usage line continues on the indented lines below it.
                    const usage = b.code.split("\n").reduce<string[]>((all, l) => {
                        if (/^\s/.test(l) && all.length > 0) all[all.length - 1] += ` ${l.trim()}`;
                        else if (l.trim() !== "") all.push(l.trim());
                        return all;
                    }, []);
                    for (const line of usage) {
                        const [, command, sub] = /^selfrag ([\w-]+)(?: (build|info))?/.exec(line) ?? [];
                        assert.ok(command != null, `${where}: not a selfrag usage line: ${line}`);
                        const {stdout} = await run("node", [cli, command, ...(sub != null ? [sub] : []), "--help"], {env: env()});
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
                    const file = path.join(dir, `example-line${b.line}.mjs`);
                    fs.writeFileSync(file, b.directive === "with-server" && port != null ? js.replaceAll("8080", String(port)) : js);
                    try {
                        await run("node", [file], {cwd: dir, env: env(), maxBuffer: 64 << 20});
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
                        port = await freePort();
                        const line = localCommand(original.replaceAll("8080", String(port)));
                        server = spawn("bash", ["-c", `exec ${line}`], {cwd: dir, env: env(), stdio: ["ignore", "ignore", "pipe"]});
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
            server?.kill("SIGINT");
        }
        assert.ok(ran.length >= 10, `ran ${ran.join(", ")}`);
    });
});
