import {runExpansionPlans, type ExpansionPlan, type ForkingSegmentSource} from "./ForkingSegmentSource.js";
import type {NativeSegment} from "../engine/types.js";
import type {CritiqueScore, CritiqueWeights, SegmentScorer} from "./SegmentScorer.js";
import type {SelfRagModel} from "../SelfRagModel.js";
import type {SegmentSource} from "./TreeSearch.js";

type PlanResult = {segments: NativeSegment[], critiques: CritiqueScore[]};

/**
 * Lets concurrent tree searches (one per question) share decode calls: a search's expand waits
 * until every search still running has asked for its next depth, then all their plans run as one
 * batch (runExpansionPlans). A search that ends or fails stops taking part, so the others never
 * wait for it.
 */
export class ExpansionRendezvous {
    private running: number;
    private waiting: {plan: ExpansionPlan, resolve: (r: PlanResult) => void, reject: (e: unknown) => void}[] = [];

    public constructor(private readonly model: SelfRagModel, private readonly scorer: SegmentScorer,
        private readonly options: {threshold: number, weights?: CritiqueWeights}, searches: number) {
        this.running = searches;
    }

    /** The source one search uses: its own slots and nodes, the wave's decode calls. */
    public source(base: ForkingSegmentSource): SegmentSource {
        return {
            expand: async (requests) => {
                const plan = base.plan(requests);
                return plan.finish(await this.submit(plan));
            },
            discard: (nodes) => base.discard(nodes),
            cannotExpand: (node, passages) => base.cannotExpand(node, passages)
        };
    }

    /** A search finished or failed. */
    public searchEnded(): void {
        this.running--;
        this.flushIfReady();
    }

    private submit(plan: ExpansionPlan): Promise<PlanResult> {
        return new Promise((resolve, reject) => {
            this.waiting.push({plan, resolve, reject});
            this.flushIfReady();
        });
    }

    private flushIfReady(): void {
        if (this.waiting.length === 0 || this.waiting.length < this.running) return;
        const batch = this.waiting.splice(0);
        runExpansionPlans(this.model, this.scorer, batch.map((w) => w.plan), this.options).then(
            (results) => batch.forEach((w, i) => w.resolve(results[i])),
            (error: unknown) => batch.forEach((w) => w.reject(error)));
    }
}
