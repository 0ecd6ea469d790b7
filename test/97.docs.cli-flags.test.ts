// docs/cli.md against the CLI itself: for every command of `selfrag --help` and every subcommand
// its usage names (`index build`, `index verify`, ...), the flags its `--help` mentions that the
// command accepts are exactly the flags in the option tables of its docs/cli.md section (the first
// cell of each row). A flag `--help` mentions only in passing (search's help says "an index built
// with --keep-vectors") is not one of its flags: each flag is tried on the command
// (`selfrag search --keep-vectors --help`), and an "unknown option" answer leaves it out. The
// question options of `ask` and `eval` are one shared table ("Question options (`ask`, `eval`)").
import assert from "node:assert/strict";
import {execFile} from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import {fileURLToPath} from "node:url";
import {promisify} from "node:util";

const run = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const cli = path.join(root, "dist", "lib", "cli", "main.js");

const flagsIn = (text: string): string[] => [...new Set(text.match(/--[a-z][a-z0-9-]*/g) ?? [])].filter((f) => f !== "--help");

async function help(args: string[]): Promise<string> {
    return (await run("node", [cli, ...args, "--help"], {maxBuffer: 16 << 20})).stdout;
}

/** Whether `selfrag <target> <flag>` is accepted by the parser (a value-taking flag "needs a value"). */
async function accepts(target: string[], flag: string): Promise<boolean> {
    try {
        await run("node", [cli, ...target, flag, "--help"]);
        return true;
    } catch (error) {
        const stderr = (error as {stderr?: string}).stderr ?? "";
        if (/unknown option/.test(stderr)) return false;
        if (/needs a value/.test(stderr)) return true;
        throw new Error(`selfrag ${target.join(" ")} ${flag} --help: ${stderr}`);
    }
}

/** Runs `fn` over `items`, `limit` at a time. */
async function pool<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
    const results: R[] = new Array(items.length);
    let next = 0;
    await Promise.all(Array.from({length: limit}, async () => {
        while (next < items.length) {
            const i = next++;
            results[i] = await fn(items[i]);
        }
    }));
    return results;
}

/** The flags of each option table in docs/cli.md, by section heading (backticks dropped). */
export function documentedFlags(markdown: string): Map<string, string[]> {
    const sections = new Map<string, string[]>();
    let heading = "";
    for (const line of markdown.split("\n")) {
        const h = /^#{2,4} (.+)$/.exec(line);
        if (h != null) {
            heading = h[1].replaceAll("`", "").trim();
            if (!sections.has(heading)) sections.set(heading, []);
            continue;
        }
        const cell = /^\|((?:[^|\\]|\\.)*)\|/.exec(line)?.[1];
        if (cell == null) continue;
        sections.get(heading)?.push(...flagsIn(cell));
    }
    return sections;
}

describe("docs/cli.md and every command's --help", function () {
    this.timeout(900_000);

    it("document the same flags, command by command", async () => {
        const top = await help([]);
        const commands = [...top.slice(top.indexOf("Commands:")).matchAll(/^ {2}([a-z][a-z-]*) /gm)].map((m) => m[1]);
        assert.ok(commands.length >= 10, `commands: ${commands.join(", ")}`);

        // Each command, or each of its subcommands, with the flags its help mentions.
        const targets: {name: string, args: string[], mentioned: string[]}[] = [];
        for (const command of commands) {
            const text = await help([command]);
            const usage = text.slice(0, text.search(/\n\s*\n/) < 0 ? undefined : text.search(/\n\s*\n/));
            const subs = [...new Set([...usage.matchAll(new RegExp(`selfrag ${command} ([a-z][a-z-]*)\\b`, "g"))].map((m) => m[1]))];
            if (subs.length === 0) {
                targets.push({name: command, args: [command], mentioned: flagsIn(text)});
                continue;
            }
            for (const sub of subs) {
                const own = await help([command, sub]);
                targets.push({name: `${command} ${sub}`, args: [command, sub], mentioned: flagsIn(text + own)});
            }
        }

        const probes = targets.flatMap((t) => t.mentioned.map((flag) => ({t, flag})));
        const accepted = await pool(probes, 3, ({t, flag}) => accepts(t.args, flag));
        const helpFlags = new Map(targets.map((t) => [t.name, [] as string[]]));
        probes.forEach(({t, flag}, i) => {
            if (accepted[i]) helpFlags.get(t.name)!.push(flag);
        });

        const sections = documentedFlags(fs.readFileSync(path.join(root, "docs", "cli.md"), "utf8"));
        const shared = [...sections.entries()].filter(([heading]) => heading.startsWith("Question options"));
        assert.equal(shared.length, 1, "one \"Question options\" section");
        const [sharedHeading, sharedFlags] = shared[0];
        const sharedBy = /\(([^)]*)\)/.exec(sharedHeading)?.[1].split(",").map((s) => s.trim()) ?? [];
        assert.deepEqual(sharedBy, ["ask", "eval"]);

        const problems: string[] = [];
        for (const t of targets) {
            const documented = new Set([...(sections.get(`selfrag ${t.name}`) ?? []), ...(sharedBy.includes(t.name) ? sharedFlags : [])]);
            const inHelp = new Set(helpFlags.get(t.name));
            if (!sections.has(`selfrag ${t.name}`)) problems.push(`selfrag ${t.name}: no "## selfrag ${t.name}" section in docs/cli.md`);
            const missing = [...inHelp].filter((f) => !documented.has(f));
            const extra = [...documented].filter((f) => !inHelp.has(f));
            if (missing.length > 0) problems.push(`selfrag ${t.name}: in --help, not in docs/cli.md: ${missing.join(" ")}`);
            if (extra.length > 0) problems.push(`selfrag ${t.name}: in docs/cli.md, not an option in --help: ${extra.join(" ")}`);
        }
        // A section for a command or subcommand that does not exist.
        const names = new Set(targets.map((t) => `selfrag ${t.name}`));
        const parents = new Set(targets.map((t) => `selfrag ${t.args[0]}`));
        for (const heading of sections.keys()) {
            if (heading.startsWith("selfrag ") && !names.has(heading) && !parents.has(heading)) problems.push(`docs/cli.md: "${heading}" is not a command`);
        }
        assert.deepEqual(problems, []);
    });
});
