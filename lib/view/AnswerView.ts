// One self-contained HTML page per answer, to look at what Self-RAG decided: the long-form search
// tree (every node's passage, segment, critique and path score; the chosen path; pruned nodes) or
// the short-form candidates side by side. Inline CSS and JS only, and a Content-Security-Policy
// that forbids every fetch, so the page opens from a file with no network. Every element a test
// or a script needs carries a stable data attribute (data-node-id, data-chosen, data-pruned, ...).
import type {CritiqueScore} from "../selfrag/SegmentScorer.js";
import type {LongFormAnswer, LongFormNodeJson} from "../selfrag/LongForm.js";
import type {Passage} from "../selfrag/prompts.js";
import type {CandidateResult, ShortFormAnswer} from "../selfrag/ShortForm.js";

export interface AnswerViewOptions {
    /** The question, shown as the page's heading (answers do not carry it). */
    question?: string;
    /** The page's title (default: the question, else "Self-RAG answer <id>"). */
    title?: string;
}

/** A long-form answer as the view reads it: the API's result or its JSON (`ask --long --json`, the server's answer). */
export type LongFormViewInput = Omit<LongFormAnswer, "id" | "warnings"> & {id?: string, warnings?: readonly string[]};

/** A short-form answer as the view reads it: the API's result or its JSON (`ask --json`, the server's answer). */
export type ShortFormViewInput = Omit<ShortFormAnswer, "id" | "warnings" | "stats" | "trace"> &
    {id?: string, warnings?: readonly string[], stats?: ShortFormAnswer["stats"]};

/** How the view found the answer's path through the tree. */
export interface ChosenPath {
    /** Node ids from depth 1 down (the root excluded); empty when the tree holds no segment of the answer. */
    ids: number[];
    /**
     * "search": the best node of the deepest depth and its ancestors (how the search chooses), and
     * the answer's segments lie along it. "segments": found by the segments' texts instead (the
     * reference profile ranks whole paths). "none": not found (or no tree).
     */
    source: "search" | "segments" | "none";
}

/**
 * The answer's path through the search tree, computed as the search chooses it (the highest path
 * score of the deepest depth, the earlier node on a tie, and its ancestors) and checked against the
 * answer's segments, which lie along it in order (segments dropped by `ignoreCont` or empty after
 * post-processing are missing from them).
 *
 * ```ts
 * const {ids} = chosenPath(await model.answerLong(question, {passages}));
 * ```
 */
export function chosenPath(answer: Pick<LongFormViewInput, "tree" | "segments">): ChosenPath {
    const byId = new Map(answer.tree.map((n) => [n.id, n]));
    const pathTo = (node: LongFormNodeJson): LongFormNodeJson[] => {
        const path: LongFormNodeJson[] = [];
        for (let n: LongFormNodeJson | undefined = node; n != null && n.parent != null && path.length <= answer.tree.length; n = byId.get(n.parent)) {
            path.unshift(n);
        }
        return path;
    };
    const segments = answer.segments.map((s) => s.text);
    const carries = (path: readonly LongFormNodeJson[]) => isSubsequence(segments, path.map((n) => n.text));
    const deepest = Math.max(0, ...answer.tree.map((n) => n.depth));
    if (deepest === 0) return {ids: [], source: "none"};
    let best: LongFormNodeJson | undefined;
    for (const node of answer.tree) if (node.depth === deepest && (best == null || node.score > best.score)) best = node;
    const searched = pathTo(best!);
    if (carries(searched)) return {ids: searched.map((n) => n.id), source: "search"};
    // Another ranking (the reference profile's whole-path scores): the best-scoring node whose path
    // carries every segment and ends on the last one.
    const last = segments[segments.length - 1];
    let found: LongFormNodeJson[] | undefined;
    let foundScore = -Infinity;
    for (const node of answer.tree) {
        if (node.parent == null || node.text !== last) continue;
        const path = pathTo(node);
        if (carries(path) && node.score > foundScore) {
            found = path;
            foundScore = node.score;
        }
    }
    return found != null ? {ids: found.map((n) => n.id), source: "segments"} : {ids: [], source: "none"};
}

function isSubsequence(needles: readonly string[], haystack: readonly string[]): boolean {
    let i = 0;
    for (const item of haystack) if (i < needles.length && item === needles[i]) i++;
    return i === needles.length;
}

/**
 * A long-form answer as one self-contained HTML page: the retrieval decision, the answer, the
 * search tree by depth (each node's passage, segment with its reflection tokens as tags,
 * relevance / support / utility bars, segment and path score), the chosen path highlighted
 * (`data-chosen="true"`), nodes left out of the beam greyed (`data-pruned="true"`).
 *
 * ```ts
 * const answer = await model.answerLong(question, {passages});
 * fs.writeFileSync("tree.html", renderLongFormHtml(answer, {question}));
 * ```
 */
export function renderLongFormHtml(answer: LongFormViewInput, options: AnswerViewOptions = {}): string {
    const chosen = chosenPath(answer);
    const onPath = new Set(chosen.ids);
    const nodes = [...answer.tree].sort((a, b) => a.depth - b.depth || a.id - b.id);
    const depths = new Map<number, LongFormNodeJson[]>();
    for (const node of nodes) depths.set(node.depth, [...(depths.get(node.depth) ?? []), node]);
    const s = answer.stats;
    const meta = [
        retrievalMeta(answer.retrieve),
        `<span data-stat="nodes">${s.nodes} nodes, answer depth ${s.depth}, stopped: ${esc(s.stop)}</span>`,
        `<span data-stat="tokens" title="tokens decoded vs what re-encoding every context would decode">${s.evaluatedTokens} tokens decoded ` +
            `(${fmt(s.evaluatedTokens / Math.max(1, s.referenceTokens), 2)}x re-encoding's ${s.referenceTokens})</span>`
    ];
    const pathNote = answer.tree.length === 0 ? ""
        : chosen.source === "segments" ? `<p class="note" data-path-source="segments">The chosen path was found from the answer's segments: this search ranks whole paths (reference profile), not the best node of the deepest depth.</p>`
            : chosen.source === "none" ? `<p class="note warn" data-path-source="none">The answer's segments were not found along any path of the tree.</p>` : "";
    const tree = answer.tree.length === 0
        ? `<p class="note" data-empty-tree="true">No search tree: ${!answer.retrieve.decision ? "answered without retrieval"
            : s.nodes > 0 ? "this answer does not carry its tree (a chat completion's \"selfrag\" field has none)" : "the search generated no segment"}.</p>`
        : `<div class="tree" data-tree="true"><svg class="edges" aria-hidden="true"></svg>${[...depths.entries()].map(([depth, level]) =>
            levelHtml(depth, level, onPath, options.question, answer.retrieve)).join("")}</div>`;
    const body = `<header>
<h1>${esc(options.question ?? `Long-form answer${answer.id != null ? ` ${answer.id}` : ""}`)}</h1>
<p class="answer" data-answer="true">${esc(answer.answer)}</p>
<div class="meta">${meta.join("")}</div>
${warningsHtml(answer.warnings)}
${answer.tree.length === 0 ? "" : `<div class="legend"><span class="key chosen">chosen path</span><span class="key kept">kept in the beam</span><span class="key pruned">pruned</span>
<label><input type="checkbox" id="show-pruned" checked> show pruned nodes</label></div>`}
</header>
<main>
<section><h2>Search tree</h2>${pathNote}${tree}</section>
${segmentsHtml(answer, chosen)}
${docsHtml(answer.docs)}
</main>`;
    return page(options.title ?? options.question ?? `Self-RAG answer ${answer.id ?? ""}`.trim(), body, TREE_SCRIPT);
}

function levelHtml(depth: number, level: readonly LongFormNodeJson[], onPath: ReadonlySet<number>, question: string | undefined,
    retrieve: LongFormViewInput["retrieve"]): string {
    if (depth === 0) {
        return `<div class="level" data-depth="0"><h3>Question</h3>${level.map((n) => `<article class="node root" data-node-id="${n.id}" data-depth="0" data-score="${n.score}">
<div class="node-head"><span class="nid">#${n.id}</span><span class="ptitle">root</span></div>
${question != null ? `<p class="text">${esc(question)}</p>` : ""}
<p class="foot">retrieval ${retrieve.decision ? "decided" : "not decided"} (p = ${fmt(retrieve.p, 4)})${n.notExpanded != null ? `; not expanded: ${esc(n.notExpanded)}` : ""}</p>
</article>`).join("")}</div>`;
    }
    const kept = level.filter((n) => n.inBeam).length;
    const best = Math.max(...level.map((n) => n.score));
    const groups = new Map<number | null, LongFormNodeJson[]>();
    for (const node of level) groups.set(node.parent, [...(groups.get(node.parent) ?? []), node]);
    return `<div class="level" data-depth="${depth}"><h3>Depth ${depth} <span>${level.length} nodes, ${kept} kept</span></h3>${[...groups.entries()].map(([parent, children]) =>
        `<div class="group" data-group-parent="${parent}"><div class="group-label">from #${parent}</div>${children.map((n) => nodeHtml(n, onPath.has(n.id), best)).join("")}</div>`).join("")}</div>`;
}

function nodeHtml(node: LongFormNodeJson, chosen: boolean, bestAtDepth: number): string {
    const attributes = [`data-node-id="${node.id}"`, `data-parent-id="${node.parent}"`, `data-depth="${node.depth}"`,
        `data-in-beam="${node.inBeam}"`, `data-score="${node.score}"`, ...(chosen ? [`data-chosen="true"`] : []), ...(node.inBeam ? [] : [`data-pruned="true"`])];
    const status = chosen ? `<span class="badge chosen">chosen</span>` : node.inBeam ? `<span class="badge kept">kept</span>` : `<span class="badge pruned">pruned</span>`;
    const foot = [`stop: ${esc(node.stopReason)}`, ...(node.asksRetrieval ? ["asks for more evidence"] : []),
        ...(node.notExpanded != null ? [`not expanded: ${esc(node.notExpanded)}`] : [])];
    return `<article class="node" ${attributes.join(" ")}>
<div class="node-head"><span class="nid">#${node.id}</span>${passageHtml(node.passage)}${status}</div>
<p class="text">${segmentHtml(node.text)}</p>
${node.critique != null ? critiqueHtml(node.critique) : ""}
<div class="metric score" data-metric="path-score" title="path score: the product of the segment scores from the root">
<span class="mlabel">path</span>${barHtml(bestAtDepth > 0 ? node.score / bestAtDepth : 0)}<span class="mval">${fmt(node.score, 3)}</span></div>
<p class="foot">${foot.join(" · ")}</p>
</article>`;
}

function critiqueHtml(c: CritiqueScore): string {
    return `<div class="bars">
<div class="metric" data-metric="relevance" title="relevance: P([Relevant]) / (P([Relevant]) + P([Irrelevant]))"><span class="mlabel">rel</span>${barHtml(c.relevance)}<span class="mval">${fmt(c.relevance, 2)}</span></div>
<div class="metric" data-metric="support" title="support: fully 1, partially 0.5, no support 0, weighted by their probabilities"><span class="mlabel">sup</span>${barHtml(c.support)}<span class="mval">${fmt(c.support, 2)}</span></div>
<div class="metric" data-metric="utility" title="utility: [Utility:1] -1 ... [Utility:5] +1, weighted by their probabilities"><span class="mlabel">use</span>${divergingBarHtml(c.utility)}<span class="mval">${fmt(c.utility, 2)}</span></div>
<div class="metric" data-metric="seq" title="sequence score: exp(mean token log-prob) = ${fmt(Math.exp(c.seq), 3)}"><span class="mlabel">seq</span>${barHtml(Math.exp(c.seq))}<span class="mval">${fmt(c.seq, 2)}</span></div>
<div class="metric" data-metric="segment-score" title="segment score: the weighted sum of the terms above"><span class="mlabel">score</span><span class="bar none"></span><span class="mval">${fmt(c.score, 3)}</span></div>
</div>`;
}

function docsHtml(docs: readonly Passage[]): string {
    if (docs.length === 0) return "";
    return `<section><h2>Cited passages</h2><ol class="docs">${docs.map((d, i) => `<li data-doc="${i + 1}"><details><summary><b>[${i + 1}]</b> ${esc(d.title)}${
        d.id != null ? ` <span class="pid">${esc(d.id)}</span>` : ""}</summary><p>${esc(d.text)}</p></details></li>`).join("")}</ol></section>`;
}

function segmentsHtml(answer: LongFormViewInput, chosen: ChosenPath): string {
    const texts = new Map(chosen.ids.map((id) => [id, answer.tree.find((n) => n.id === id)?.text]));
    let next = 0;
    const rows = answer.segments.map((s, i) => {
        // The node of each segment along the chosen path (in order, as chosenPath checked).
        let nodeId: number | undefined;
        while (next < chosen.ids.length && nodeId == null) {
            const id = chosen.ids[next++];
            if (texts.get(id) === s.text) nodeId = id;
        }
        return `<tr data-segment-index="${i}"${nodeId != null ? ` data-node-id="${nodeId}"` : ""}><td>${s.citation != null ? `[${s.citation}]` : ""}</td>` +
            `<td class="text">${segmentHtml(s.text)}</td><td>${s.passage != null ? esc(s.passage.title) : ""}</td>` +
            `<td class="num">${s.critique != null ? fmt(s.critique.score, 3) : ""}</td><td class="num">${fmt(s.score, 3)}</td>` +
            `<td>${nodeId != null ? `#${nodeId}` : ""}</td></tr>`;
    });
    return `<section><h2>The answer, segment by segment</h2><table class="segments"><thead><tr><th>cites</th><th>segment</th><th>passage</th>` +
        `<th>segment score</th><th>path score</th><th>node</th></tr></thead><tbody>${rows.join("")}</tbody></table></section>`;
}

/**
 * A short-form answer as one self-contained HTML page: the retrieval decision, the answer, and
 * every candidate side by side with its passage, text (reflection tokens as tags) and critique
 * (relevance, support, utility, sequence score, score); the chosen one marked
 * (`data-chosen="true"`), the closed-set votes when there are any.
 *
 * ```ts
 * fs.writeFileSync("answer.html", renderShortFormHtml(await model.answer(question, {passages}), {question}));
 * ```
 */
export function renderShortFormHtml(answer: ShortFormViewInput, options: AnswerViewOptions = {}): string {
    const bestScore = Math.max(0, ...answer.candidates.map((c) => c.score));
    const ranks = answer.candidates.map((c, i) => ({i, score: c.score})).sort((a, b) => b.score - a.score);
    const rankOf = new Map(ranks.map((r, k) => [r.i, k + 1]));
    const meta = [retrievalMeta(answer.retrieve), `<span data-stat="candidates">${answer.candidates.length} candidate${answer.candidates.length === 1 ? "" : "s"}</span>`];
    if (answer.stats != null) {
        meta.push(`<span data-stat="tokens">tokens: prompt ${answer.stats.promptTokens}, passages ${answer.stats.passageTokens}, generated ${answer.stats.generatedTokens}</span>`);
    }
    const votes = answer.votes == null ? "" : `<section><h2>Closed-set vote</h2><table class="votes">${Object.entries(answer.votes)
        .sort((a, b) => b[1] - a[1]).map(([choice, total]) => `<tr data-vote="${esc(choice)}"${choice === answer.candidates[answer.best]?.answer ? ` data-chosen="true"` : ""}>` +
            `<td>${esc(choice)}</td><td class="num">${fmt(total, 3)}</td></tr>`).join("")}</table></section>`;
    const body = `<header>
<h1>${esc(options.question ?? `Short-form answer${answer.id != null ? ` ${answer.id}` : ""}`)}</h1>
<p class="answer" data-answer="true">${esc(answer.answer)}</p>
<div class="meta">${meta.join("")}</div>
${warningsHtml(answer.warnings)}
</header>
<main>
<section><h2>Candidates</h2><div class="candidates">${answer.candidates.map((c, i) =>
        candidateHtml(c, i, i === answer.best, rankOf.get(i)!, bestScore)).join("")}</div></section>
${votes}
</main>`;
    return page(options.title ?? options.question ?? `Self-RAG answer ${answer.id ?? ""}`.trim(), body, "");
}

function candidateHtml(c: CandidateResult, index: number, chosen: boolean, rank: number, bestScore: number): string {
    return `<article class="candidate node" data-candidate-index="${index}" data-score="${c.score}"${chosen ? ` data-chosen="true"` : ""}>
<div class="node-head"><span class="nid">#${index}</span>${c.passage != null ? passageHtml(c.passage) : `<span class="ptitle muted">no passage</span>`}` +
        `${chosen ? `<span class="badge chosen">chosen</span>` : `<span class="badge kept">rank ${rank}</span>`}</div>
<p class="text">${segmentHtml(c.text)}</p>
<p class="clean" title="the post-processed answer"><span class="mlabel">answer</span> ${esc(c.answer)}</p>
${critiqueHtml(c)}
<div class="metric score" data-metric="score-share" title="score relative to the best candidate's"><span class="mlabel">of best</span>${barHtml(bestScore > 0 ? c.score / bestScore : 0)}<span class="mval">${fmt(bestScore > 0 ? c.score / bestScore : 0, 2)}</span></div>
<p class="foot">stop: ${esc(c.stopReason)} · ${c.tokens} tokens</p>
</article>`;
}

function retrievalMeta(retrieve: {decision: boolean, p: number}): string {
    const share = retrieve.p >= 0 && retrieve.p <= 1 ? barHtml(retrieve.p) : "";
    return `<span class="retrieval" data-retrieve="${retrieve.decision}" data-p="${retrieve.p}">retrieval: <b>${retrieve.decision ? "yes" : "no"}</b> ` +
        `(p = ${fmt(retrieve.p, 4)})${share}</span>`;
}

function warningsHtml(warnings: readonly string[] | undefined): string {
    if (warnings == null || warnings.length === 0) return "";
    return `<ul class="warnings">${warnings.map((w) => `<li>${esc(w)}</li>`).join("")}</ul>`;
}

function passageHtml(passage: Passage | undefined): string {
    if (passage == null) return "";
    const preview = passage.text.length > 400 ? `${passage.text.slice(0, 400)}…` : passage.text;
    return `<span class="ptitle" title="${esc(preview)}">${esc(passage.title || "(untitled)")}${passage.id != null ? ` <span class="pid">${esc(passage.id)}</span>` : ""}</span>`;
}

/** A 0..1 share as a bar (clamped). */
function barHtml(share: number): string {
    const width = Number.isFinite(share) ? Math.min(1, Math.max(0, share)) * 100 : 0;
    return `<span class="bar"><span class="fill" style="width:${width.toFixed(1)}%"></span></span>`;
}

/** A -1..1 value as a bar from the middle (utility). */
function divergingBarHtml(value: number): string {
    const v = Number.isFinite(value) ? Math.min(1, Math.max(-1, value)) : 0;
    const left = v >= 0 ? 50 : 50 + v * 50;
    return `<span class="bar diverging"><span class="fill ${v >= 0 ? "pos" : "neg"}" style="left:${left.toFixed(1)}%;width:${(Math.abs(v) * 50).toFixed(1)}%"></span></span>`;
}

/** Reflection tokens (and the markup around passages, and </s>) as small tags; everything else escaped. */
const TAGS: Record<string, string> = {
    "[Retrieval]": "info", "[No Retrieval]": "info", "[Continue to Use Evidence]": "info",
    "[Relevant]": "good", "[Irrelevant]": "bad",
    "[Fully supported]": "good", "[Partially supported]": "mid", "[No support / Contradictory]": "bad",
    "[Utility:1]": "bad", "[Utility:2]": "bad", "[Utility:3]": "mid", "[Utility:4]": "good", "[Utility:5]": "good",
    "<paragraph>": "markup", "</paragraph>": "markup", "</s>": "markup"
};
const TAG_PATTERN = new RegExp(`(${Object.keys(TAGS).map((t) => t.replace(/[[\]/\\^$.*+?()|{}]/g, "\\$&")).join("|")})`);

/**
 * A segment's text as HTML: escaped, with each reflection token as a small coloured tag.
 *
 * ```ts
 * segmentHtml("[Relevant] Paris.[Fully supported]"); // '<span class="tag good" ...>Relevant</span> Paris.<span ...>'
 * ```
 */
export function segmentHtml(text: string): string {
    if (text === "") return `<span class="muted">(empty segment)</span>`;
    return text.split(TAG_PATTERN).map((part, i) => i % 2 === 1
        ? `<span class="tag ${TAGS[part]}" data-token="${esc(part)}">${esc(part.replace(/^\[|\]$/g, ""))}</span>`
        : esc(part)).join("");
}

function esc(value: unknown): string {
    return String(value).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#39;"})[c]!);
}

function fmt(value: number, digits: number): string {
    return Number.isFinite(value) ? value.toFixed(digits) : String(value);
}

function page(title: string, body: string, script: string): string {
    return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<meta name="generator" content="selfrag">
<title>${esc(title)}</title>
<style>${STYLE}</style>
</head>
<body>
${body}
${script !== "" ? `<script>${script}</script>` : ""}
</body>
</html>
`;
}

const STYLE = `
:root{--ink:#1f2328;--muted:#656d76;--line:#d0d7de;--bg:#f6f8fa;--card:#fff;--chosen:#1a7f37;--chosen-bg:#eefbf1;--accent:#0969da;--good:#1a7f37;--mid:#9a6700;--bad:#cf222e}
*{box-sizing:border-box}
body{margin:0;font:13px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--ink);background:var(--bg)}
header{padding:14px 20px 10px;background:var(--card);border-bottom:1px solid var(--line)}
h1{font-size:17px;margin:0 0 6px}
h2{font-size:13px;margin:14px 0 8px;color:var(--muted);text-transform:uppercase;letter-spacing:.04em}
h3{font-size:12px;margin:0 0 8px;color:var(--ink)}h3 span{color:var(--muted);font-weight:normal}
main{padding:0 20px 24px}
.answer{font-size:14px;margin:0 0 8px;max-width:90em}
.meta{display:flex;flex-wrap:wrap;gap:4px 18px;color:var(--muted);align-items:center}
.meta .bar{width:60px;margin-left:6px}
.legend{display:flex;gap:14px;align-items:center;margin-top:8px;color:var(--muted);font-size:12px}
.key::before{content:"";display:inline-block;width:10px;height:10px;border-radius:3px;margin-right:5px;vertical-align:-1px;border:1px solid var(--line);background:var(--card)}
.key.chosen::before{border:2px solid var(--chosen);background:var(--chosen-bg)}.key.pruned::before{background:#e6e8eb}
.warnings{margin:6px 0 0;padding-left:18px;color:var(--mid)}
.note{color:var(--muted)}.note.warn{color:var(--bad)}
.muted{color:var(--muted)}
.docs{margin:0;padding-left:0;list-style:none}.docs li{margin:2px 0}.docs p{margin:4px 0 8px 24px;max-width:80em;color:var(--muted)}
.pid{font:11px ui-monospace,SFMono-Regular,Menlo,monospace;color:var(--muted);background:var(--bg);border:1px solid var(--line);border-radius:4px;padding:0 3px}
.tree{position:relative;display:grid;grid-auto-flow:column;grid-auto-columns:minmax(250px,290px);column-gap:40px;align-items:start;overflow-x:auto;padding:2px 2px 12px}
.edges{position:absolute;left:0;top:0;pointer-events:none;overflow:visible;z-index:0}
.edges path{fill:none;stroke:#afb8c1;stroke-width:1.2}.edges path.chosen{stroke:var(--chosen);stroke-width:2.5}.edges path.pruned{stroke:#d8dee4;stroke-dasharray:3 3}
.edges path.hl{stroke:var(--accent);stroke-width:2.5}
.group{margin:0 0 10px}.group-label{font-size:11px;color:var(--muted);margin:0 0 3px}
.node{position:relative;z-index:1;background:var(--card);border:1px solid var(--line);border-radius:8px;padding:7px 9px;margin:0 0 7px}
.node[data-chosen="true"]{border:2px solid var(--chosen);background:var(--chosen-bg)}
.node[data-pruned="true"]{opacity:.55;filter:grayscale(1);background:#f3f4f6}
.node.hl{outline:2px solid var(--accent);outline-offset:1px}
.hide-pruned .node[data-pruned="true"]{display:none}
.node-head{display:flex;gap:6px;align-items:baseline;margin-bottom:3px}
.nid{font:11px ui-monospace,SFMono-Regular,Menlo,monospace;color:var(--muted)}
.ptitle{font-weight:600;overflow:hidden;text-overflow:ellipsis;white-space:nowrap;flex:1;min-width:0}
.badge{font-size:10px;border-radius:8px;padding:0 6px;border:1px solid var(--line);color:var(--muted);white-space:nowrap}
.badge.chosen{background:var(--chosen);border-color:var(--chosen);color:#fff}
.text{margin:3px 0 5px;white-space:pre-wrap;word-break:break-word}
.clean{margin:0 0 5px}
.tag{display:inline-block;font-size:10px;line-height:14px;padding:0 4px;margin:0 1px;border-radius:4px;border:1px solid;vertical-align:1px;white-space:nowrap}
.tag.good{color:var(--good);border-color:#4ac26b;background:#dafbe1}.tag.mid{color:var(--mid);border-color:#d4a72c;background:#fff8c5}
.tag.bad{color:var(--bad);border-color:#ff8182;background:#ffebe9}.tag.info{color:var(--accent);border-color:#54aeff;background:#ddf4ff}
.tag.markup{color:var(--muted);border-color:var(--line);background:var(--bg)}
.bars{display:grid;gap:1px}
.metric{display:grid;grid-template-columns:42px 1fr 44px;align-items:center;gap:6px;font-size:11px}
.mlabel{color:var(--muted);font-size:11px}.mval{font:11px ui-monospace,SFMono-Regular,Menlo,monospace;text-align:right}
.bar{position:relative;display:inline-block;height:7px;background:#eaeef2;border-radius:4px;overflow:hidden;vertical-align:middle}
.bar.none{background:none}
.bar .fill{position:absolute;left:0;top:0;bottom:0;background:var(--accent);border-radius:4px}
.bar.diverging::after{content:"";position:absolute;left:50%;top:0;bottom:0;width:1px;background:#8c959f}
.bar .fill.pos{background:var(--good)}.bar .fill.neg{background:var(--bad)}
.metric.score .fill{background:#8250df}
.foot{margin:4px 0 0;font-size:11px;color:var(--muted)}
.candidates{display:grid;grid-template-columns:repeat(auto-fill,minmax(180px,1fr));gap:10px;align-items:start}
table{border-collapse:collapse;background:var(--card)}td,th{border:1px solid var(--line);padding:4px 8px;text-align:left;vertical-align:top}
th{font-weight:600;color:var(--muted);font-size:12px}td.num{text-align:right;font-variant-numeric:tabular-nums}
.segments td.text{max-width:60em;white-space:pre-wrap}
tr[data-chosen="true"] td{background:var(--chosen-bg);font-weight:600}
`;

// Draws the parent -> child edges over the tree (after layout, again on resize and when pruned
// nodes are hidden), highlights a node's path on hover and hides pruned nodes on request.
const TREE_SCRIPT = `
(function () {
  "use strict";
  var tree = document.querySelector(".tree");
  if (!tree) return;
  var svg = tree.querySelector("svg.edges");
  var NS = "http://www.w3.org/2000/svg";
  function nodeById(id) { return tree.querySelector('.node[data-node-id="' + id + '"]'); }
  function visible(el) { return el !== null && el.offsetParent !== null; }
  function draw() {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    svg.setAttribute("width", String(tree.scrollWidth));
    svg.setAttribute("height", String(tree.scrollHeight));
    var box = tree.getBoundingClientRect();
    var children = tree.querySelectorAll(".node[data-parent-id]");
    for (var i = 0; i < children.length; i++) {
      var child = children[i];
      var parent = nodeById(child.getAttribute("data-parent-id"));
      if (!visible(child) || !visible(parent)) continue;
      var a = parent.getBoundingClientRect(), b = child.getBoundingClientRect();
      var x1 = a.right - box.left + tree.scrollLeft, y1 = a.top + Math.min(a.height / 2, 22) - box.top + tree.scrollTop;
      var x2 = b.left - box.left + tree.scrollLeft, y2 = b.top + Math.min(b.height / 2, 22) - box.top + tree.scrollTop;
      var mid = (x1 + x2) / 2;
      var path = document.createElementNS(NS, "path");
      path.setAttribute("d", "M" + x1 + " " + y1 + "C" + mid + " " + y1 + " " + mid + " " + y2 + " " + x2 + " " + y2);
      path.setAttribute("data-edge", child.getAttribute("data-parent-id") + "-" + child.getAttribute("data-node-id"));
      var cls = child.getAttribute("data-chosen") === "true" ? "chosen" : child.getAttribute("data-pruned") === "true" ? "pruned" : "";
      if (cls) path.setAttribute("class", cls);
      svg.appendChild(path);
    }
  }
  function highlight(node, on) {
    for (var n = node; n !== null; n = n.hasAttribute("data-parent-id") ? nodeById(n.getAttribute("data-parent-id")) : null) {
      n.classList.toggle("hl", on);
      var edge = n.hasAttribute("data-parent-id") ? svg.querySelector('path[data-edge="' + n.getAttribute("data-parent-id") + "-" + n.getAttribute("data-node-id") + '"]') : null;
      if (edge) edge.classList.toggle("hl", on);
    }
  }
  tree.addEventListener("mouseover", function (e) { var n = e.target.closest(".node"); if (n) highlight(n, true); });
  tree.addEventListener("mouseout", function (e) { var n = e.target.closest(".node"); if (n) highlight(n, false); });
  var toggle = document.getElementById("show-pruned");
  if (toggle) toggle.addEventListener("change", function () { document.body.classList.toggle("hide-pruned", !toggle.checked); draw(); });
  window.addEventListener("resize", draw);
  draw();
  document.documentElement.setAttribute("data-edges-drawn", "true");
})();
`;
