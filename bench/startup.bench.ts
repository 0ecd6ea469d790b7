// Cold start: whole processes, from exec to exit, in one run, interleaved round by round so the
// ratios see the same machine load:
//   - `selfrag ask ... --json` on the `bench` fixture (5 passages, 32 new tokens, mode always,
//     1 thread, default gpu option "auto", as a user types it), with the CPU runtime recorded by an
//     earlier run (the normal state), and once per round as a first run (empty SELFRAG_HOME:
//     through node-llama-cpp's getLlama(), which then records the runtime);
//   - the C++ peer (bench/peer/startupPeer.cpp) on llama.h and the same libllama, same schedule and
//     context parameters: prompt once, copied to 5 sequences, the passages in one batch, batched
//     greedy steps, log-softmax over the reflection tokens per row; it loads the same ggml CPU
//     backend as selfrag (the one `npm install` compiled for this CPU, when there is one);
//   - the naive node-llama-cpp implementation (bench/naiveShortForm.ts) as a process
//     (bench/naiveProcess.ts), gpu: false (no GPU probing: the naive side's cheapest start);
//   - `selfrag inspect --json` against the C++ peer's load + one prompt, both in a context sized to
//     the prompt (its tokens rounded up to llama.cpp's 256-cell KV padding, at most 4096 tokens);
//   - `selfrag --help`, `selfrag ask --help`, `import('selfrag')` from `node -e`, and `node -e 0`
//     (the floor every Node process pays);
//   - when the environment sets NODE_EXTRA_CA_CERTS (Node parses that file at every start, before
//     any JavaScript runs), `selfrag inspect` and `node empty.mjs` once more without it, so the
//     share of Node's start that is this machine's setting, not selfrag's, is measured.
// Inside the selfrag processes SELFRAG_TIMINGS=1 gives the phases (import, backend, model, context,
// first decode); the peer prints the same marks. Nothing asserts a timing: ratios are reported
// against the targets of issue 10.
import {spawn} from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {compiledCpuBackend} from "../lib/engine/cpuBackend.js";
import {formatPassage, formatPrompt} from "../lib/selfrag/prompts.js";
import {environment, median, medianOf, sampleMeasurement, writeResult, type BenchResult, type Comparison, type Measurement} from "./common.js";
import {ensureBenchModel, MODEL_FILE} from "./benchModel.js";
import {ensureStartupPeer} from "./peer/buildStartupPeer.js";
import {benchCacheDir, repoRoot} from "./peer/repoRoot.js";
import {PASSAGES, QUESTION} from "./shortFormInputs.js";

const MAX_NEW_TOKENS = 32;
/** selfrag's defaults for these commands: ask 2048 tokens per sequence; inspect at most 4096, sized to the prompt. */
const ASK_CONTEXT = 2048;
const INSPECT_CONTEXT = 4096;
/** Set on some machines (an extra CA bundle): Node 20 reads and parses it at every start. */
const EXTRA_CA_CERTS = process.env.NODE_EXTRA_CA_CERTS;
const ROUNDS = Math.max(3, Number(process.env.SELFRAG_BENCH_ROUNDS ?? 7));

interface Run {
    wallMs: number;
    stdout: string;
    stderr: string;
    /** Phase marks (ms since the process started) from `selfrag-timing` / `peer-phase` lines. */
    marks: Record<string, number>;
    via?: string;
}

interface Subject {
    id: string;
    label: string;
    run: () => Promise<Run>;
}

function runProcess(command: string, args: readonly string[], options: {cwd?: string, env?: NodeJS.ProcessEnv} = {}): Promise<Run> {
    return new Promise((resolve, reject) => {
        const started = process.hrtime.bigint();
        const child = spawn(command, args, {cwd: options.cwd, env: options.env ?? process.env, stdio: ["ignore", "pipe", "pipe"]});
        const out: Buffer[] = [];
        const err: Buffer[] = [];
        child.stdout.on("data", (chunk: Buffer) => out.push(chunk));
        child.stderr.on("data", (chunk: Buffer) => err.push(chunk));
        child.on("error", reject);
        child.on("close", (code, signal) => {
            const wallMs = Number(process.hrtime.bigint() - started) / 1e6;
            const stdout = Buffer.concat(out).toString("utf8");
            const stderr = Buffer.concat(err).toString("utf8");
            if (code !== 0) {
                reject(new Error(`${path.basename(command)} ${args.slice(0, 3).join(" ")} ... failed (${signal ?? `exit ${code}`}):\n${stderr.slice(-2000)}`));
                return;
            }
            const marks: Record<string, number> = {};
            let via: string | undefined;
            for (const line of stderr.split("\n")) {
                const m = /^(?:selfrag-timing|peer-phase) (\S+) ([\d.]+)(?: (\S+))?$/.exec(line);
                if (m == null) continue;
                marks[m[1]] = Number(m[2]);
                if (m[1] === "backend" && m[3] != null) via = m[3];
            }
            resolve({wallMs, stdout, stderr, marks, via});
        });
    });
}

interface Files {
    cache: string;
    passages: string;
    askInput: string;
    inspectInput: string;
    /** SELFRAG_HOME of the warm runs (holds the runtime record). */
    home: string;
    /** A folder whose node_modules/selfrag is this checkout, for `import('selfrag')`. */
    packageUser: string;
    emptyModule: string;
}

function prepare(): Files {
    const cache = path.join(benchCacheDir(), "startup");
    fs.mkdirSync(cache, {recursive: true});
    const files: Files = {
        cache, passages: path.join(cache, "passages.jsonl"), askInput: path.join(cache, "ask.in"), inspectInput: path.join(cache, "inspect.in"),
        home: path.join(cache, "home"), packageUser: path.join(cache, "package-user"), emptyModule: path.join(cache, "empty.mjs")
    };
    fs.writeFileSync(files.emptyModule, "");
    fs.writeFileSync(files.passages, PASSAGES.map((p) => JSON.stringify({title: p.title, text: p.text})).join("\n") + "\n");
    // The peer reads the texts exactly as selfrag builds them, separated by 0x1e.
    fs.writeFileSync(files.askInput, [formatPrompt(QUESTION), ...PASSAGES.map(formatPassage)].join("\x1e"));
    fs.writeFileSync(files.inspectInput, formatPrompt(QUESTION));
    fs.mkdirSync(path.join(files.packageUser, "node_modules"), {recursive: true});
    const link = path.join(files.packageUser, "node_modules", "selfrag");
    if (!fs.existsSync(link)) fs.symlinkSync(repoRoot(), link, "dir");
    return files;
}

function subjects(files: Files, peer: {binary: string, libDir: string}): Subject[] {
    const node = process.execPath;
    const cli = path.join(repoRoot(), "dist", "lib", "cli", "main.js");
    const naive = path.join(repoRoot(), "dist", "bench", "naiveProcess.js");
    const env = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => {
        const base: NodeJS.ProcessEnv = {...process.env, SELFRAG_HOME: files.home, SELFRAG_TIMINGS: "1", ...extra};
        delete base.SELFRAG_RUNTIME_CACHE;
        delete base.SELFRAG_LOG_LEVEL;
        return base;
    };
    const withoutExtraCaCerts = (): NodeJS.ProcessEnv => {
        const base = env();
        delete base.NODE_EXTRA_CA_CERTS;
        return base;
    };
    const askArgs = [cli, "ask", "--model", MODEL_FILE, "--passages", files.passages, "--ndocs", String(PASSAGES.length),
        "--max-new-tokens", String(MAX_NEW_TOKENS), "--mode", "always", "--threads", "1", "--json", QUESTION];
    const inspectArgs = [cli, "inspect", "--model", MODEL_FILE, "--question", QUESTION, "--threads", "1", "--json"];
    // The peer loads its CPU backend from here: the compiled one selfrag runs on, else the prebuilt set.
    const backends = compiledCpuBackend()?.folder ?? peer.libDir;
    return [
        {id: "selfrag.ask", label: "selfrag ask --json (runtime recorded)", run: () => runProcess(node, askArgs, {env: env()})},
        {id: "peer.ask", label: "C++ on llama.h: load + short-form question", run: () =>
            runProcess(peer.binary, ["ask", MODEL_FILE, files.askInput, backends, String(ASK_CONTEXT), "1", String(MAX_NEW_TOKENS)])},
        {id: "naive.ask", label: "naive node-llama-cpp, whole process", run: () =>
            runProcess(node, [naive, MODEL_FILE, files.passages, QUESTION, String(ASK_CONTEXT), "1", String(MAX_NEW_TOKENS)], {env: env()})},
        {id: "selfrag.ask.first", label: "selfrag ask --json, first run (no runtime record: getLlama())", run: async () => {
            const home = fs.mkdtempSync(path.join(os.tmpdir(), "selfrag-startup-home-"));
            try {
                return await runProcess(node, askArgs, {env: env({SELFRAG_HOME: home})});
            } finally {
                fs.rmSync(home, {recursive: true, force: true});
            }
        }},
        {id: "selfrag.inspect", label: "selfrag inspect --json (runtime recorded)", run: () => runProcess(node, inspectArgs, {env: env()})},
        {id: "peer.inspect", label: "C++ on llama.h: load + one prompt", run: () =>
            runProcess(peer.binary, ["inspect", MODEL_FILE, files.inspectInput, backends, String(INSPECT_CONTEXT), "1"])},
        {id: "selfrag.help", label: "selfrag --help", run: () => runProcess(node, [cli, "--help"], {env: env()})},
        {id: "selfrag.askHelp", label: "selfrag ask --help", run: () => runProcess(node, [cli, "ask", "--help"], {env: env()})},
        {id: "import", label: "node -e \"import('selfrag')...\"", run: () =>
            runProcess(node, ["-e", "import('selfrag').then(m => console.log(typeof m.SelfRagModel))"], {cwd: files.packageUser, env: env()})},
        {id: "node", label: "node -e 0 (Node's own start, the floor)", run: () => runProcess(node, ["-e", "0"], {env: env()})},
        {id: "node.esm", label: "node empty.mjs (the floor of an ES module entry, as the CLI is)", run: () =>
            runProcess(node, [files.emptyModule], {env: env()})},
        ...(EXTRA_CA_CERTS == null || EXTRA_CA_CERTS === "" ? [] : [
            {id: "selfrag.inspect.noCa", label: "selfrag inspect --json, NODE_EXTRA_CA_CERTS unset", run: () =>
                runProcess(node, inspectArgs, {env: withoutExtraCaCerts()})},
            {id: "node.esm.noCa", label: "node empty.mjs, NODE_EXTRA_CA_CERTS unset", run: () =>
                runProcess(node, [files.emptyModule], {env: withoutExtraCaCerts()})}
        ])
    ];
}

// ---------------------------------------------------------------------------------------------
// Correctness before timing
// ---------------------------------------------------------------------------------------------

interface AskJson {
    candidates: {text: string, tokens: number}[];
    retrieve?: {p: number};
    p_retrieve?: number;
}

interface Check {
    identical: number;
    agreeingChars: number[];
    tokens: number[];
    peerTokens: number[];
    naiveCandidates: number;
    inspectDiff: number;
    /** Tokens of the inspect prompt (the peer's count: both size their context to it). */
    promptTokens: number;
}

function commonPrefix(a: string, b: string): number {
    let i = 0;
    while (i < a.length && i < b.length && a[i] === b[i]) i++;
    return i;
}

/**
 * Same work on both sides: 5 candidates of up to 32 tokens each, and for inspect the same prompt
 * row (p_retrieve and greedy token). Candidate texts are compared and reported: a random-weight
 * model has near-ties that a different batch split (selfrag's step loop joins the prompt and the
 * passages in one step, the peer decodes them apart) flips after a few tokens.
 */
function crossCheck(runs: Map<string, Run>): Check {
    const ours = JSON.parse(runs.get("selfrag.ask")!.stdout) as AskJson;
    const peer = JSON.parse(runs.get("peer.ask")!.stdout) as AskJson;
    const naive = JSON.parse(runs.get("naive.ask")!.stdout) as AskJson;
    if (ours.candidates.length !== PASSAGES.length || peer.candidates.length !== PASSAGES.length || naive.candidates.length !== PASSAGES.length) {
        throw new Error(`candidates: selfrag ${ours.candidates.length}, peer ${peer.candidates.length}, naive ${naive.candidates.length}; ` +
            `expected ${PASSAGES.length} each`);
    }
    const inspect = JSON.parse(runs.get("selfrag.inspect")!.stdout) as {p_retrieve: number, next: {id: number}, promptTokens: number};
    const peerInspect = JSON.parse(runs.get("peer.inspect")!.stdout) as {p_retrieve: number, next: number, promptTokens: number};
    if (inspect.promptTokens !== peerInspect.promptTokens) {
        throw new Error(`inspect prompt: selfrag ${inspect.promptTokens} tokens, peer ${peerInspect.promptTokens}`);
    }
    const inspectDiff = Math.abs(inspect.p_retrieve - peerInspect.p_retrieve);
    if (!(inspectDiff < 1e-3) || inspect.next.id !== peerInspect.next) {
        throw new Error(`inspect differs: selfrag p_retrieve ${inspect.p_retrieve}, next ${inspect.next.id}; ` +
            `peer ${peerInspect.p_retrieve}, next ${peerInspect.next}`);
    }
    const agreeingChars = ours.candidates.map((c, i) => commonPrefix(c.text, peer.candidates[i].text));
    return {
        identical: ours.candidates.filter((c, i) => c.text === peer.candidates[i].text).length,
        agreeingChars, tokens: ours.candidates.map((c) => c.tokens), peerTokens: peer.candidates.map((c) => c.tokens),
        naiveCandidates: naive.candidates.length, inspectDiff, promptTokens: inspect.promptTokens
    };
}

// ---------------------------------------------------------------------------------------------
// Statistics
// ---------------------------------------------------------------------------------------------

/** Phase durations of one run from its marks: each phase from the previous mark (import from the process start). */
function phaseDurations(run: Run, phases: readonly string[]): Record<string, number> {
    const out: Record<string, number> = {};
    let previous = 0;
    for (const phase of phases) {
        const at = run.marks[phase];
        if (at == null) continue;
        out[phase] = at - previous;
        previous = at;
    }
    out.exit = run.wallMs - previous;
    return out;
}

const SELFRAG_PHASES = ["import", "backend", "model", "context", "first-decode", "done"];
const PEER_PHASES = ["backend", "model", "context", "first-decode", "done"];

// ---------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------

export async function run(): Promise<BenchResult> {
    await ensureBenchModel();
    const peer = ensureStartupPeer();
    const files = prepare();
    const list = subjects(files, peer);
    const loadBefore = os.loadavg();

    // Warm-up round: page cache, the runtime record of files.home (the first ask there records it),
    // and the cross-check.
    const warm = new Map<string, Run>();
    for (const s of list) warm.set(s.id, await s.run());
    const check = crossCheck(warm);

    const samples = new Map<string, Run[]>(list.map((s) => [s.id, []]));
    for (let round = 0; round < ROUNDS; round++) {
        for (const s of list) samples.get(s.id)!.push(await s.run());
        process.stderr.write(`startup bench: round ${round + 1}/${ROUNDS} done\n`);
    }
    const loadAfter = os.loadavg();

    const measurements: Measurement[] = list.map((s) => sampleMeasurement(s.id, s.label, "process", samples.get(s.id)!.map((r) => r.wallMs)));
    const phaseTable: string[] = [];
    for (const [id, phases] of [["selfrag.ask", SELFRAG_PHASES], ["peer.ask", PEER_PHASES], ["selfrag.ask.first", SELFRAG_PHASES],
        ["selfrag.inspect", SELFRAG_PHASES], ["peer.inspect", PEER_PHASES], ["selfrag.inspect.noCa", SELFRAG_PHASES]] as const) {
        const runs = samples.get(id);
        if (runs == null) continue;
        const durations = runs.map((r) => phaseDurations(r, phases));
        const names = [...phases, "exit"].filter((p) => durations.every((d) => d[p] != null));
        for (const p of names) {
            measurements.push(sampleMeasurement(`phase.${id}.${p}`, `${id}: ${p}`, "phase", durations.map((d) => d[p])));
        }
        phaseTable.push(`${id}: ` + names.map((p) => `${p} ${Math.round(median(durations.map((d) => d[p])))}`).join(", ") + " ms (medians)");
    }
    const vias = (id: string) => {
        const counts = new Map<string, number>();
        for (const r of samples.get(id)!) counts.set(r.via ?? "?", (counts.get(r.via ?? "?") ?? 0) + 1);
        return [...counts].map(([via, n]) => `${via} x${n}`).join(", ");
    };

    const result: BenchResult = {
        name: "startup",
        title: "Cold start: whole processes, selfrag vs a C++ program on llama.h vs naive node-llama-cpp",
        environment: environment("n/a (whole processes)"),
        measurements,
        comparisons: compare(measurements),
        notes: [
            `Model: the \`bench\` fixture (random weights, about 53M parameters, f32, ${(fs.statSync(MODEL_FILE).size / 1e6).toFixed(0)} MB), ` +
            `CPU, 1 thread everywhere. Question "${QUESTION}" with ${PASSAGES.length} passages, mode always, ${MAX_NEW_TOKENS} new tokens ` +
            `per candidate; context ${ASK_CONTEXT} tokens per sequence x ${PASSAGES.length} sequences, unified KV (selfrag ask's defaults, ` +
            `and the peer's parameters); inspect: 1 sequence, a context sized to the prompt (its ${check.promptTokens} tokens rounded up ` +
            `to llama.cpp's 256-cell KV padding, at most ${INSPECT_CONTEXT}; batch at most that), on both sides.`,
            `Whole process = spawn to exit, timed by the bench process. ${ROUNDS} rounds after a warm-up round; each round runs every ` +
            "subject once, in the same order, so all subjects see the same machine load; medians.",
            `Machine load (1/5/15-minute load average): ${loadBefore.map((l) => l.toFixed(2)).join("/")} before, ` +
            `${loadAfter.map((l) => l.toFixed(2)).join("/")} after, on ${os.cpus().length} logical CPUs. Shared machine: read ratios, not absolute times.`,
            `How llama.cpp came up: selfrag ask ${vias("selfrag.ask")}, inspect ${vias("selfrag.inspect")}, first run ${vias("selfrag.ask.first")} ` +
            "(direct = the CPU runtime recorded by an earlier getLlama() in SELFRAG_HOME, node-llama-cpp's binary loaded without its " +
            "JavaScript, GPU probing or child-process binary test; node-llama-cpp = getLlama(), which then records the runtime).",
            `Cross-check (warm-up round): inspect p_retrieve within ${check.inspectDiff.toExponential(1)} of the peer's, same greedy token; ` +
            `ask: candidates of ${check.tokens.join(", ")} tokens (peer ${check.peerTokens.join(", ")}), ${check.identical} of ` +
            `${PASSAGES.length} texts identical to the peer's` + (check.identical === PASSAGES.length ? "" :
                `, the texts agree on their first ${check.agreeingChars.join(", ")} characters (random weights: near-tie argmaxes ` +
                "flip with the batch split; the work per step is the same)") + `; naive ${check.naiveCandidates} candidates.`,
            "Phases (ms): selfrag's from SELFRAG_TIMINGS=1 marks, the first (import) counted from Node's process start (Node's own " +
            "start-up included: compare `node -e 0`); the peer's from its own marks, counted from main(). first-decode = the prompt's " +
            "row is back (for ask the passages and 31 more steps follow, in done); exit = after the last mark until the process is gone.",
            ...phaseTable,
            "floor = the ratio a Node program would have if all it added to the C++ program were Node's own start (node " +
            "empty.mjs; the C++ program's own exec and exit are counted twice, so the true floor is a little lower).",
            ...(EXTRA_CA_CERTS == null || EXTRA_CA_CERTS === "" ? [] : [
                `This machine sets NODE_EXTRA_CA_CERTS (${extraCaCertsSize()}), which Node 20 reads and parses at every process start, ` +
                "before any JavaScript runs: every Node row pays it and the C++ peer does not. The NODE_EXTRA_CA_CERTS unset rows " +
                "measure selfrag inspect and node empty.mjs without it (same rounds, same order)."
            ]),
            "The naive peer runs with gpu: false (no GPU probing, its cheapest start); selfrag with the default gpu option (\"auto\"), " +
            "as a user types the command. `npm run bench -- startup`; SELFRAG_BENCH_ROUNDS sets the rounds (default 7)."
        ]
    };
    writeResult(result);
    return result;
}

function extraCaCertsSize(): string {
    const size = fs.statSync(EXTRA_CA_CERTS ?? "", {throwIfNoEntry: false})?.size;
    return size == null ? "a file that is not there" : `a ${Math.round(size / 1024)} KiB bundle`;
}

function compare(m: readonly Measurement[]): Comparison[] {
    const at = (id: string) => medianOf(m, id);
    const has = (id: string) => m.some((x) => x.id === id);
    return [
        {label: "whole-process selfrag ask / C++ program (same work)", value: at("selfrag.ask") / at("peer.ask"), unit: "x",
            target: {kind: "max", value: 1.3}},
        {label: "whole-process selfrag inspect / C++ load + one prompt", value: at("selfrag.inspect") / at("peer.inspect"), unit: "x",
            target: {kind: "max", value: 1.3}},
        {label: "naive node-llama-cpp whole process / selfrag ask", value: at("naive.ask") / at("selfrag.ask"), unit: "x",
            target: {kind: "min", value: 4}},
        {label: "selfrag ask first run (getLlama(), records the runtime) / recorded", value: at("selfrag.ask.first") / at("selfrag.ask"), unit: "x"},
        {label: "selfrag ask - C++ program (what the Node side adds)", value: at("selfrag.ask") - at("peer.ask"), unit: "us"},
        {label: "selfrag inspect - C++ load + one prompt", value: at("selfrag.inspect") - at("peer.inspect"), unit: "us"},
        {label: "selfrag inspect - C++ load + one prompt - node empty.mjs (what selfrag adds beyond Node's start)",
            value: at("selfrag.inspect") - at("peer.inspect") - at("node.esm"), unit: "us"},
        {label: "floor: (C++ load + one prompt + node empty.mjs) / C++ load + one prompt", value: (at("peer.inspect") + at("node.esm")) / at("peer.inspect"),
            unit: "x"},
        ...(has("selfrag.inspect.noCa") ? [
            {label: "whole-process selfrag inspect / C++ load + one prompt, NODE_EXTRA_CA_CERTS unset",
                value: at("selfrag.inspect.noCa") / at("peer.inspect"), unit: "x", target: {kind: "max", value: 1.3}},
            {label: "floor, NODE_EXTRA_CA_CERTS unset: (C++ load + one prompt + node empty.mjs) / C++ load + one prompt",
                value: (at("peer.inspect") + at("node.esm.noCa")) / at("peer.inspect"), unit: "x"},
            {label: "node empty.mjs - the same with NODE_EXTRA_CA_CERTS unset (this machine's setting)",
                value: at("node.esm") - at("node.esm.noCa"), unit: "us"}
        ] satisfies Comparison[] : []),
        {label: "selfrag --help, wall", value: at("selfrag.help"), unit: "us", target: {kind: "max", value: 150_000}},
        {label: "selfrag ask --help, wall", value: at("selfrag.askHelp"), unit: "us"},
        {label: "node -e 0, wall (the floor)", value: at("node"), unit: "us"},
        {label: "node empty.mjs, wall (the floor of an ES module entry)", value: at("node.esm"), unit: "us"},
        {label: "selfrag --help - node empty.mjs (what selfrag adds to Node's start)", value: at("selfrag.help") - at("node.esm"), unit: "us"},
        {label: "import('selfrag') from node -e, wall", value: at("import"), unit: "us", target: {kind: "max", value: 1_000_000}}
    ];
}
