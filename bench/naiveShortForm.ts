// The naive peer lives in the package (lib/bench/NaivePeer.ts), shared with `selfrag bench`.
export {naiveAnswer, naiveInput, type NaiveAnswer, type NaiveCandidate, type NaiveOptions} from "../lib/bench/NaivePeer.js";
