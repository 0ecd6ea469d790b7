#!/usr/bin/env python3
"""Computes the reference-profile facts of test/44.selfrag.reference-profile.test.ts by running the
released Self-RAG scripts' own functions (AkariAsai/self-rag, retrieval_lm/) on scripted inputs.

    python3 test/reference/make_facts.py /path/to/self-rag/retrieval_lm > test/reference/facts.json

Only numpy is needed: the functions are taken out of the scripts with `ast` and run with a fake
vLLM model that serves scripted generations, so vllm, torch and spacy need not be installed. Not
run by the tests; its output is committed."""
import ast, hashlib, json, random, re, sys, types
import numpy as np

SRC = sys.argv[1]

def functions(path, names, env):
    tree = ast.parse(open(f"{SRC}/{path}").read())
    module = ast.Module(body=[n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in names], type_ignores=[])
    exec(compile(module, path, "exec"), env)
    return env

sys.modules["jsonlines"] = types.ModuleType("jsonlines")
sys.path.insert(0, SRC)
import utils  # noqa: E402  (PROMPT_DICT, TASK_INST, control_tokens, postprocess, fix_spacing)

class SamplingParams:
    def __init__(self, **kw): self.max_tokens = kw.get("max_tokens", 16)

env = {"np": np, "SamplingParams": SamplingParams, "control_tokens": utils.control_tokens, "TASK_INST": utils.TASK_INST,
       "PROMPT_DICT": utils.PROMPT_DICT}
functions("run_short_form.py", {"postprocess_answer_option_conditioned", "call_model_rerank_w_scores_batch", "preprocess_input_data",
                                "process_data_evidences"}, env)
lenv = {"np": np, "SamplingParams": SamplingParams, "postprocess": utils.postprocess, "fix_spacing": utils.fix_spacing,
        "print": lambda *a, **k: None}  # run_step_generation_batch prints to stdout
functions("run_long_form_static.py", {"run_step_generation_batch", "call_model_beam_batch"}, lenv)

# Reflection tokens in selfrag's R order, with synthetic ids 32000 + index; EOS is id 2, "</s>".
R = ["[No Retrieval]", "[Retrieval]", "[Continue to Use Evidence]", "[Irrelevant]", "[Relevant]", "<paragraph>", "</paragraph>",
     "[Utility:1]", "[Utility:2]", "[Utility:3]", "[Utility:4]", "[Utility:5]", "[Fully supported]", "[Partially supported]",
     "[No support / Contradictory]"]
RID = {t: 32000 + i for i, t in enumerate(R)}
WORDS = [" Paris", " is", " big", ".", "It", " the", " capital", " Curie", " won", " prizes", "!", " yes", "?", "Berlin", " 1867",
         " REFUTES", " SUPPORTS", " true", "\n", "#", ":"]
WID = {w: 1000 + i for i, w in enumerate(WORDS)}
TEXT = {**{v: k for k, v in RID.items()}, **{v: k for k, v in WID.items()}, 2: "</s>"}

def f32(x): return float(str(np.float32(x)))  # a float32 value, written shortest (JSON round-trips it into a Float32Array)

def scripted(prompt, style):
    """A deterministic generation for a context string: tokens, per-position reflection log-probs."""
    rng = random.Random(hashlib.md5((style + "|" + prompt).encode()).hexdigest())
    toks = []
    if rng.random() < 0.8: toks.append(RID[rng.choice(["[Relevant]", "[Irrelevant]"])])
    sentences = [[" Paris", " is", " big", "."], [" Curie", " won", " prizes", "."], ["It", " is", " the", " capital"],
                 [" Paris", ".", "It", " is", " big"], [" yes", "!"], [" Berlin" if False else "Berlin", " 1867"]]
    for _ in range(rng.choice([1, 1, 2])):
        toks += [WID[w] for w in rng.choice(sentences)]
        r = rng.random()
        if r < 0.45: toks.append(RID[rng.choice(["[Fully supported]", "[Partially supported]", "[No support / Contradictory]"])])
        r = rng.random()
        if r < 0.35: toks.append(RID["[Retrieval]"])
        elif r < 0.55: toks.append(RID["[No Retrieval]"])
        elif r < 0.62: toks.append(RID["[Continue to Use Evidence]"])
    if rng.random() < 0.5: toks.append(RID["[Utility:%d]" % rng.randint(1, 5)])
    if rng.random() < 0.6: toks.append(2)
    if rng.random() < 0.06: toks = [2]
    rows, lps = [], []
    for t in toks:
        row = [f32(rng.uniform(-9, -0.05)) for _ in R]
        if t in RID.values(): lp = row[t - 32000]
        else: lp = f32(rng.uniform(-3, -0.01))
        rows.append(row); lps.append(lp)
    return toks, rows, lps

class Output:
    def __init__(self, toks, rows, lps, n):
        toks, rows, lps = toks[:n], rows[:n], lps[:n]
        self.token_ids = toks
        self.text = "".join(TEXT[t] for t in toks)
        self.logprobs = []
        for t, row, lp in zip(toks, rows, lps):
            d = {RID[name]: row[i] for i, name in enumerate(R)}
            d[t] = lp
            self.logprobs.append(d)
        self.cumulative_logprob = float(sum(lps))

class FakeModel:
    def __init__(self, style): self.style, self.served = style, {}
    def generate(self, prompts, params):
        outs = []
        for p in prompts:
            toks, rows, lps = scripted(p, self.style)
            self.served[p] = {"tokens": toks, "reflection": rows, "logprobs": lps, "text": "".join(TEXT[t] for t in toks)}
            o = types.SimpleNamespace(outputs=[Output(toks, rows, lps, params.max_tokens)])
            outs.append(o)
        return outs

def alce(final_pred, intermediate):
    """run_long_form_static.py main(), the asqa / eli5 branch, verbatim for one item."""
    item = {}
    final_output = ""; docs = []; prev_gen = []
    if "splitted_sentences" not in intermediate:
        item["output"] = utils.postprocess(final_pred)
    else:
        if len(utils.postprocess(final_pred[0])) == 0:
            intermediate["splitted_sentences"][0], intermediate["ctxs"][0] = intermediate["splitted_sentences"][1], intermediate["ctxs"][1]
        for idx, (sent, doc) in enumerate(zip(intermediate["splitted_sentences"][0], intermediate["ctxs"][0])):
            if len(sent) == 0: continue
            postprocessed_result = utils.postprocess(sent)
            if postprocessed_result in prev_gen: continue
            else: prev_gen.append(postprocessed_result)
            final_output += postprocessed_result[:-1] + " [{}]".format(idx) + ". "
            docs.append(doc)
        if len(final_output) == 0: item["output"] = utils.fix_spacing(final_output)
        if len(final_output) > 0 and final_output[-1] == " ": final_output = final_output[:-1]
        item["output"] = utils.fix_spacing(final_output)
        item["output"] = item["output"].replace(".[Continue to Use Evidence]", " [1]. ")
        item["output"] = item["output"].replace(". [1] ", " [1]. ")
    item["docs"] = docs
    return item

def long_case(name, task, question, ndocs, beam, depth, mode, threshold, grounding, ignore_cont, max_new):
    ctxs = [{"title": "T%d" % i, "text": "passage %d about Paris" % i} for i in range(ndocs)]
    prompt = (utils.TASK_INST[task] + "## Input:\n\n" + question) if task in ("asqa", "eli5") else question
    processed = utils.PROMPT_DICT["prompt_no_input"].format_map({"instruction": prompt})
    model = FakeModel(name)
    ret = {t: RID[t] for t in utils.retrieval_tokens_names}
    rel = {t: RID[t] for t in ["[Irrelevant]", "[Relevant]"]}
    grd = {t: RID[t] for t in utils.ground_tokens_names} if grounding else None
    ut = {t: RID[t] for t in utils.utility_tokens_names} if grounding else None
    final_pred, inter = lenv["call_model_beam_batch"](processed, model=model, max_new_tokens=max_new, ctxs=ctxs, query=prompt,
        rel_tokens=rel, ret_tokens=ret, grd_tokens=grd, ut_tokens=ut, use_seqscore=True, threshold=threshold, beam_width=beam,
        max_depth=depth, w_rel=1.0, w_sup=1.0, w_use=0.5, mode=mode, ignore_cont=ignore_cont)
    out = {"name": name, "task": task, "question": question, "prompt": processed, "ndocs": ndocs, "beamWidth": beam, "maxDepth": depth,
           "mode": {"always_retrieve": "always", "adaptive_retrieval": "adaptive"}[mode], "threshold": threshold, "grounding": grounding,
           "ignoreCont": ignore_cont, "maxNewTokens": max_new, "passages": ctxs, "served": model.served}
    if "prediction_tree" not in inter:
        out.update({"retrieve": False, "noRetrievalText": final_pred})
        if task in ("asqa", "eli5"): out["alce"] = alce(final_pred, inter)
        return out
    tree = inter["prediction_tree"]
    out["retrieve"] = True
    out["tree"] = [{"id": k, "prompt": v["prompt"], "pred": v["pred"], "processedPred": v["processed_pred"], "score": v["score"],
                    "parent": v["parent"], "ctx": None if v["ctx"] is None else ctxs.index(v["ctx"])} for k, v in sorted(tree.items())]
    out["paths"] = [{"nodes": [n for n in inter["best_selections"][i] if n is not None], "sentences": inter["splitted_sentences"][i],
                     "originals": inter["original_splitted_sentences"][i]} for i in sorted(inter["best_selections"])]
    out["finalPrediction0"] = final_pred[0]
    if task in ("asqa", "eli5"):
        item = alce(final_pred, {k: v for k, v in inter.items()})
        out["alce"] = {"output": item["output"], "docs": [None if d is None else ctxs.index(d) for d in item["docs"]]}
    else:
        out["factscore"] = utils.fix_spacing(utils.postprocess(final_pred[0]))
    return out

def short_case(name, task, evidences, mode, threshold, closed, use_flags, max_new=15):
    model = FakeModel(name)
    prompt = utils.PROMPT_DICT["prompt_no_input"].format_map({"instruction": "Q?"})
    ret = {t: RID[t] for t in utils.retrieval_tokens_names}
    rel = {t: RID[t] for t in ["[Irrelevant]", "[Relevant]"]}
    grd = {t: RID[t] for t in utils.ground_tokens_names} if use_flags else None
    ut = {t: RID[t] for t in utils.utility_tokens_names} if use_flags else None
    pred, results, do = env["call_model_rerank_w_scores_batch"](prompt, evidences, model, max_new_tokens=max_new, ret_tokens=ret,
        rel_tokens=rel, grd_tokens=grd, ut_tokens=ut, use_seqscore=use_flags, threshold=threshold, w_rel=1.0, w_sup=1.0, w_use=1.0,
        mode=mode, closed=closed)
    return {"name": name, "task": task, "mode": mode, "threshold": threshold, "closed": closed, "useFlags": use_flags, "maxNewTokens": max_new,
            "prompt": prompt, "passages": evidences, "served": model.served, "pred": pred, "retrieve": do,
            "scores": {k: v["score"] for k, v in results.items() if k != "no_retrieval"}}

facts = {"postprocess": {}, "postprocessLong": {}, "fixSpacing": {}, "prompts": [], "long": [], "short": []}
for s in [" Paris", "[Continue to Use Evidence]Paris", "Paris<pad>", "[Fully [Retrieval]supported]", "[Relevant] Paris[Fully supported][Utility:5]</s>",
          "a\nb</s><|endoftext|>", "SUPPORTS", " true", "[No Retrieval] London[Utility:4]"]:
    facts["postprocess"][s] = env["postprocess_answer_option_conditioned"](s)
    facts["postprocessLong"][s] = utils.postprocess(s)
for s in ["Paris.It is", "Done!Next?Yes", "1.5 and a.b", "Paris. It", "é.Ü"]:
    facts["fixSpacing"][s] = utils.fix_spacing(s)
arc5 = {"question": "Which?", "choices": {"text": ["a", "b", "c", "d", "e"], "label": ["A", "B", "C", "D", "E"]}, "answerKey": "E"}
arcnum = {"question": "Which?", "choices": {"text": ["a", "b", "c", "d"], "label": ["1", "2", "3", "4"]}, "answerKey": "1"}
arc3 = {"question": "Which?", "choices": {"text": ["a", "b", "c"], "label": ["A", "B", "C"]}, "answerKey": "C"}
for task, rec in [("arc_c", arc5), ("arc_c", arcnum), ("arc_c", arc3), ("arc_easy", {"question": "Q?", "answers": ["x"]}),
                  ("obqa", {"question": "Q?", "answers": ["x"]}), ("fever", {"question": "Claim."}), ("asqa", {"question": "Who?"}),
                  (None, {"question": "Who?"})]:
    item = env["preprocess_input_data"]([json.loads(json.dumps(rec))], task=task)[0]
    facts["prompts"].append({"task": task or "none", "record": rec, "prompt": utils.PROMPT_DICT["prompt_no_input"].format_map(item),
                             "answers": item.get("answers")})
facts["longPrompts"] = [{"task": "asqa", "question": "Who?", "prompt": utils.PROMPT_DICT["prompt_no_input"].format_map(
    {"instruction": utils.TASK_INST["asqa"] + "## Input:\n\n" + "Who?"})}]
cases = [("l1", "asqa", 3, 2, 4, "always_retrieve", 0.2, True, False, 12), ("l2", "asqa", 2, 2, 5, "always_retrieve", 0.2, True, True, 14),
         ("l3", "factscore", 3, 2, 4, "always_retrieve", 0.2, True, False, 12), ("l4", "asqa", 3, 2, 4, "adaptive_retrieval", 0.2, True, False, 12),
         ("l5", "asqa", 2, 1, 4, "always_retrieve", 0.5, False, False, 10), ("l6", "factscore", 3, 3, 3, "always_retrieve", 0.0, True, False, 16)]
for i in range(7, 23):
    rng = random.Random(i)
    cases.append(("l%d" % i, rng.choice(["asqa", "factscore"]), rng.randint(1, 3), rng.randint(1, 3), rng.randint(2, 5),
                  rng.choice(["always_retrieve", "adaptive_retrieval"]), rng.choice([0.0, 0.2, 0.5]), rng.random() < 0.7,
                  rng.random() < 0.3, rng.randint(4, 16)))
for (name, task, ndocs, beam, depth, mode, thr, grd, ign, mnt) in cases:
    try:
        facts["long"].append(long_case(name, task, "Tell me about Paris.", ndocs, beam, depth, mode, thr, grd, ign, mnt))
    except Exception as e:  # the script crashes on some inputs (no path 1, FactScore without retrieval): not a fact
        print(f"{name}: the script raised {type(e).__name__}: {e}", file=sys.stderr)
ev = [{"title": "T%d" % i, "text": "text %d" % i} for i in range(4)]
for i in range(10):
    rng = random.Random(100 + i)
    try:
        facts["short"].append(short_case("s%d" % i, "none", ev[:rng.randint(2, 4)], rng.choice(["always_retrieve", "adaptive_retrieval"]),
                                         0.2, rng.random() < 0.5, rng.random() < 0.6))
    except Exception as e:
        print(f"s{i}: the script raised {type(e).__name__}: {e}", file=sys.stderr)
facts["vocab"] = {str(k): v for k, v in TEXT.items()}
facts["reflectionIds"] = [RID[t] for t in R]
json.dump(facts, sys.stdout, separators=(",", ":"))
