"""Hugging Face transformers decode baseline (issue #12): a Llama-3.1-8B-shaped model.

What it measures
    Batch-1 (``--batch``) greedy decoding of a LlamaForCausalLM built from a LlamaConfig with the
    Llama-3.1-8B shapes (hidden 4096, MLP 14336, 32 layers, 32 query / 8 KV heads, head_dim 128,
    vocab 128256, rope_theta 500000) and random weights (normal, std 0.02; norms 1), in bf16, with
    SDPA attention, a transformers ``StaticCache`` and ``torch.compile(mode="reduce-overhead")``
    (CUDA graphs), at each context in ``--contexts``. Nothing is downloaded: no tokenizer, no
    checkpoint. Random weights do not change the work a decode step does, only its outputs.

How
    For each context C: a fresh StaticCache of C + warmup + steps slots is filled by an eager
    prefill of C random token ids in chunks of ``--prefill-chunk`` (timed separately, reported as
    prefill tokens/s; one untimed chunk runs first to warm cuBLAS). Then a single-token step
    function (forward + argmax, the next id fed back, position advancing on the device) is
    compiled; ``--warmup`` untimed steps cover compilation and CUDA-graph capture; then
    ``--steps`` steps are timed with CUDA events around each step (median reported) and with a
    wall clock around the whole loop. The first compiled step is compared with an eager step at
    the same position (max |logit difference|, argmax equality), and afterwards every cache slot
    is checked to have been written (catches a graph that replays a stale position).

    The floor of a step is the bytes it must read (all weights except the embedding table, of
    which one row is read, plus the K/V cache at C tokens) divided by the device-to-device copy
    bandwidth measured in this run (a ``--copy-gib`` tensor copy: bytes read + written / time).
    ``fraction_of_floor`` = floor / measured median. Note that HF's SDPA over a StaticCache
    attends over all allocated slots (masked), so it reads C + warmup + steps slots, a little
    more than the floor counts.

    If compilation fails, the run falls back (fullgraph -> graphs breaks allowed -> eager), says
    so loudly on stderr, and records ``mode`` and the errors in the JSON: never silently.

Transformers API
    Written against transformers 5.x, whose decode API changed inside 5.x: 5.0 takes
    ``past_key_values=`` and ``cache_position=``; later 5.x takes ``cache=`` and the StaticCache
    keeps its own length (``cumulative_length``). The script reads the forward signature and uses
    whichever it finds; ``StaticCache(config=..., max_cache_len=...)`` is the 5.x constructor
    (device, dtype and batch come from the first update). Anything else stops with a clear error.

Usage (GPU)
    python3 bench/cuda/hf_baseline.py --contexts 4096,32768 --steps 64 --json hf.json

Smoke check without a GPU (a tiny model on the CPU, a few seconds plus compile time)
    python3 bench/cuda/hf_baseline.py --device cpu --dtype fp32 --layers 2 --hidden 256 \
        --intermediate 512 --heads 4 --kv-heads 2 --head-dim 64 --vocab 1000 \
        --contexts 64,128 --prefill-chunk 32 --steps 8 --warmup 3 --copy-gib 0.0625 \
        --json /tmp/s.json
    It must print one table row per context with mode "compiled-fullgraph" (or a loud fallback),
    ``argmax_match`` true and ``cache_slots_written`` 1.0. ``--compile none`` checks the eager path.
"""

from __future__ import annotations

import argparse
import gc
import inspect
import json
import platform
import statistics
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable

import torch

try:
    import transformers
    from transformers import LlamaConfig, LlamaForCausalLM, StaticCache
except ImportError as exc:  # pragma: no cover - depends on the machine
    sys.exit(f"hf_baseline: transformers is needed ({exc})")

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def log(msg: str) -> None:
    """Progress goes to stderr so that stdout holds only the result table."""
    print(f"[hf_baseline {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def loud(msg: str) -> None:
    bar = "!" * 78
    print(f"{bar}\n!! {msg}\n{bar}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--contexts", default="4096,32768", help="comma-separated context lengths")
    p.add_argument("--steps", type=int, default=64, help="timed decode steps per context")
    p.add_argument("--warmup", type=int, default=6, help="untimed compiled steps (compile+capture)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--layers", type=int, default=32)
    p.add_argument("--hidden", type=int, default=4096)
    p.add_argument("--intermediate", type=int, default=14336)
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--kv-heads", type=int, default=8)
    p.add_argument("--head-dim", type=int, default=128)
    p.add_argument("--vocab", type=int, default=128256)
    p.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    p.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (cpu: smoke test only)")
    p.add_argument("--prefill-chunk", type=int, default=2048)
    p.add_argument("--compile", dest="compile_mode", default="reduce-overhead",
                   help="torch.compile mode, or 'none' for eager decoding")
    p.add_argument("--no-fullgraph", action="store_true", help="skip the fullgraph=True attempt")
    p.add_argument("--copy-gib", type=float, default=2.0, help="size of the bandwidth copy")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", dest="json_path", default=None, help="write the results here")
    a = p.parse_args(argv)
    try:
        a.contexts = [int(c) for c in a.contexts.split(",") if c.strip()]
    except ValueError:
        p.error(f"--contexts: expected comma-separated integers, got {a.contexts!r}")
    for name in ("steps", "warmup", "batch", "layers", "prefill_chunk"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')}: expected >= 1, got {getattr(a, name)}")
    if not a.contexts or min(a.contexts) < 1:
        p.error(f"--contexts: expected positive lengths, got {a.contexts}")
    if a.heads % a.kv_heads:
        p.error(f"--heads {a.heads} must be a multiple of --kv-heads {a.kv_heads}")
    return a


# ----------------------------------------------------------------------------- timing helpers


class Stopwatch:
    """Times device work: CUDA events on a GPU, perf_counter (after the work) on the CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def mark(self) -> Any:
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            return ev
        return time.perf_counter()

    def elapsed_ms(self, a: Any, b: Any) -> float:
        """Milliseconds between two marks; on a GPU the caller must have synchronised."""
        if self.cuda:
            return a.elapsed_time(b)
        return (b - a) * 1000.0


def copy_bandwidth(device: torch.device, gib: float, reps: int = 10) -> float:
    """Device-to-device copy bandwidth in bytes/s: (read + written bytes) / median time."""
    n = int(gib * (1 << 30))
    src = torch.empty(n, dtype=torch.uint8, device=device).fill_(0x5A)
    dst = torch.empty_like(src)
    sw = Stopwatch(device)
    for _ in range(2):
        dst.copy_(src)
    sw.sync()
    times = []
    for _ in range(reps):
        a = sw.mark()
        dst.copy_(src)
        b = sw.mark()
        sw.sync()
        times.append(sw.elapsed_ms(a, b))
    del src, dst
    return 2.0 * n / (statistics.median(times) / 1000.0)


# ----------------------------------------------------------------------------- model and API


@dataclass
class DecodeApi:
    """How this transformers version wants the cache and the positions passed to forward."""

    cache_kwarg: str  # "cache" (later 5.x) or "past_key_values" (5.0)
    cache_position: bool  # 5.0 needs explicit cache_position; later 5.x keeps the length itself


def detect_api() -> DecodeApi:
    params = inspect.signature(LlamaForCausalLM.forward).parameters
    if "cache" in params:
        kw = "cache"
    elif "past_key_values" in params:
        kw = "past_key_values"
    else:
        raise RuntimeError(
            f"transformers {transformers.__version__}: LlamaForCausalLM.forward takes neither "
            f"'cache' nor 'past_key_values' ({list(params)}); this script targets 5.x")
    if "logits_to_keep" not in params:
        raise RuntimeError(f"transformers {transformers.__version__}: forward has no "
                           "'logits_to_keep'; this script targets 5.x")
    cache_params = inspect.signature(StaticCache.__init__).parameters
    if "max_cache_len" not in cache_params or "config" not in cache_params:
        raise RuntimeError(f"transformers {transformers.__version__}: StaticCache.__init__"
                           f"{inspect.signature(StaticCache.__init__)} is not the 5.x "
                           "(config, max_cache_len) constructor")
    return DecodeApi(cache_kwarg=kw, cache_position="cache_position" in params)


def build_model(a: argparse.Namespace, device: torch.device, dtype: torch.dtype,
                max_positions: int) -> tuple[LlamaForCausalLM, LlamaConfig]:
    config = LlamaConfig(
        vocab_size=a.vocab, hidden_size=a.hidden, intermediate_size=a.intermediate,
        num_hidden_layers=a.layers, num_attention_heads=a.heads, num_key_value_heads=a.kv_heads,
        head_dim=a.head_dim, max_position_embeddings=max_positions, rope_theta=500000.0,
        rms_norm_eps=1e-5, tie_word_embeddings=False, use_cache=True,
        bos_token_id=None, eos_token_id=None, pad_token_id=None,
    )
    # Llama 3.1's config also carries the "llama3" RoPE frequency scaling; it only changes the
    # inverse frequencies computed once, not the decode work, so plain RoPE is used here.
    try:
        config.rope_parameters = {"rope_type": "default", "rope_theta": 500000.0}
    except (AttributeError, TypeError):
        pass
    # Parameters are created directly on the device (no 16 GB CPU init and copy).
    with torch.device(device):
        model = LlamaForCausalLM._from_config(config, dtype=dtype, attn_implementation="sdpa")
    model.eval()
    # Fill every weight ourselves so the values are defined whatever the version's init does.
    gen = torch.Generator(device=device).manual_seed(a.seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:  # RMSNorm scales
                p.fill_(1.0)
            else:
                p.normal_(0.0, 0.02, generator=gen)
            p.requires_grad_(False)
    impl = getattr(model.config, "_attn_implementation", None)
    if impl != "sdpa":
        raise RuntimeError(f"attention implementation is {impl!r}, expected 'sdpa'")
    return model, config


def forward_kwargs(api: DecodeApi, cache: Any, positions: torch.Tensor,
                   batch: int) -> dict[str, Any]:
    """Keyword arguments of one forward over `positions` (1-D, int64, on the device)."""
    kw: dict[str, Any] = {
        api.cache_kwarg: cache,
        "use_cache": True,
        "logits_to_keep": 1,
        "position_ids": positions.unsqueeze(0).expand(batch, -1),
    }
    if api.cache_position:
        kw["cache_position"] = positions
    return kw


def set_cache_length(cache: Any, length: int) -> None:
    """Later 5.x StaticCache layers keep their fill level in a device tensor: put it at `length`.

    Used to rewind after the eager reference step (and after a failed compile attempt) so that
    the next step writes the same slot. With explicit cache_position (5.0) there is nothing to do.
    """
    for layer in getattr(cache, "layers", []):
        cum = getattr(layer, "cumulative_length", None)
        if isinstance(cum, torch.Tensor):
            cum.fill_(length)


def cache_tensors(cache: Any) -> list[torch.Tensor]:
    out = []
    for layer in getattr(cache, "layers", []):
        for name in ("keys", "values"):
            t = getattr(layer, name, None)
            if isinstance(t, torch.Tensor):
                out.append(t)
    return out


def slots_written(cache: Any) -> float:
    """Fraction of the cache's token slots holding a non-zero key, over the first and last layer.

    StaticCache allocates zeros; prefill + decode must have written every slot exactly once.
    """
    layers = getattr(cache, "layers", [])
    fractions = []
    for layer in (layers[0], layers[-1]) if layers else ():
        k = getattr(layer, "keys", None)
        if isinstance(k, torch.Tensor):
            written = (k.float().abs().sum(dim=(0, 1, 3)) > 0).float().mean().item()
            fractions.append(written)
    return min(fractions) if fractions else float("nan")


def dynamo_counters() -> dict[str, int]:
    """Graph breaks and CUDA-graph skips so far (0 where this torch does not count them)."""
    try:
        from torch._dynamo.utils import counters
    except ImportError:
        return {}
    return {
        "graph_breaks": int(sum(counters["graph_break"].values())),
        "cudagraph_skips": int(counters["inductor"].get("cudagraph_skips", 0)),
        "unique_graphs": int(counters["stats"].get("unique_graphs", 0)),
    }


# ----------------------------------------------------------------------------- one context


def prefill(model: LlamaForCausalLM, api: DecodeApi, cache: Any, context: int,
            a: argparse.Namespace, device: torch.device, gen: torch.Generator) -> float:
    """Fills `cache` with `context` random tokens, eagerly in chunks; returns seconds."""
    sw = Stopwatch(device)
    ids = torch.randint(0, a.vocab, (a.batch, context), device=device, generator=gen)
    # Warm cuBLAS/SDPA on one chunk, then rewind: the timed prefill starts from slot 0.
    n0 = min(a.prefill_chunk, context)
    model(input_ids=ids[:, :n0],
          **forward_kwargs(api, cache, torch.arange(n0, device=device), a.batch))
    set_cache_length(cache, 0)
    sw.sync()
    t0 = time.perf_counter()
    for start in range(0, context, a.prefill_chunk):
        end = min(start + a.prefill_chunk, context)
        model(input_ids=ids[:, start:end],
              **forward_kwargs(api, cache, torch.arange(start, end, device=device), a.batch))
    sw.sync()
    return time.perf_counter() - t0


def run_context(model: LlamaForCausalLM, config: LlamaConfig, api: DecodeApi, context: int,
                a: argparse.Namespace, device: torch.device, bandwidth: float,
                weight_read_bytes: int) -> dict[str, Any]:
    sw = Stopwatch(device)
    gen = torch.Generator(device=device).manual_seed(a.seed + context)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    max_len = context + a.warmup + a.steps
    cache = StaticCache(config=config, max_cache_len=max_len)

    log(f"context {context}: prefill in chunks of {a.prefill_chunk}")
    prefill_s = prefill(model, api, cache, context, a, device, gen)
    log(f"context {context}: prefill {prefill_s:.2f} s ({a.batch * context / prefill_s:.0f} tok/s)")
    tensors = cache_tensors(cache)
    if not tensors:
        raise RuntimeError("StaticCache holds no key/value tensors after prefill: unknown layout")
    cache_alloc = sum(t.numel() * t.element_size() for t in tensors)
    elt = tensors[0].element_size()
    cache_at_c = 2 * a.layers * a.batch * a.kv_heads * context * a.head_dim * elt

    def step(ids: torch.Tensor, pos: torch.Tensor, kv: Any) -> tuple[torch.Tensor, torch.Tensor]:
        logits = model(input_ids=ids, **forward_kwargs(api, kv, pos, ids.shape[0])).logits
        last = logits[:, -1, :]
        return last, torch.argmax(last, dim=-1, keepdim=True)

    # Eager reference for the first compiled step, at position `context`, then rewind.
    ids = torch.randint(0, a.vocab, (a.batch, 1), device=device, generator=gen)
    pos = torch.full((1,), context, dtype=torch.long, device=device)
    ref_logits = step(ids, pos, cache)[0].float().clone()
    set_cache_length(cache, context)

    # Each attempt is built inside the try, so that a bad mode also falls back (loudly).
    attempts: list[tuple[str, Callable[[], Callable[..., Any]]]] = []
    errors: list[str] = []
    if a.compile_mode != "none":
        if not a.no_fullgraph:
            attempts.append(("compiled-fullgraph", lambda: torch.compile(
                step, mode=a.compile_mode, fullgraph=True, dynamic=False)))
        attempts.append(("compiled-graph-breaks", lambda: torch.compile(
            step, mode=a.compile_mode, fullgraph=False, dynamic=False)))
    attempts.append(("eager" if a.compile_mode == "none" else "eager-fallback", lambda: step))

    use_graphs = device.type == "cuda"  # marking steps is harmless where no graphs are used
    counters0 = dynamo_counters()
    mode, fn, first_logits, warm_s = "", step, None, 0.0
    for name, make in attempts:
        log(f"context {context}: {name}: {a.warmup} warm-up steps (compile + graph capture)")
        pos.fill_(context)
        set_cache_length(cache, context)
        step_ids = ids.clone()
        try:
            candidate = make()
            t0 = time.perf_counter()
            for i in range(a.warmup):
                if use_graphs and name.startswith("compiled"):
                    torch.compiler.cudagraph_mark_step_begin()
                logits, nxt = candidate(step_ids, pos, cache)
                if i == 0:
                    first_logits = logits.float().clone()
                step_ids.copy_(nxt)
                pos.add_(1)
            sw.sync()
            warm_s = time.perf_counter() - t0
            mode, fn = name, candidate
            break
        except Exception as exc:  # noqa: BLE001 - any compile failure must fall back, loudly
            msg = f"{name} failed: {type(exc).__name__}: {exc}"
            errors.append(msg + "\n" + traceback.format_exc(limit=8))
            loud(f"context {context}: {msg.splitlines()[0][:300]} -- falling back")
            torch._dynamo.reset()
    if not mode:
        raise RuntimeError(f"context {context}: every decode path failed: {errors}")
    if mode.startswith("eager") and a.compile_mode != "none":
        loud(f"context {context}: DECODE IS EAGER (torch.compile failed); see 'compile_errors'")
    log(f"context {context}: {mode} warm-up took {warm_s:.1f} s")

    assert first_logits is not None
    diff = (first_logits - ref_logits).abs().max().item()
    argmax_match = bool(torch.equal(first_logits.argmax(-1), ref_logits.argmax(-1)))
    if not torch.isfinite(first_logits).all():
        loud(f"context {context}: non-finite logits in the first decode step")

    # Timed steps: each window covers the step and the feedback of its id and position.
    times: list[float] = []
    sw.sync()
    wall0 = time.perf_counter()
    for _ in range(a.steps):
        if use_graphs and mode.startswith("compiled"):
            torch.compiler.cudagraph_mark_step_begin()
        m0 = sw.mark()
        _, nxt = fn(step_ids, pos, cache)
        step_ids.copy_(nxt)
        pos.add_(1)
        m1 = sw.mark()
        times.append((m0, m1))
    sw.sync()
    wall_ms = (time.perf_counter() - wall0) * 1000.0 / a.steps
    ms = sorted(sw.elapsed_ms(m0, m1) for m0, m1 in times)
    median = statistics.median(ms)
    written = slots_written(cache)
    if written < 1.0:
        loud(f"context {context}: only {written:.4f} of the cache slots were written: the decode "
             "steps did not advance through the cache")
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    counters = {k: v - counters0.get(k, 0) for k, v in dynamo_counters().items()}
    graphs_wanted = "reduce-overhead" in a.compile_mode
    if (device.type == "cuda" and mode.startswith("compiled") and graphs_wanted
            and counters.get("cudagraph_skips", 0) > 0):
        loud(f"context {context}: inductor skipped CUDA graphs "
             f"{counters['cudagraph_skips']} time(s): the compiled steps are not "
             "graph replays (see TORCH_LOGS=perf_hints)")

    floor_bytes = weight_read_bytes + cache_at_c
    floor_ms = floor_bytes / bandwidth * 1000.0
    row = {
        "context": context,
        "batch": a.batch,
        "mode": mode,
        "compile_mode": a.compile_mode,
        "compile_errors": errors,
        "warmup_steps": a.warmup,
        "warmup_s": warm_s,
        "steps": a.steps,
        "prefill_s": prefill_s,
        "prefill_tokens_per_s": a.batch * context / prefill_s,
        "decode_ms_median": median,
        "decode_ms_p10": ms[len(ms) // 10],
        "decode_ms_p90": ms[min(len(ms) - 1, (len(ms) * 9) // 10)],
        "decode_ms_wall_mean": wall_ms,
        "tokens_per_s": a.batch * 1000.0 / median,
        "max_cache_len": max_len,
        "cache_bytes_allocated": cache_alloc,
        "cache_bytes_at_context": cache_at_c,
        "floor_bytes": floor_bytes,
        "floor_ms": floor_ms,
        "fraction_of_floor": floor_ms / median,
        "peak_memory_bytes": peak,
        "first_step_max_abs_logit_diff_vs_eager": diff,
        "first_step_ref_max_abs_logit": ref_logits.abs().max().item(),
        "first_step_argmax_match": argmax_match,
        "cache_slots_written": written,
        **counters,  # this context only: graph breaks, CUDA-graph skips, graphs compiled
    }
    del cache, fn, attempts
    torch._dynamo.reset()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("hf_baseline: --device cuda but torch sees no GPU "
                 "(use --device cpu to smoke test)")
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)
    dtype = DTYPES[a.dtype]
    torch.manual_seed(a.seed)
    api = detect_api()
    log(f"torch {torch.__version__}, transformers {transformers.__version__}, api {api}")

    max_positions = max(131072, max(a.contexts) + a.warmup + a.steps)
    t0 = time.perf_counter()
    model, config = build_model(a, device, dtype, max_positions)
    log(f"model built in {time.perf_counter() - t0:.1f} s")
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    emb = model.get_input_embeddings().weight
    # A decode step reads every weight once, but only one row of the embedding table per token.
    row_bytes = emb[0].numel() * emb.element_size()
    weight_read = weight_bytes - emb.shape[0] * row_bytes + a.batch * row_bytes

    log(f"device copy bandwidth ({a.copy_gib} GiB)")
    bandwidth = copy_bandwidth(device, a.copy_gib)
    log(f"copy bandwidth {bandwidth / 1e9:.1f} GB/s")

    rows = []
    with torch.no_grad():
        for context in a.contexts:
            rows.append(run_context(model, config, api, context, a, device, bandwidth, weight_read))

    result = {
        "benchmark": "hf_baseline",
        "what": "transformers LlamaForCausalLM decode, random weights, StaticCache, SDPA",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                        else platform.processor() or platform.machine()),
        "dtype": a.dtype,
        "api": {"cache_kwarg": api.cache_kwarg, "cache_position": api.cache_position},
        "config": {"layers": a.layers, "hidden": a.hidden, "intermediate": a.intermediate,
                   "heads": a.heads, "kv_heads": a.kv_heads, "head_dim": a.head_dim,
                   "vocab": a.vocab, "rope_theta": 500000.0, "rms_norm_eps": 1e-5,
                   "max_position_embeddings": max_positions, "prefill_chunk": a.prefill_chunk},
        "weight_bytes": weight_bytes,
        "weight_bytes_read_per_step": weight_read,
        "copy_bandwidth_bytes_per_s": bandwidth,
        "copy_gib": a.copy_gib,
        "floor_note": "floor = (weights read per step + K/V at context) / copy bandwidth",
        "rows": rows,
    }
    if a.json_path:
        with open(a.json_path, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=1)
        log(f"wrote {a.json_path}")

    print(f"hf_baseline  torch {torch.__version__}  transformers {transformers.__version__}  "
          f"{result['device_name']}  {a.dtype}  copy {bandwidth / 1e9:.1f} GB/s  "
          f"weights {weight_bytes / 1e9:.2f} GB")
    print(f"{'context':>8} {'mode':>22} {'prefill tok/s':>13} {'ms/tok':>8} {'tok/s':>8} "
          f"{'floor ms':>9} {'of floor':>8} {'peak GB':>8}")
    for r in rows:
        peak = f"{r['peak_memory_bytes'] / 1e9:8.2f}" if r["peak_memory_bytes"] else f"{'-':>8}"
        print(f"{r['context']:>8} {r['mode']:>22} {r['prefill_tokens_per_s']:>13.0f} "
              f"{r['decode_ms_median']:>8.3f} {r['tokens_per_s']:>8.1f} {r['floor_ms']:>9.3f} "
              f"{r['fraction_of_floor']:>8.1%} {peak}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
