import type {Passage} from "./prompts.js";
import type {RetrievalDecision} from "./RetrievalDecision.js";
import type {CritiqueScore} from "./SegmentScorer.js";

/** A short-form candidate as it is scored (one per passage, or one without retrieval). */
export interface CandidateEvent {
    type: "candidate";
    /** Index in the answer's `candidates`. */
    index: number;
    passage?: Passage;
    text: string;
    answer: string;
    critique: CritiqueScore;
    stopReason: string;
}

/** A long-form segment as it is scored (every child of the search, kept in the beam or not). */
export interface SegmentEvent {
    type: "segment";
    node: number;
    parent: number;
    depth: number;
    passage?: Passage;
    text: string;
    critique?: CritiqueScore;
    /** Path score (product of the candidate scores). */
    score: number;
    asksRetrieval: boolean;
    stopReason: string;
}

export interface RetrievalEvent {
    type: "retrieval";
    retrieve: RetrievalDecision;
}

/** What a flow reports while it runs, in order: the retrieval decision, then candidates or segments. */
export type AnswerEvent = RetrievalEvent | CandidateEvent | SegmentEvent;

/** Per-question controls: cancellation and progress events. */
export interface RunControl {
    /** Aborting cancels the question's work at the next decode step and frees its slots. */
    signal?: AbortSignal;
    onEvent?: (event: AnswerEvent) => void;
    /** Called once the question holds its slots (it waited in the slot pool until then). */
    onStart?: () => void;
}
