import fs from "node:fs";
import path from "node:path";
import {SelfRagError} from "../errors.js";
import {renderLongFormHtml, renderShortFormHtml, type LongFormViewInput, type ShortFormViewInput} from "../view/AnswerView.js";
import {parseCommand} from "./contract.js";

const help = `Usage: selfrag view RESULT.json [--html FILE] [--question TEXT]

Writes one self-contained HTML page (inline CSS and JS, nothing fetched when it is opened) for a
saved answer: the search tree of a long-form answer (\`selfrag ask --long --json\`, the server's
long-form answer) or the candidates of a short-form one side by side (\`selfrag ask --json\`,
the server's answer, an OpenAI-style chat completion with its "selfrag" field). Short or long
form is told by the fields ("tree" and "segments", or "candidates").
  RESULT.json       the saved answer (one JSON object); - reads standard input
  --html FILE       where to write the page (default: standard output)
  --question TEXT   the question, shown as the page's heading (saved answers do not carry it)
\`selfrag ask ... --html FILE\` writes the same page straight from a run.`;

export async function viewCommand(args: string[]): Promise<void> {
    const parsed = parseCommand("selfrag view", help, {args, allowPositionals: true, options: {
        html: {type: "string"}, question: {type: "string"}
    }});
    if (parsed == null) return;
    const {values, positionals} = parsed;
    if (positionals.length !== 1) {
        throw new SelfRagError(`selfrag view takes one saved answer (RESULT.json, or - for standard input), got ${positionals.length === 0 ? "none" :
            positionals.map((p) => JSON.stringify(p)).join(" ")} (see \`selfrag view --help\`)`, "INVALID_ARGUMENT");
    }
    const [file] = positionals;
    if (values.html != null) checkHtmlTarget(values.html);
    const view = savedAnswer(readJson(file), file === "-" ? "standard input" : file);
    const options = {question: values.question};
    const html = view.form === "long" ? renderLongFormHtml(view.answer, options) : renderShortFormHtml(view.answer, options);
    if (values.html != null) writeHtml(values.html, html);
    else process.stdout.write(html);
}

/** Refuses an --html target that cannot be written, before any work is done (a model loaded, a search run). */
export function checkHtmlTarget(file: string): void {
    const dir = path.dirname(path.resolve(file));
    if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) {
        throw new SelfRagError(`cannot write --html ${file}: the folder ${dir} does not exist`, "INVALID_ARGUMENT");
    }
    if (fs.existsSync(file) && fs.statSync(file).isDirectory()) {
        throw new SelfRagError(`cannot write --html ${file}: it is a folder`, "INVALID_ARGUMENT");
    }
}

/** Writes the page; a failure (a full disk, a revoked permission) names the file. */
export function writeHtml(file: string, html: string): void {
    try {
        fs.writeFileSync(file, html);
    } catch (error) {
        throw new SelfRagError(`cannot write --html ${file}: ${(error as Error).message}`, "OUTPUT_WRITE_FAILED", {cause: error});
    }
}

function readJson(file: string): unknown {
    let text: string;
    try {
        text = fs.readFileSync(file === "-" ? 0 : file, "utf8");
    } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === "ENOENT") throw new SelfRagError(`answer file not found: ${file}`, "INVALID_ARGUMENT");
        throw new SelfRagError(`cannot read ${file}: ${(error as Error).message}`, "INVALID_ARGUMENT", {cause: error});
    }
    const where = file === "-" ? "standard input" : file;
    if (text.trim() === "") throw new SelfRagError(`${where} is empty: expected a saved answer (selfrag ask --json)`, "INVALID_ARGUMENT");
    try {
        return JSON.parse(text);
    } catch (error) {
        const lines = text.trim().split("\n").length;
        throw new SelfRagError(`${where} is not one JSON object (${lines > 1 ? `${lines} lines: view takes one answer, not a JSONL file` :
            (error as Error).message}); expected the output of selfrag ask --json or a server answer`, "INVALID_ARGUMENT", {cause: error});
    }
}

type SavedAnswer = {form: "long", answer: LongFormViewInput} | {form: "short", answer: ShortFormViewInput};

/**
 * A parsed saved answer as the view's input: `ask --json` / `ask --long --json` output and the
 * server's answers are the API's result as JSON; a chat completion carries the Self-RAG fields
 * in "selfrag" and the answer in its message (its long form has no tree). Fields the view reads
 * are checked, each failure naming the field.
 */
export function savedAnswer(value: unknown, where: string): SavedAnswer {
    const fail = (field: string, expected: string, actual: unknown): never => {
        const shown = actual === undefined ? "nothing" : JSON.stringify(actual)?.slice(0, 60);
        throw new SelfRagError(`${where}: field "${field}" must be ${expected}, got ${shown} (expected the output of selfrag ask --json or a server answer)`,
            "INVALID_ARGUMENT");
    };
    if (!isObject(value)) return fail("(top level)", "an object", value);
    let record = value;
    let prefix = "";
    if (isObject(record.selfrag) && Array.isArray(record.choices)) {
        // An OpenAI-style chat completion: the answer is the first choice's message.
        const content = (record.choices[0] as {message?: {content?: unknown}} | undefined)?.message?.content;
        if (typeof content !== "string") fail("choices[0].message.content", "a string", content);
        record = {id: record.id, ...record.selfrag, answer: content};
        prefix = "selfrag.";
    }
    const check = (field: string, ok: boolean, expected: string, actual: unknown) => {
        if (!ok) fail(prefix + field, expected, actual);
    };
    check("answer", typeof record.answer === "string", "a string", record.answer);
    const retrieve = record.retrieve as {decision?: unknown, p?: unknown} | undefined;
    check("retrieve", isObject(retrieve) && typeof retrieve.decision === "boolean" && typeof retrieve.p === "number",
        `an object {"decision": true|false, "p": number}`, retrieve);
    check("warnings", record.warnings == null || (Array.isArray(record.warnings) && record.warnings.every((w) => typeof w === "string")),
        "a list of strings", record.warnings);
    const id = typeof record.id === "string" ? record.id : undefined;
    if (Array.isArray(record.candidates)) {
        record.candidates.forEach((c, i) => {
            check(`candidates[${i}]`, isObject(c), "an object", c);
            const candidate = c as Record<string, unknown>;
            check(`candidates[${i}].text`, typeof candidate.text === "string", "a string", candidate.text);
            for (const key of ["score", "relevance", "support", "utility", "seq"]) {
                check(`candidates[${i}].${key}`, typeof candidate[key] === "number", "a number", candidate[key]);
            }
            checkPassage(`candidates[${i}].passage`, candidate.passage, true, check);
        });
        check("best", Number.isInteger(record.best) && (record.best as number) >= 0 && (record.best as number) < Math.max(1, record.candidates.length),
            `the index of a candidate (0 to ${record.candidates.length - 1})`, record.best);
        const candidates = (record.candidates as Record<string, unknown>[]).map((c) =>
            ({answer: "", tokens: 0, stopReason: "", passage: null, ...c}));
        return {form: "short", answer: {...record, id, candidates} as unknown as ShortFormViewInput};
    }
    if (Array.isArray(record.segments)) {
        record.segments.forEach((s, i) => {
            check(`segments[${i}].text`, isObject(s) && typeof s.text === "string", "a string", isObject(s) ? s.text : s);
        });
        const tree = record.tree ?? [];
        check("tree", Array.isArray(tree), "a list of nodes", tree);
        (tree as unknown[]).forEach((n, i) => {
            check(`tree[${i}]`, isObject(n), "an object", n);
            const node = n as Record<string, unknown>;
            for (const key of ["id", "depth"]) check(`tree[${i}].${key}`, Number.isInteger(node[key]), "an integer", node[key]);
            check(`tree[${i}].parent`, node.parent === null || Number.isInteger(node.parent), "an integer or null", node.parent);
            check(`tree[${i}].text`, typeof node.text === "string", "a string", node.text);
            check(`tree[${i}].score`, typeof node.score === "number", "a number", node.score);
            check(`tree[${i}].inBeam`, typeof node.inBeam === "boolean", "true or false", node.inBeam);
            checkPassage(`tree[${i}].passage`, node.passage, false, check);
        });
        const stats = isObject(record.stats) ? record.stats : {};
        return {form: "long", answer: {
            ...record, id, tree: (tree as Record<string, unknown>[]).map((n) => ({asksRetrieval: false, stopReason: "", ...n})), docs: record.docs ?? [],
            stats: {nodes: 0, depth: 0, stop: "max-depth", evaluatedTokens: 0, referenceTokens: 0, ...stats}
        } as unknown as LongFormViewInput};
    }
    return fail(prefix + "candidates", `a list (short form), or "segments" a list (long form)`, record.candidates);
}

function checkPassage(field: string, passage: unknown, nullable: boolean,
    check: (field: string, ok: boolean, expected: string, actual: unknown) => void): void {
    if (passage === undefined || (nullable && passage === null)) return;
    check(field, isObject(passage) && typeof passage.title === "string" && typeof passage.text === "string" &&
        (passage.id == null || typeof passage.id === "string"), `a passage {"id", "title", "text"}${nullable ? " or null" : ""}`, passage);
}

function isObject(value: unknown): value is Record<string, unknown> {
    return value != null && typeof value === "object" && !Array.isArray(value);
}
