// The selfrag CLI in a child process, as a user runs it: stdout, stderr and the exit code, never a
// thrown error for a non-zero exit (the tests assert on the code and the one-line message).
import {execFile} from "node:child_process";
import path from "node:path";
import {fileURLToPath} from "node:url";
import {promisify} from "node:util";

const run = promisify(execFile);

/** dist/lib/cli/main.js (this file runs as dist/test-support/cli.js). */
export const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "lib", "cli", "main.js");

export interface CliResult {
    stdout: string;
    stderr: string;
    code: number;
}

export async function runCli(args: readonly string[], options: {env?: Record<string, string>, script?: string} = {}): Promise<CliResult> {
    try {
        const {stdout, stderr} = await run(process.execPath, [options.script ?? CLI, ...args],
            {env: {...process.env, ...options.env}, maxBuffer: 64 << 20});
        return {stdout, stderr, code: 0};
    } catch (error) {
        const e = error as {stdout: string, stderr: string, code: number};
        return {stdout: e.stdout, stderr: e.stderr, code: e.code};
    }
}
