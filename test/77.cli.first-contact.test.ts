// First contact, second pass (issue 24): what a new user ran into at the command line.
//   item 2: `selfrag pull` shows progress on stderr for every network step and gives up with
//           DOWNLOAD_FAILED when nothing arrives for --timeout seconds (a loopback server that
//           accepts and never answers; a slow one that trickles the file);
//   item 3: `selfrag serve` on a port in use, or on a host that is no address: proper codes;
//   item 4: `selfrag eval` on an input with no readable question fails like `index build` does.
// Real child processes of the CLI and real sockets on 127.0.0.1; nothing is mocked or downloaded.
import assert from "node:assert/strict";
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import type {AddressInfo} from "node:net";
import path from "node:path";
import {runCli, type CliResult} from "../test-support/cli.js";
import {tempDir, tinyModel} from "../test-support/fixtures.js";

/** One line `selfrag: ... [CODE]` on stderr after any progress lines, exit code 1; the message. */
function failureLine(run: CliResult, code: string): string {
    assert.equal(run.code, 1, `expected exit 1, got ${run.code}: ${run.stderr}`);
    const last = run.stderr.trimEnd().split("\n").at(-1)!;
    const match = /^selfrag: (.*) \[([A-Z_]+)\]$/.exec(last);
    assert.ok(match != null, `not a failure line: ${JSON.stringify(run.stderr)}`);
    assert.equal(match[2], code, run.stderr);
    return match[1];
}

const home = fs.mkdtempSync(path.join(tempDir, "first-contact-"));
const env = {SELFRAG_HOME: home, SELFRAG_MODEL: "", HF_ENDPOINT: "", MODEL_ENDPOINT: "", HF_TOKEN: ""};

describe("first contact at the command line (issue 24)", function () {
    this.timeout(180_000);

    describe("pull: progress for every network step, and a bounded wait", () => {
        const sockets = new Set<net.Socket>();
        let silent: net.Server;
        let silentUrl: string;
        let slow: http.Server;
        let slowUrl: string;
        let size: number;

        before(async () => {
            // Accepts connections and never answers a byte.
            silent = net.createServer((socket) => {
                sockets.add(socket);
                socket.on("error", () => undefined);
            });
            await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
            silentUrl = `http://127.0.0.1:${(silent.address() as AddressInfo).port}/files/model.gguf`;
            // Serves the fixture model in small pieces, a piece every 100 ms (HEAD and ranges as ipull asks).
            const file = await tinyModel();
            size = fs.statSync(file).size;
            slow = http.createServer((req, res) => {
                const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? "");
                const start = range != null ? Number(range[1]) : 0;
                const end = range != null && range[2] !== "" ? Math.min(Number(range[2]), size - 1) : size - 1;
                res.writeHead(range != null ? 206 : 200, {"content-length": String(end - start + 1), "accept-ranges": "bytes",
                    "content-type": "application/octet-stream", ...(range != null ? {"content-range": `bytes ${start}-${end}/${size}`} : {})});
                if (req.method === "HEAD") return void res.end();
                const bytes = fs.readFileSync(file).subarray(start, end + 1);
                const piece = Math.ceil(bytes.length / 25);
                let at = 0;
                const timer = setInterval(() => {
                    if (res.destroyed) return void clearInterval(timer);
                    res.write(bytes.subarray(at, at + piece));
                    at += piece;
                    if (at >= bytes.length) {
                        clearInterval(timer);
                        res.end();
                    }
                }, 100);
            });
            await new Promise<void>((resolve) => slow.listen(0, "127.0.0.1", resolve));
            slowUrl = `http://127.0.0.1:${(slow.address() as AddressInfo).port}/files/slow-model.gguf`;
        });

        after(async () => {
            for (const socket of sockets) socket.destroy();
            await new Promise<void>((resolve) => silent.close(() => resolve()));
            slow.closeAllConnections();
            await new Promise<void>((resolve) => slow.close(() => resolve()));
        });

        it("a server that accepts and never answers: DOWNLOAD_FAILED within --timeout, saying what it waited for", async () => {
            const started = Date.now();
            const run = await runCli(["pull", silentUrl, "--timeout", "2"], {env});
            const seconds = (Date.now() - started) / 1000;
            const message = failureLine(run, "DOWNLOAD_FAILED");
            assert.match(message, /nothing arrived from 127\.0\.0\.1:\d+ for 2 s while asking for the file/);
            assert.ok(seconds < 15, `gave up after ${seconds.toFixed(1)} s (process start and import included)`);
            // Before giving up it said what it was waiting for, and for how long nothing had come.
            const progress = run.stderr.split("\n").filter((l) => l.startsWith("pull: "));
            assert.match(progress[0], new RegExp(`^pull: asking 127\\.0\\.0\\.1:\\d+ for ${silentUrl.replaceAll(".", "\\.")}$`));
            assert.ok(progress.some((l) => /nothing for 1 s \(gives up at 2 s\)$/.test(l)), run.stderr);
            assert.equal(run.stdout, "");
        });

        it("--timeout must be a positive number of seconds", async () => {
            assert.match(failureLine(await runCli(["pull", silentUrl, "--timeout", "0"], {env}), "INVALID_ARGUMENT"), /--timeout/);
        });

        it("a slow server: progress lines with bytes, total and rate until the file is there", async () => {
            const run = await runCli(["pull", slowUrl, "--timeout", "5", "--json"], {env});
            assert.equal(run.code, 0, run.stderr);
            assert.equal(JSON.parse(run.stdout).size, size);
            const lines = run.stderr.split("\n").filter((l) => l.startsWith("pull: "));
            assert.match(lines[0], /^pull: asking 127\.0\.0\.1:\d+ for /);
            const transfer = lines.filter((l) => / of [\d.]+ (MB|bytes) \(\d+\.\d%\), [\d.]+ (MB|bytes)\/s from 127\.0\.0\.1:\d+$/.test(l));
            assert.ok(transfer.length >= 2, `transfer progress lines:\n${run.stderr}`);
            // While the file arrives the rate is more than nothing.
            assert.ok(transfer.some((l) => !/, 0 bytes\/s/.test(l)), run.stderr);
        });
    });

    describe("serve: a port in use, a host that is no address", () => {
        it("a port in use is PORT_IN_USE naming --port; a host that does not resolve is INVALID_ARGUMENT naming --host", async () => {
            const taken = net.createServer();
            await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
            const port = (taken.address() as AddressInfo).port;
            try {
                const inUse = await runCli(["serve", "--model", await tinyModel(), "--cpu", "--port", String(port)], {env});
                assert.match(failureLine(inUse, "PORT_IN_USE"), new RegExp(`^cannot listen on 127\\.0\\.0\\.1:${port}: port ${port} is in use .*choose another --port`));
            } finally {
                await new Promise<void>((resolve) => taken.close(() => resolve()));
            }
            const badHost = await runCli(["serve", "--model", await tinyModel(), "--cpu", "--port", "0", "--host", "999.1.1.1"], {env});
            assert.match(failureLine(badHost, "INVALID_ARGUMENT"), /--host "999\.1\.1\.1" is not an address and does not resolve to one/);
            assert.equal(badHost.stderr.split("\n").filter((l) => l !== "").length, 1, badHost.stderr);
        });
    });

    describe("eval: an input with no readable question", () => {
        const output = (name: string) => path.join(home, `${name}.out.jsonl`);

        it("every record malformed, or an empty file: EMPTY_CORPUS and exit 1, as index build", async () => {
            const input = path.join(home, "all-malformed.jsonl");
            fs.writeFileSync(input, "{broken\n" + JSON.stringify({answers: ["no question"]}) + "\n");
            const run = await runCli(["eval", "--model", await tinyModel(), "--cpu", "--input", input, "--output", output("all-malformed")], {env});
            assert.match(failureLine(run, "EMPTY_CORPUS"), /all-malformed\.jsonl holds no question to evaluate \(all 2 records were malformed; first: .*all-malformed\.jsonl:1/);
            const empty = path.join(home, "empty.jsonl");
            fs.writeFileSync(empty, "");
            assert.match(failureLine(await runCli(["eval", "--model", await tinyModel(), "--cpu", "--input", empty, "--output", output("empty")], {env}),
                "EMPTY_CORPUS"), /empty\.jsonl holds no question to evaluate$/);
            // --strict still stops at the first malformed record with its own error.
            assert.match(failureLine(await runCli(["eval", "--model", await tinyModel(), "--cpu", "--strict", "--input", input, "--output",
                output("strict")], {env}), "INVALID_JSONL"), /all-malformed\.jsonl:1/);
        });

        it("--limit 0 is refused; a resumed run whose questions were all answered before succeeds", async () => {
            const input = path.join(home, "one.jsonl");
            fs.writeFileSync(input, JSON.stringify({id: "q1", question: "What is the capital of France?", answers: ["Paris"],
                ctxs: [{title: "Paris", text: "Paris is the capital of France."}]}) + "\n");
            assert.match(failureLine(await runCli(["eval", "--model", await tinyModel(), "--cpu", "--input", input, "--output", output("limit0"),
                "--limit", "0"], {env}), "INVALID_ARGUMENT"), /--limit/);
            const args = ["eval", "--model", await tinyModel(), "--cpu", "--input", input, "--output", output("resumed"), "--max-new-tokens", "8"];
            const first = await runCli(args, {env});
            assert.equal(first.code, 0, first.stderr);
            const again = await runCli([...args, "--resume"], {env});
            assert.equal(again.code, 0, again.stderr);
            assert.match(again.stdout, /0 answered.*1 already done/);
        });
    });
});
