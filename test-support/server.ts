// A real `selfrag serve` process for the HTTP and process fault tests.
import {spawn, type ChildProcess} from "node:child_process";
import path from "node:path";
import {fileURLToPath} from "node:url";
import {tinyModel} from "./fixtures.js";

const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "lib", "cli", "main.js");

export interface Served {
    url: string;
    port: number;
    child: ChildProcess;
    stderr: () => string;
    stop(): Promise<void>;
}

/** `selfrag serve` on a free port; resolves once it prints its address. */
export async function serve(...args: string[]): Promise<Served> {
    const child = spawn(process.execPath, [cli, "serve", "--model", await tinyModel(), "--port", "0", "--cpu", ...args],
        {stdio: ["ignore", "pipe", "pipe"]});
    let stderr = "";
    child.stderr!.on("data", (d: Buffer) => {
        stderr += d.toString();
    });
    const url = await new Promise<string>((resolve, reject) => {
        let out = "";
        child.stdout!.on("data", (d: Buffer) => {
            out += d.toString();
            const m = /on (http:\/\/[\d.]+:\d+)/.exec(out);
            if (m != null) resolve(m[1]);
        });
        child.once("exit", (code) => reject(new Error(`selfrag serve exited (${code}) before listening:\n${stderr}`)));
    });
    return {
        url, port: Number(new URL(url).port), child, stderr: () => stderr,
        stop: async () => {
            if (child.exitCode != null || child.signalCode != null) return;
            const exited = new Promise((resolve) => child.once("exit", resolve));
            child.kill("SIGTERM");
            await exited;
        }
    };
}

