"""PyTorch scaled_dot_product_attention (fp16 K/V, GQA) decode timing for the same cases as
bench_attention.cu: median µs with cold L2 (a 256 MiB buffer is rewritten before each rep).
Usage: python3 sdpa_bench.py OUT.json [--quick] [--read-flush] [--prefill]  (--read-flush: L2 emptied by
reading 256 MiB instead of writing it, as in bench_attention.cu)"""
import json
import sys

import torch
import torch.nn.functional as F


def prefill(out: str, quick: bool) -> None:
    """The prefill table of bench_prefill.cu: Llama-3.1-8B layer, batch 1, a causal chunk of n
    queries that are the last n of ctx cached tokens (lower-right causal mask), fp16, median us
    with L2 rewritten before each rep."""
    dev = torch.device("cuda")
    flush = torch.full((256 << 20,), 0x5a, dtype=torch.uint8, device=dev)
    hq, hkv, d = 32, 8, 128
    contexts = [32768] if quick else [8192, 32768, 131072]
    chunks = [16, 512] if quick else [16, 32, 64, 128, 512, 2048, 8192]
    rows = []
    try:
        from torch.nn.attention.bias import causal_lower_right
    except ImportError:  # older PyTorch: no lower-right mask, time the unmasked chunk
        causal_lower_right = None
    for ctx in contexts:
        k = torch.randn(1, hkv, ctx, d, device=dev, dtype=torch.float16)
        v = torch.randn(1, hkv, ctx, d, device=dev, dtype=torch.float16)
        ke = k.repeat_interleave(hq // hkv, dim=1)
        ve = v.repeat_interleave(hq // hkv, dim=1)
        for n in chunks:
            q = torch.randn(1, hq, n, d, device=dev, dtype=torch.float16)
            variants = []
            if causal_lower_right is not None:
                mask = causal_lower_right(n, ctx)
                variants.append(("lower_right_gqa", lambda: F.scaled_dot_product_attention(
                    q, k, v, attn_mask=mask, enable_gqa=True)))
                variants.append(("lower_right_expanded", lambda: F.scaled_dot_product_attention(
                    q, ke, ve, attn_mask=mask)))
            variants.append(("unmasked_expanded",
                             lambda: F.scaled_dot_product_attention(q, ke, ve)))
            for how, f in variants:
                try:
                    f()
                    torch.cuda.synchronize()
                except RuntimeError as e:
                    print(f"sdpa prefill {how} ctx={ctx} n={n} unsupported: {e}"[:200])
                    continue
                times = []
                for r in range(7):
                    flush.fill_(r & 0xff)
                    a = torch.cuda.Event(enable_timing=True)
                    b = torch.cuda.Event(enable_timing=True)
                    a.record()
                    f()
                    b.record()
                    b.synchronize()
                    times.append(a.elapsed_time(b) * 1000.0)
                times.sort()
                us = times[len(times) // 2]
                tflops = 4.0 * n * ctx * d * hq / (us * 1e-6) / 1e12
                rows.append(dict(kernel="sdpa_fp16_" + how, context=ctx, n_queries=n, us=us,
                                 tflops=tflops))
                print(f"sdpa_fp16 {how:22s} ctx={ctx:<7d} n={n:<5d} {us:10.1f} us "
                      f"{tflops:6.1f} TFLOP/s", flush=True)
                break
            del q
        del k, v, ke, ve
        torch.cuda.empty_cache()
    with open(out, "w") as fh:
        json.dump(dict(torch=torch.__version__, device=torch.cuda.get_device_name(), rows=rows),
                  fh, indent=1)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "sdpa.json"
    if "--prefill" in sys.argv:
        prefill(out, "--quick" in sys.argv)
        return
    quick = "--quick" in sys.argv
    read_flush = "--read-flush" in sys.argv
    dev = torch.device("cuda")
    flush = torch.full((256 << 20,), 0x5a, dtype=torch.uint8, device=dev)
    flush32 = flush.view(torch.int32)
    shapes = [("llama8b", 32, 8, 128), ("smollm2", 9, 3, 64)]
    contexts = [4096, 32768, 131072] if quick else [4096, 16384, 32768, 131072, 1048576]
    reps = 10 if quick else 25
    rows = []
    for name, hq, hkv, d in shapes:
        for ctx in contexts:
            for batch in (1, 8):
                if ctx > 131072 and batch > 1:
                    continue
                q = torch.randn(batch, hq, 1, d, device=dev, dtype=torch.float16)
                k = torch.randn(batch, hkv, ctx, d, device=dev, dtype=torch.float16)
                v = torch.randn(batch, hkv, ctx, d, device=dev, dtype=torch.float16)
                f = lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
                f(); f()
                torch.cuda.synchronize()
                times = []
                for r in range(reps):
                    if read_flush:
                        flush32.max()  # reads 256 MiB, writes one word
                    else:
                        flush.fill_(r & 0xff)
                    a = torch.cuda.Event(enable_timing=True)
                    b = torch.cuda.Event(enable_timing=True)
                    a.record(); f(); b.record()
                    b.synchronize()
                    times.append(a.elapsed_time(b) * 1000.0)
                times.sort()
                us = times[len(times) // 2]
                nbytes = 2 * k.numel() * 2
                rows.append(dict(kernel="sdpa_fp16", shape=name, q_heads=hq, kv_heads=hkv, dim=d,
                                 context=ctx, batch=batch, us=us, bytes=nbytes,
                                 gbs=nbytes / (us * 1e-6) / 1e9))
                print(f"sdpa {name} ctx={ctx} b={batch}: {us:.1f} us", flush=True)
                del k, v, q
                torch.cuda.empty_cache()
    with open(out, "w") as fh:
        json.dump(dict(flush="read" if read_flush else "write", torch=torch.__version__, device=torch.cuda.get_device_name(), rows=rows), fh, indent=1)


if __name__ == "__main__":
    main()
