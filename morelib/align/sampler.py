"""Sampling backends of RJS (paper §5.4's sampling step): transformers' `generate` (`rjs.generate`), CTranslate2 on
the converted HF folder (int8 or fp32 CPU kernels), vLLM on a GPU; `sample` picks one by `rjs.backend`.

HF generate is the CPU default: on SmolLM2-135M (this AMD CPU, under load) CTranslate2 measured slower per CPU-second
than HF (int8 0.71×, fp32 0.50×; benchmarks/sampling_backends.py, benchmarks/README.md §12), likely because its wheel
uses Intel MKL only on Intel CPUs. A conversion is made once per (policy folder, CTranslate2 version, compute type):
the registry policies' under `$MORE_CACHE_DIR/ct2/`, a fine-tuned policy's inside its own folder (deleted with it).
Prompts are tokenised by the policy's own tokenizer (`rjs.format_prompt`, no special tokens added) and the new token
ids decoded by it (`rjs.clean_response`), as on the HF path; generation stops at the tokenizer's EOS, which is not
returned, or after max_new_tokens.
Checked in tests/test_sampler.py: greedy token ids equal HF's greedy ids (tiny-random and SmolLM2, fp32), the
tokenizer round trip of SmolLM2's greedy text, max_new_tokens respected, EOS stops a response, seeded sampling is
reproducible, n per prompt.
# NOTE(ref): the HF path seeds batch b with seed + b; CTranslate2 has one global seed per call, so the two backends
# draw different (equally distributed) samples for the same seed.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import ctranslate2
import torch
from ctranslate2.converters import TransformersConverter
from transformers import AutoTokenizer, LlamaForCausalLM, PreTrainedTokenizerBase

from morelib.align import rjs
from morelib.backbone import model as rm_model
from morelib.core.config import RJSConfig
from morelib.core.errors import ConfigError, ModelError

REGISTRY_POLICIES = ("smollm2-135m", "tiny-random")  # policy names that are not folders


def hf_folder(policy: str | Path) -> Path:
    """The HF causal-LM folder of a policy: the dequantised SmolLM2 cache, tiny-random saved once, or the folder."""
    name = str(policy)
    if name == "smollm2-135m":
        return rjs.policy_folder(name)
    if name == "tiny-random":
        folder = rm_model.cache_root() / "models" / "tiny-random-causal"
        if not (folder / "config.json").is_file():
            model, tok = rm_model.tiny_random(LlamaForCausalLM)
            tok.bos_token = tok.eos_token  # the tiny config's bos id is its eos id; CTranslate2 needs a bos string
            tmp = folder.with_name(folder.name + ".tmp")
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            tmp.replace(folder)
        return folder
    folder = Path(name).expanduser()
    if not (folder / "config.json").is_file():
        raise ModelError(f"policy '{name}' is not smollm2-135m, tiny-random or an HF folder with a config.json")
    return folder


def ct2_folder(policy: str | Path, compute_type: str) -> Path:
    """The CTranslate2 conversion of a policy (weights stored as `compute_type`), converted on first use (atomic)."""
    source = hf_folder(policy)
    tag = f"ct2-{ctranslate2.__version__}-{compute_type}"
    name = str(policy)
    target = (rm_model.cache_root() / "ct2" / f"{name}-{tag}") if name in REGISTRY_POLICIES else source / tag
    if (target / "model.bin").is_file():
        return target
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    quantization = None if compute_type == "float32" else compute_type
    TransformersConverter(str(source), low_cpu_mem_usage=True).convert(str(tmp), quantization=quantization)
    conf = json.loads((tmp / "config.json").read_text())
    if conf.get("bos_token") is None:  # CTranslate2 cannot load a null bos; generation never uses it here
        conf["bos_token"] = conf["eos_token"]
        (tmp / "config.json").write_text(json.dumps(conf, indent=2))
    tmp.replace(target)
    return target


def load_tokenizer(policy: str | Path) -> PreTrainedTokenizerBase:
    """The policy's tokenizer with a pad token (eos when it has none), as `rjs.load_causal_lm` sets it."""
    tok = AutoTokenizer.from_pretrained(hf_folder(policy))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def generate_ct2(
    folder: str | Path,
    tok: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    n: int = 4,
    max_new_tokens: int = 48,
    temperature: float = 0.8,
    top_p: float = 0.95,
    batch_size: int = 16,
    seed: int = 0,
    compute_type: str = "int8",
    threads: int | None = None,
    max_prompt_tokens: int | None = None,
) -> list[list[str]]:
    """n sampled responses per prompt with CTranslate2, list[P][n] of str (length-sorted batches of batch_size);
    prompts keep their last max_prompt_tokens tokens (None: all).

    temperature 0 means greedy decoding (then the n responses are equal).
    """
    ids = generate_ct2_ids(
        folder,
        tok,
        prompts,
        n,
        max_new_tokens,
        temperature,
        top_p,
        batch_size,
        seed,
        compute_type,
        threads,
        max_prompt_tokens=max_prompt_tokens,
    )
    return [[rjs.clean_response(tok.decode(seq, skip_special_tokens=True)) for seq in row] for row in ids]


def generate_ct2_ids(
    folder: str | Path,
    tok: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    n: int,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    batch_size: int,
    seed: int,
    compute_type: str,
    threads: int | None = None,
    min_new_tokens: int = 0,
    max_prompt_tokens: int | None = None,
) -> list[list[list[int]]]:
    """New token ids [P][n][≤ max_new_tokens] (EOS not included) of n samples per prompt with CTranslate2."""
    if n < 1 or batch_size < 1 or max_new_tokens < 1:
        raise ValueError(f"generate needs n, batch_size, max_new_tokens ≥ 1; got {n}, {batch_size}, {max_new_tokens}")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    generator = ctranslate2.Generator(
        str(folder), device=device, compute_type=compute_type, intra_threads=threads or torch.get_num_threads()
    )
    ids = rjs.prompt_ids(tok, prompts, max_prompt_tokens)
    starts = [tok.convert_ids_to_tokens(row) for row in ids for _ in range(n)]
    sampling = (
        {"sampling_topk": 0, "sampling_topp": top_p, "sampling_temperature": temperature} if temperature > 0 else {}
    )
    ctranslate2.set_random_seed(seed)
    results = generator.generate_batch(
        starts,
        max_batch_size=batch_size,
        max_length=max_new_tokens,
        min_length=min_new_tokens,
        include_prompt_in_result=False,
        end_token=tok.eos_token,
        **sampling,
    )
    flat = [r.sequences_ids[0] for r in results]
    return [flat[i * n : (i + 1) * n] for i in range(len(prompts))]


def vllm_available() -> bool:
    """True when vLLM is importable and a CUDA GPU is present."""
    return torch.cuda.is_available() and importlib.util.find_spec("vllm") is not None


def generate_vllm(
    policy_path: str | Path,
    prompts: Sequence[str],
    n: int,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    seed: int,
    max_prompt_tokens: int | None = None,
) -> list[list[str]]:
    """n responses per prompt with vLLM (GPU only; untested on the CPU machine), list[P][n] of str; prompts keep
    their last max_prompt_tokens tokens (None: all)."""
    from vllm import LLM, SamplingParams  # noqa: PLC0415  (optional GPU dependency, absent on the CPU machine)

    llm = LLM(model=str(policy_path), seed=seed)
    tok = llm.get_tokenizer()
    params = SamplingParams(
        n=n,
        temperature=temperature,
        top_p=top_p,
        max_tokens=max_new_tokens,
        seed=seed,
        truncate_prompt_tokens=max_prompt_tokens,
    )
    outputs = llm.generate([rjs.format_prompt(tok, p) for p in prompts], params)
    return [[rjs.clean_response(c.text) for c in o.outputs] for o in outputs]


def backend_for(cfg: RJSConfig) -> str:
    """The backend `sample` uses: rjs.backend, with auto = vLLM on a GPU when importable, else HF (measured fastest on
    this CPU)."""
    if cfg.backend == "vllm" and not vllm_available():
        raise ConfigError("rjs.backend 'vllm' needs the vllm package and a CUDA GPU; use 'auto', 'ct2' or 'hf' here")
    if cfg.backend != "auto":
        return cfg.backend
    return "vllm" if vllm_available() else "hf"


def sample(
    policy_name: str | Path,
    prompts: Sequence[str],
    cfg: RJSConfig,
    seed: int,
    n: int | None = None,
    progress: bool = True,
) -> list[list[str]]:
    """Responses list[P][n] (n = cfg.n_samples by default) from a policy by name or folder, on `backend_for(cfg)`."""
    n = cfg.n_samples if n is None else n
    backend = backend_for(cfg)
    if backend == "vllm":
        return generate_vllm(
            hf_folder(policy_name),
            prompts,
            n,
            cfg.max_new_tokens,
            cfg.temperature,
            cfg.top_p,
            seed,
            cfg.prompt_tokens,
        )
    common = {
        "max_new_tokens": cfg.max_new_tokens,
        "temperature": cfg.temperature,
        "top_p": cfg.top_p,
        "batch_size": cfg.gen_batch_size,
        "seed": seed,
        "max_prompt_tokens": cfg.prompt_tokens,
    }
    if backend == "ct2":
        folder, tok = ct2_folder(policy_name, cfg.ct2_compute_type), load_tokenizer(policy_name)
        return generate_ct2(folder, tok, prompts, n, compute_type=cfg.ct2_compute_type, **common)
    policy, tok = rjs.load_causal_lm(policy_name, cfg.dtype)
    return rjs.generate(policy, tok, prompts, n, progress=progress, **common)
