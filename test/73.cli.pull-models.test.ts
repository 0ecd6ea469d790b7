// `selfrag pull` / `selfrag models` and the default-model lookup (issue 17, item 1: a model pulled
// the way the CLI suggested, named hf_<user>_<file>.gguf by node-llama-cpp, was never found).
// No network: fixture GGUFs are served by a real HTTP server on 127.0.0.1, which also plays the
// Hugging Face endpoint (HF_ENDPOINT) so hf: URIs go through node-llama-cpp's own resolution and
// naming. Nothing is mocked: the downloads are node-llama-cpp's downloader's.
import assert from "node:assert/strict";
import {execFile} from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import type {AddressInfo} from "node:net";
import path from "node:path";
import {fileURLToPath, pathToFileURL} from "node:url";
import {readGgufFileInfo} from "node-llama-cpp";
import {REFLECTION_TOKENS} from "../lib/engine/ReflectionTokens.js";
import {findDefaultModel} from "../lib/cli/options.js";
import {readGgufSummarySync, readGgufTokensSync} from "../lib/models/GgufVocabulary.js";
import {MANIFEST_FILE, type ModelListing, type ModelManifest} from "../lib/models/ModelStore.js";
import {checkSelfRagModel} from "../lib/models/verifyModel.js";
import {modelWithoutReflection, tempDir, tinyModel} from "../test-support/fixtures.js";

const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "lib", "cli", "main.js");
const root = fs.mkdtempSync(path.join(tempDir, "pull-"));

interface Run {stdout: string, stderr: string, code: number}

/** The CLI as a child process with SELFRAG_HOME = `home`, no SELFRAG_MODEL, no Hugging Face endpoint unless given. */
function selfrag(home: string, args: string[], env: Record<string, string> = {}): Promise<Run> {
    const base = {...process.env};
    for (const name of ["SELFRAG_MODEL", "HF_ENDPOINT", "MODEL_ENDPOINT", "HF_TOKEN"]) delete base[name];
    return new Promise((resolve) => {
        execFile(process.execPath, [cli, ...args], {env: {...base, SELFRAG_HOME: home, ...env}, maxBuffer: 1 << 24}, (error, stdout, stderr) => {
            resolve({stdout, stderr, code: error == null ? 0 : (error as {code?: number}).code ?? -1});
        });
    });
}

function newHome(name: string): string {
    const home = path.join(root, name);
    fs.mkdirSync(home, {recursive: true});
    return home;
}

function manifestOf(home: string): ModelManifest {
    return JSON.parse(fs.readFileSync(path.join(home, "models", MANIFEST_FILE), "utf8")) as ModelManifest;
}

/** Everything in a models folder, hidden entries included (staging folders, temporary manifests). */
function entries(home: string): string[] {
    const dir = path.join(home, "models");
    return fs.existsSync(dir) ? fs.readdirSync(dir).sort() : [];
}

/** One line `selfrag: ... [CODE]` on stderr, after the pull's progress lines (`pull: ...`, issue 24 item 2). */
function assertOneLineError(run: Run, code: string): string {
    assert.equal(run.code, 1, `expected exit 1, got ${run.code}: ${run.stderr}`);
    const match = /^(?:pull: .*\n)*selfrag: (.*) \[([A-Z_]+)\]\n$/.exec(run.stderr);
    assert.ok(match != null, `not one line: ${JSON.stringify(run.stderr)}`);
    assert.equal(match[2], code, run.stderr);
    return match[1];
}

/** The environment variables findDefaultModel reads, set for `body` and restored after. */
function withEnv<T>(env: Record<string, string | undefined>, body: () => T): T {
    const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
    for (const [k, v] of Object.entries(env)) if (v == null) delete process.env[k]; else process.env[k] = v;
    try {
        return body();
    } finally {
        for (const [k, v] of Object.entries(saved)) if (v == null) delete process.env[k]; else process.env[k] = v;
    }
}

describe("selfrag pull / models and the default-model lookup", function () {
    this.timeout(180_000);
    let server: http.Server;
    let base: string;
    const served = new Map<string, string>(); // URL path -> file
    const requests: string[] = [];
    let tiny: string;
    let noReflection: string;
    let truncated: string;
    let garbage: string;

    before(async () => {
        tiny = await tinyModel();
        noReflection = await modelWithoutReflection();
        const bytes = fs.readFileSync(tiny);
        truncated = path.join(root, "truncated.gguf");
        fs.writeFileSync(truncated, bytes.subarray(0, Math.floor(bytes.length * 0.6)));
        garbage = path.join(root, "garbage.gguf");
        fs.writeFileSync(garbage, Buffer.from("<html>404: this is not the model you are looking for</html>\n".repeat(50)));

        // A plain static server with HEAD and single-range GETs (what node-llama-cpp's downloader, ipull, uses),
        // and the Hugging Face manifest endpoint for hf:user/repo:quant URIs.
        server = http.createServer((req, res) => {
            const url = new URL(req.url ?? "/", "http://127.0.0.1");
            requests.push(`${req.method} ${url.pathname}`);
            const manifest = /^\/v2\/([^/]+)\/([^/]+)\/manifests\/([^/]+)$/.exec(url.pathname);
            if (manifest != null) {
                const [, user, repo, tag] = manifest;
                const rfilename = `${repo.replace(/-GGUF$/i, "")}.${tag}.gguf`;
                if (!served.has(`/${user}/${repo}/resolve/main/${rfilename}`)) {
                    res.writeHead(404).end();
                    return;
                }
                res.writeHead(200, {"content-type": "application/json"}).end(JSON.stringify({ggufFile: {rfilename}}));
                return;
            }
            const file = served.get(url.pathname);
            if (file == null) {
                res.writeHead(404, {"content-type": "text/plain"}).end("not found");
                return;
            }
            const size = fs.statSync(file).size;
            const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? "");
            const start = range != null ? Number(range[1]) : 0;
            const end = range != null && range[2] !== "" ? Math.min(Number(range[2]), size - 1) : size - 1;
            res.writeHead(range != null ? 206 : 200, {
                "content-length": String(end - start + 1), "accept-ranges": "bytes", "content-type": "application/octet-stream",
                ...(range != null ? {"content-range": `bytes ${start}-${end}/${size}`} : {})
            });
            if (req.method === "HEAD") res.end();
            else fs.createReadStream(file, {start, end}).pipe(res);
        });
        await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
        base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
        served.set("/files/tiny.gguf", tiny);
        served.set("/files/plain-llama.gguf", noReflection);
        served.set("/files/truncated.gguf", truncated);
        served.set("/files/garbage.gguf", garbage);
        served.set("/someuser/tiny-model-GGUF/resolve/main/tiny-model.Q8_0.gguf", tiny);
        served.set("/otheruser/tiny-model-GGUF/resolve/main/tiny-model.Q4_K_M.gguf", tiny);
    });

    after(async () => {
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
    });

    it("pull <URL> downloads through node-llama-cpp into $SELFRAG_HOME/models, verifies, records the default, prints where", async () => {
        const home = newHome("url");
        requests.length = 0;
        const run = await selfrag(home, ["pull", `${base}/files/tiny.gguf`]);
        assert.equal(run.code, 0, run.stderr);
        const kept = path.join(home, "models", "tiny.gguf");
        assert.deepEqual(fs.readFileSync(kept), fs.readFileSync(tiny), "the download is byte-identical");
        assert.ok(requests.filter((r) => r === "GET /files/tiny.gguf").length >= 1, `the server was asked: ${requests.join(", ")}`);
        assert.ok(run.stdout.includes(kept), run.stdout);
        assert.match(run.stdout, /all 15 reflection tokens in its 32016-token vocabulary/);
        const manifest = manifestOf(home);
        assert.equal(manifest.default, "tiny.gguf");
        assert.equal(manifest.models["tiny.gguf"].source, `${base}/files/tiny.gguf`);
        assert.equal(manifest.models["tiny.gguf"].size, fs.statSync(tiny).size);
        assert.deepEqual(entries(home), [MANIFEST_FILE, "tiny.gguf"], "no staging folder or temporary manifest left");

        const models = await selfrag(home, ["models", "--json"]);
        assert.equal(models.code, 0, models.stderr);
        const listing = JSON.parse(models.stdout) as ModelListing & {active: string | null};
        assert.equal(listing.dir, path.join(home, "models"));
        assert.equal(listing.default, "tiny.gguf");
        assert.equal(listing.active, kept, "what ask/demo would load without --model");
        assert.deepEqual(listing.models.map((m) => [m.file, m.size, m.selfRag, m.default, m.missingTokens.length]),
            [["tiny.gguf", fs.statSync(tiny).size, true, true, 0]]);
        const table = await selfrag(home, ["models"]);
        assert.equal(table.code, 0, table.stderr);
        assert.match(table.stdout, /^\* tiny\.gguf +17\.2 MB +Self-RAG/m);

        // Pulled again: nothing is downloaded, the file is re-verified and stays the default.
        requests.length = 0;
        const again = await selfrag(home, ["pull", `${base}/files/tiny.gguf`, "--json"]);
        assert.equal(again.code, 0, again.stderr);
        assert.equal((JSON.parse(again.stdout) as {alreadyPresent: boolean}).alreadyPresent, true);
        assert.deepEqual(requests, []);
    });

    it("hf: URIs resolve and are named by node-llama-cpp (hf_<user>_<file>.gguf), and the lookup finds such a file", async () => {
        const home = newHome("hf");
        const hf = {HF_ENDPOINT: `${base}/`};
        const byFile = await selfrag(home, ["pull", "hf:someuser/tiny-model-GGUF/tiny-model.Q8_0.gguf"], hf);
        assert.equal(byFile.code, 0, byFile.stderr);
        const byQuant = await selfrag(home, ["pull", "hf:otheruser/tiny-model-GGUF:Q4_K_M", "--no-default"], hf);
        assert.equal(byQuant.code, 0, byQuant.stderr);
        assert.ok(requests.includes("GET /v2/otheruser/tiny-model-GGUF/manifests/Q4_K_M"), "the :quant URI was resolved through the manifest API");
        assert.deepEqual(entries(home), ["hf_otheruser_tiny-model.Q4_K_M.gguf", "hf_someuser_tiny-model.Q8_0.gguf", MANIFEST_FILE]);
        assert.equal(manifestOf(home).default, "hf_someuser_tiny-model.Q8_0.gguf", "--no-default left the default alone");

        const models = path.join(home, "models");
        const lookup = () => withEnv({SELFRAG_HOME: home, SELFRAG_MODEL: undefined}, findDefaultModel);
        assert.equal(lookup(), path.join(models, "hf_someuser_tiny-model.Q8_0.gguf"), "the recorded default");
        // What the old advice produced: files pulled by node-llama-cpp itself, with no manifest, beside a GGUF that is not Self-RAG.
        fs.rmSync(path.join(models, MANIFEST_FILE));
        fs.copyFileSync(noReflection, path.join(models, "a-plain-llama.gguf"));
        assert.equal(lookup(), path.join(models, "hf_otheruser_tiny-model.Q4_K_M.gguf"), "the first GGUF with the reflection tokens");
        fs.copyFileSync(tiny, path.join(models, "selfrag-7b.gguf"));
        assert.equal(lookup(), path.join(models, "selfrag-7b.gguf"), "selfrag*.gguf before other files");
        // A recorded default whose file is gone is skipped.
        fs.writeFileSync(path.join(models, MANIFEST_FILE), JSON.stringify({default: "deleted.gguf", models: {}}));
        assert.equal(lookup(), path.join(models, "selfrag-7b.gguf"));
        assert.equal(withEnv({SELFRAG_HOME: home, SELFRAG_MODEL: "/elsewhere/m.gguf"}, findDefaultModel), "/elsewhere/m.gguf", "$SELFRAG_MODEL first");
    });

    it("ask without --model: one-line MODEL_NOT_FOUND suggesting `selfrag pull` before, the pulled hf_ file after", async () => {
        const home = newHome("ask");
        const passages = path.join(root, "passages.jsonl");
        fs.writeFileSync(passages, JSON.stringify({id: "1", title: "Paris", text: "Paris is the capital and most populous city of France."}) + "\n");
        const question = ["ask", "--passages", passages, "--cpu", "--json", "What is the capital of France?"];
        const before = await selfrag(home, question);
        const message = assertOneLineError(before, "MODEL_NOT_FOUND");
        assert.match(message, /selfrag pull/);
        assert.ok(message.includes(path.join(home, "models")), message);

        const pulled = await selfrag(home, ["pull", "hf:someuser/tiny-model-GGUF/tiny-model.Q8_0.gguf"], {HF_ENDPOINT: `${base}/`});
        assert.equal(pulled.code, 0, pulled.stderr);
        fs.rmSync(path.join(home, "models", MANIFEST_FILE)); // found by its vocabulary alone, too
        const after = await selfrag(home, question);
        assert.equal(after.code, 0, after.stderr);
        assert.match(after.stdout, /Paris/);
    });

    it("pull <local path> and pull <file:// URL> copy the file (the source stays), verify and record it", async () => {
        const home = newHome("local");
        const source = path.join(root, "my-selfrag.gguf");
        fs.copyFileSync(tiny, source);
        const byPath = await selfrag(home, ["pull", source, "--json"]);
        assert.equal(byPath.code, 0, byPath.stderr);
        const result = JSON.parse(byPath.stdout) as {path: string, file: string, default: boolean, size: number};
        assert.equal(result.path, path.join(home, "models", "my-selfrag.gguf"));
        assert.equal(result.default, true);
        assert.deepEqual(fs.readFileSync(result.path), fs.readFileSync(tiny));
        assert.ok(fs.existsSync(source), "copied, not moved");
        assert.equal(manifestOf(home).models["my-selfrag.gguf"].source, source);

        const other = path.join(root, "dir with space", "second.gguf");
        fs.mkdirSync(path.dirname(other), {recursive: true});
        fs.copyFileSync(tiny, other);
        const byUrl = await selfrag(home, ["pull", pathToFileURL(other).href]);
        assert.equal(byUrl.code, 0, byUrl.stderr);
        assert.equal(manifestOf(home).default, "second.gguf");
        assert.deepEqual(entries(home), ["my-selfrag.gguf", "second.gguf", MANIFEST_FILE]);

        // A file already in the models folder (downloaded by hand) is verified and recorded in place.
        const byHand = path.join(home, "models", "hf_someone_by-hand.gguf");
        fs.copyFileSync(tiny, byHand);
        const inPlace = await selfrag(home, ["pull", byHand]);
        assert.equal(inPlace.code, 0, inPlace.stderr);
        assert.equal(manifestOf(home).default, "hf_someone_by-hand.gguf");

        // --dir: another folder, SELFRAG_HOME untouched.
        const elsewhere = path.join(root, "elsewhere-models");
        const withDir = await selfrag(home, ["pull", source, "--dir", elsewhere]);
        assert.equal(withDir.code, 0, withDir.stderr);
        assert.ok(fs.existsSync(path.join(elsewhere, "my-selfrag.gguf")));
        assert.equal((JSON.parse(fs.readFileSync(path.join(elsewhere, MANIFEST_FILE), "utf8")) as ModelManifest).default, "my-selfrag.gguf");
        assert.equal(manifestOf(home).default, "hf_someone_by-hand.gguf");
    });

    it("a GGUF without the reflection tokens is refused, named with its missing tokens, and not kept", async () => {
        const home = newHome("refused");
        const first = await selfrag(home, ["pull", `${base}/files/tiny.gguf`]);
        assert.equal(first.code, 0, first.stderr);
        const before = entries(home);

        const remote = await selfrag(home, ["pull", `${base}/files/plain-llama.gguf`]);
        const message = assertOneLineError(remote, "MISSING_REFLECTION_TOKENS");
        assert.ok(message.includes("plain-llama.gguf"), message);
        for (const token of REFLECTION_TOKENS) assert.ok(message.includes(token.text), `names ${token.text}: ${message}`);
        assert.deepEqual(entries(home), before, "nothing kept, no staging folder left");
        assert.equal(manifestOf(home).default, "tiny.gguf", "the default is unchanged");

        const local = await selfrag(home, ["pull", noReflection]);
        assertOneLineError(local, "MISSING_REFLECTION_TOKENS");
        assert.deepEqual(entries(home), before);
    });

    it("a truncated download or a file that is not GGUF is refused (INVALID_GGUF) and not kept", async () => {
        const home = newHome("invalid");
        const cut = await selfrag(home, ["pull", `${base}/files/truncated.gguf`]);
        const cutMessage = assertOneLineError(cut, "INVALID_GGUF");
        assert.match(cutMessage, /truncated\.gguf .*cut short/);
        const notGguf = await selfrag(home, ["pull", `${base}/files/garbage.gguf`]);
        assert.match(assertOneLineError(notGguf, "INVALID_GGUF"), /garbage\.gguf .*not a valid GGUF/);
        const localCut = await selfrag(home, ["pull", pathToFileURL(truncated).href]);
        assertOneLineError(localCut, "INVALID_GGUF");
        assert.deepEqual(entries(home), [], "nothing kept, no manifest written");

        const missing = await selfrag(home, ["pull", `${base}/files/no-such.gguf`]);
        assert.match(assertOneLineError(missing, "DOWNLOAD_FAILED"), /404/);
        assert.deepEqual(entries(home), []);
        assert.match(assertOneLineError(await selfrag(home, ["pull", "no-such-name"]), "INVALID_ARGUMENT"), /known names: selfrag-7b/);
        assertOneLineError(await selfrag(home, ["pull", path.join(root, "absent.gguf")]), "MODEL_NOT_FOUND");
        assertOneLineError(await selfrag(home, ["pull"]), "INVALID_ARGUMENT");
    });

    it("models lists non-Self-RAG and broken files as such; --help works for both commands", async () => {
        const home = newHome("listing");
        const models = path.join(home, "models");
        fs.mkdirSync(models, {recursive: true});
        fs.copyFileSync(noReflection, path.join(models, "plain.gguf"));
        fs.copyFileSync(truncated, path.join(models, "cut.gguf"));
        fs.copyFileSync(tiny, path.join(models, "hf_user_file.gguf"));
        const run = await selfrag(home, ["models", "--json"]);
        assert.equal(run.code, 0, run.stderr);
        const listing = JSON.parse(run.stdout) as ModelListing & {active: string | null};
        const byFile = Object.fromEntries(listing.models.map((m) => [m.file, m]));
        assert.deepEqual(Object.keys(byFile), ["cut.gguf", "hf_user_file.gguf", "plain.gguf"]);
        assert.equal(byFile["hf_user_file.gguf"].selfRag, true);
        assert.equal(byFile["plain.gguf"].selfRag, false);
        assert.equal(byFile["plain.gguf"].missingTokens.length, 15);
        assert.equal(byFile["cut.gguf"].selfRag, false);
        assert.equal(byFile["cut.gguf"].error?.code, "INVALID_GGUF");
        assert.equal(listing.default, undefined);
        assert.equal(listing.active, path.join(models, "hf_user_file.gguf"), "found by its reflection tokens");

        for (const command of ["pull", "models"]) {
            const help = await selfrag(home, [command, "--help"]);
            assert.equal(help.code, 0, help.stderr);
            assert.match(help.stdout, new RegExp(`^Usage: selfrag ${command}`));
        }
    });

    it("the synchronous metadata reader agrees with node-llama-cpp's readGgufFileInfo and sees a cut file", async () => {
        for (const file of [tiny, noReflection]) {
            const info = await readGgufFileInfo(file, {sourceType: "filesystem", logWarnings: false, readTensorInfo: false});
            const expected = (info.metadata as unknown as {tokenizer: {ggml: {tokens: string[]}}}).tokenizer.ggml.tokens;
            assert.deepEqual(readGgufTokensSync(file), expected);
        }
        // The tensor table's extent: exactly the fixture's size, more than a cut copy has.
        assert.equal(readGgufSummarySync(tiny).expectedSize, fs.statSync(tiny).size);
        const cut = readGgufSummarySync(truncated);
        assert.ok(cut.size < cut.expectedSize && cut.expectedSize === fs.statSync(tiny).size, JSON.stringify({...cut, tokens: undefined}));
        assert.throws(() => readGgufTokensSync(garbage), {code: "INVALID_GGUF"});
        const headOnly = path.join(root, "head-only.gguf");
        fs.writeFileSync(headOnly, fs.readFileSync(tiny).subarray(0, 50_000));
        assert.throws(() => readGgufTokensSync(headOnly), {code: "INVALID_GGUF"});
        assert.equal((await checkSelfRagModel(headOnly)).error?.code, "INVALID_GGUF");
        assert.equal((await checkSelfRagModel(tiny)).selfRag, true);
    });
});
