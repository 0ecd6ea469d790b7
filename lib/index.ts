export {SelfRagModel, type SelfRagModelOptions, type InspectResult} from "./SelfRagModel.js";
export {DecodingContext} from "./DecodingContext.js";
export {ReflectionTokens, REFLECTION_TOKENS, REFLECTION_COUNT, R, type ReflectionGroup, type ReflectionTokenText} from "./ReflectionTokens.js";
export {SelfRagError, type SelfRagErrorCode} from "./errors.js";
export {extractReflectionLogprobs, type ExtractedRows} from "./ReflectionKernel.js";
export {retrievalProbability, logAddExp} from "./scoring.js";
export {writeFixtureModel, type FixtureKind} from "./fixtures/FixtureModel.js";
export {loadAddon, type GpuOption} from "./native/addon.js";
