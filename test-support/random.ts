export {mulberry32} from "../lib/random.js";
