// Generated corpora for the retrieval tests: Zipf-distributed words, like the word counts of real
// text, so the hashing embedder's idf weights and rare-word matches behave as on a real corpus.
import fs from "node:fs";
import {mulberry32 as random} from "../lib/random.js";

const STOP_WORDS = ["the", "of", "and", "a", "in", "to", "is", "was", "for", "on", "as", "with", "by", "he", "that", "at", "from", "his"];

/** Zipf-distributed words (stop words first, then "w0", "w1", ...), like the word counts of real text. */
export function wordSampler(seed: number, vocabulary = 5000): () => string {
    const next = random(seed);
    const words = [...STOP_WORDS, ...Array.from({length: vocabulary - STOP_WORDS.length}, (_, i) => `w${i.toString(36)}`)];
    const cumulative: number[] = [];
    let total = 0;
    for (let i = 0; i < words.length; i++) cumulative.push(total += 1 / (i + 1));
    return () => {
        const x = next() * total;
        let lo = 0;
        let hi = words.length - 1;
        while (lo < hi) {
            const mid = (lo + hi) >> 1;
            if (cumulative[mid] < x) lo = mid + 1;
            else hi = mid;
        }
        return words[lo];
    };
}

export function generatedPassages(count: number, seed: number): {id: string, title: string, text: string}[] {
    const word = wordSampler(seed);
    const next = random(seed + 1);
    return Array.from({length: count}, (_, i) => ({
        id: `p${i + 1}`, title: `${word()} ${word()}`, text: Array.from({length: 40 + Math.floor(next() * 60)}, word).join(" ")
    }));
}

export function writeJsonl(file: string, records: readonly unknown[]): string {
    fs.writeFileSync(file, records.map((r) => JSON.stringify(r)).join("\n") + "\n");
    return file;
}

/** Three passages and four questions (one without a passage) for evaluation-file fixtures: [question, gold answer]. */
export const CAPITALS = {
    ctxs: [
        {id: "b", title: "Berlin", text: "Berlin is the capital of Germany."},
        {id: "p", title: "Paris", text: "Paris is the capital and largest city of France. Paris"},
        {id: "r", title: "Rome", text: "Rome is the capital of Italy."}
    ],
    questions: [["What is the capital of France?", "Paris"], ["Name the capital of Germany.", "Berlin"],
        ["Tell me about London.", "London"], ["Which city is the capital of Italy?", "Rome"]] as [string, string][]
} as const;
