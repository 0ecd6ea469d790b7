// Runs every dist/bench/*.bench.js module in turn (`npm run bench`), or only those whose file name
// contains one of the command-line arguments (`npm run bench -- reflection`). Each module exports
// `run(): Promise<BenchResult>` and writes its own bench/results files.
import fs from "node:fs";
import path from "node:path";
import {fileURLToPath, pathToFileURL} from "node:url";
import {renderMarkdown, resultName, type BenchResult} from "./common.js";

interface BenchModule {
    run(): Promise<BenchResult>;
}

const benchDir = path.dirname(fileURLToPath(import.meta.url));

function benchFiles(filters: readonly string[]): string[] {
    return fs.readdirSync(benchDir)
        .filter((file) => file.endsWith(".bench.js"))
        .filter((file) => filters.length === 0 || filters.some((f) => file.includes(f)))
        .sort();
}

async function main(): Promise<void> {
    const files = benchFiles(process.argv.slice(2));
    if (files.length === 0) throw new Error(`no *.bench.js module in ${benchDir} matches ${process.argv.slice(2).join(", ")}`);
    for (const file of files) {
        const started = performance.now();
        console.log(`\n=== ${file}`);
        const module = await import(pathToFileURL(path.join(benchDir, file)).href) as Partial<BenchModule>;
        if (typeof module.run !== "function") throw new Error(`${file} does not export run()`);
        const result = await module.run();
        console.log(renderMarkdown(result));
        console.log(`(${file}: ${((performance.now() - started) / 1000).toFixed(1)} s, ` +
            `${result.saved === false ? "nothing measured, bench/results not written" : `written to bench/results/${resultName(result.name)}.{json,md}`})`);
    }
}

main().then(
    // Native handles (llama.cpp backends, thread pools) can keep the loop alive after the last
    // model is disposed; the results are on disk by now, so leave explicitly.
    () => process.exit(0),
    (error: unknown) => {
        console.error(error);
        process.exit(1);
    });
