import type {EngineModel} from "../engine/EngineModel.js";
import {formatPassage, type Passage} from "./prompts.js";

/**
 * A passage's tokens (`[Retrieval]<paragraph>title\ntext</paragraph>`, no BOS) cut to `room`
 * tokens: the text is shortened to its longest prefix that fits, the markup kept. One oversized
 * passage in a top-k list should not lose the other k - 1, so both forms truncate with a warning
 * rather than fail. `undefined` when even the empty passage does not fit.
 */
export function fitPassage(model: EngineModel, passage: Passage, room: number): {tokens: Int32Array, truncatedFrom?: number} | undefined {
    const tokens = model.tokenize(formatPassage(passage), {bos: false});
    if (tokens.length <= room) return {tokens};
    let low = 0;
    let high = passage.text.length;
    while (low < high) { // longest prefix of the text that fits
        const mid = Math.ceil((low + high) / 2);
        if (model.tokenize(formatPassage({...passage, text: passage.text.slice(0, mid)}), {bos: false}).length <= room) low = mid;
        else high = mid - 1;
    }
    const cut = model.tokenize(formatPassage({...passage, text: passage.text.slice(0, low)}), {bos: false});
    return cut.length <= room ? {tokens: cut, truncatedFrom: tokens.length} : undefined;
}

export function truncationWarning(index: number, passage: Passage, from: number, to: number, perSequence: number): string {
    return `passage ${index} (${passage.id ?? passage.title}) truncated from ${from} to ${to} tokens to fit the context of ${perSequence} tokens per sequence`;
}
